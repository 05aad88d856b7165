//! A well-behaved strategy whose `info()` carries the characters that break a Prometheus
//! label value unless escaped (`"`, `\` and a newline), and a very long name. It ranks by
//! price per watt.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};

struct OddName;

impl Strategy for OddName {
    fn info() -> PluginInfo {
        PluginInfo {
            name: format!("odd\"name\\with\nnewline}} 1\n{}", "x".repeat(200)),
            version: "0.0.1\"\n".into(),
            description: "ranks by price; its name is hostile to text formats".into(),
        }
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(OddName)
    }

    fn rank(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        bids.iter()
            .map(|b| Score {
                bid_id: b.id,
                score: economics::price_per_watt(b),
            })
            .collect()
    }
}

export_strategy!(OddName);
