//! `price-per-watt`, the default ranking strategy.
//!
//! Score = the bid's price in CLORE/day divided by its total power limit in W, for bids
//! whose price covers the host's energy cost at those power limits; others score 0 (not
//! acceptable). The power limit is taken as the workload's draw, so the host earns most per
//! unit of power with the winner. Takes no configuration.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};

/// The default strategy.
pub struct PricePerWatt;

impl PricePerWatt {
    /// The score of one bid on `machine`.
    pub fn score(machine: &Machine, bid: &Bid) -> f64 {
        if economics::covers_energy(machine, bid) {
            economics::price_per_watt(bid)
        } else {
            0.0
        }
    }
}

impl Strategy for PricePerWatt {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "price-per-watt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Highest CLORE/day per watt of power limit among bids that cover energy"
                .into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        if config.trim().is_empty() {
            Ok(PricePerWatt)
        } else {
            Err(format!(
                "price-per-watt takes no configuration, got {config:?}"
            ))
        }
    }

    fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        bids.iter()
            .map(|bid| Score {
                bid_id: bid.id,
                score: Self::score(machine, bid),
            })
            .collect()
    }
}

export_strategy!(PricePerWatt);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::{bid, machine};

    #[test]
    fn the_better_price_per_watt_wins_even_at_a_lower_price() {
        let m = machine(4, 0.0, 0.05);
        let scores = PricePerWatt.rank(&m, &[bid(1, 100, 250, 4), bid(2, 60, 100, 4)]);
        assert_eq!(
            scores[0],
            Score {
                bid_id: 1,
                score: 0.1
            }
        );
        assert_eq!(
            scores[1],
            Score {
                bid_id: 2,
                score: 0.15
            }
        );
    }

    #[test]
    fn bids_below_the_energy_cost_score_zero() {
        // 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        let m = machine(4, 0.125, 0.0625);
        let scores = PricePerWatt.rank(&m, &[bid(1, 47, 250, 4), bid(2, 48, 250, 4)]);
        assert_eq!(scores[0].score, 0.0);
        assert_eq!(scores[1].score, 0.048);
    }

    #[test]
    fn configuration_is_refused() {
        assert!(PricePerWatt::configure("").is_ok());
        assert!(PricePerWatt::configure("bonus = 1").is_err());
    }
}
