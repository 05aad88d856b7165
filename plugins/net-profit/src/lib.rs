//! `net-profit`, an alternative ranking strategy.
//!
//! Score = the bid's price in USD/day (at the market's CLORE/USD rate) minus the host's
//! energy cost of the bid's power limits in USD/day. A bid that does not make a profit
//! scores zero or less, which means "not acceptable". Unlike price-per-watt it prefers the
//! bid that earns most per day whatever power it draws. Takes no configuration.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};

/// The net-profit strategy.
pub struct NetProfit;

impl Strategy for NetProfit {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "net-profit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Highest USD/day after the energy cost of the bid's power limits".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        if config.trim().is_empty() {
            Ok(NetProfit)
        } else {
            Err(format!("net-profit takes no configuration, got {config:?}"))
        }
    }

    fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        bids.iter()
            .map(|bid| Score {
                bid_id: bid.id,
                score: economics::net_profit_usd_per_day(machine, bid),
            })
            .collect()
    }
}

export_strategy!(NetProfit);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::{bid, machine};

    #[test]
    fn the_higher_profit_wins_even_at_a_worse_price_per_watt() {
        // Energy: 0.125 USD/kWh; 1 CLORE = 0.0625 USD.
        let m = machine(4, 0.125, 0.0625);
        // 100 CLORE = 6.25 USD, 1000 W costs 3 USD: profit 3.25.
        // 60 CLORE = 3.75 USD, 400 W costs 1.2 USD: profit 2.55 (better per watt).
        let scores = NetProfit.rank(&m, &[bid(1, 100, 250, 4), bid(2, 60, 100, 4)]);
        assert!((scores[0].score - 3.25).abs() < 1e-9);
        assert!((scores[1].score - 2.55).abs() < 1e-9);
    }

    #[test]
    fn a_loss_is_not_acceptable() {
        let m = machine(4, 0.125, 0.0625);
        let scores = NetProfit.rank(&m, &[bid(1, 40, 250, 4)]);
        assert!(scores[0].score <= 0.0);
    }
}
