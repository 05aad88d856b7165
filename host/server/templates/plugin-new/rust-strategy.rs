//! `{{name}}`: a GigaSPOT ranking strategy. Each billing interval the market calls `rank`
//! once per machine with every candidate bid; the highest score wins, zero or less means
//! "not acceptable to this host".

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};

/// Price per watt among the bids that cover the host's energy cost, never for bids that
/// draw more than `max_w` watts in total (the configuration; empty means no cap).
pub struct Plugin {
    max_w: u32,
}

impl Strategy for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Price per watt for bids that cover energy, under a power cap".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        let max_w = match config.trim() {
            "" => u32::MAX,
            text => text
                .parse()
                .map_err(|_| format!("expected a power cap in watts, got {text:?}"))?,
        };
        Ok(Plugin { max_w })
    }

    fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        bids.iter()
            .map(|bid| {
                let ok =
                    bid.total_power_limit_w <= self.max_w && economics::covers_energy(machine, bid);
                Score {
                    bid_id: bid.id,
                    score: if ok {
                        economics::price_per_watt(bid)
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }
}

export_strategy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::{bid, machine};

    #[test]
    fn the_better_price_per_watt_wins() {
        let plugin = Plugin::configure("").unwrap();
        let scores = plugin.rank(
            &machine(4, 0.0, 0.05),
            &[bid(1, 100, 250, 4), bid(2, 60, 100, 4)],
        );
        assert_eq!(scores[0].score, 0.1);
        assert_eq!(scores[1].score, 0.15);
    }

    #[test]
    fn bids_over_the_cap_or_below_the_energy_cost_are_not_acceptable() {
        let plugin = Plugin::configure("1000").unwrap();
        let scores = plugin.rank(
            &machine(4, 0.0, 0.05),
            &[bid(1, 100, 300, 4), bid(2, 50, 200, 4)],
        );
        assert_eq!(scores[0].score, 0.0);
        assert!(scores[1].score > 0.0);
        // 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        let plugin = Plugin::configure("").unwrap();
        let scores = plugin.rank(&machine(4, 0.125, 0.0625), &[bid(1, 47, 250, 4)]);
        assert_eq!(scores[0].score, 0.0);
    }

    #[test]
    fn a_bad_configuration_is_refused() {
        assert!(Plugin::configure("lots").is_err());
    }
}
