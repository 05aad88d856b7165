//! A strategy configured in TOML, as third-party strategies with many knobs are: price per
//! watt, weighted up for a reliable machine and for the bid already running. Its size
//! (serde and a TOML parser) makes it the benchmarks' large component (~200 KB): what an
//! upload of a plugin with real dependencies costs.
//!
//! ```toml
//! reliability_weight = 0.5   # score × (1 + weight × reliability)
//! running_bonus = 0.1        # score × (1 + bonus) for the running bid
//! ```

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Weights {
    #[serde(default)]
    reliability_weight: f64,
    #[serde(default)]
    running_bonus: f64,
}

struct TomlWeighted(Weights);

impl Strategy for TomlWeighted {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "toml-weighted".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "price per watt, weighted for reliability and the running bid".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        let weights: Weights = toml::from_str(config).map_err(|e| e.to_string())?;
        for (name, value) in [
            ("reliability_weight", weights.reliability_weight),
            ("running_bonus", weights.running_bonus),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be a number ≥ 0, got {value}"));
            }
        }
        Ok(TomlWeighted(weights))
    }

    fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        let running = machine.running.as_ref().map(|r| r.bid_id);
        bids.iter()
            .map(|bid| {
                let mut score = if economics::covers_energy(machine, bid) {
                    economics::price_per_watt(bid)
                } else {
                    0.0
                };
                score *= 1.0 + self.0.reliability_weight * machine.reliability;
                if running == Some(bid.id) {
                    score *= 1.0 + self.0.running_bonus;
                }
                Score {
                    bid_id: bid.id,
                    score,
                }
            })
            .collect()
    }
}

export_strategy!(TomlWeighted);
