//! The native reference of the default strategy: price per watt.

use crate::context::{CandidateBid, MachineContext};
use crate::economics::{net_profit_usd_per_day, price_per_watt};
use crate::plugin_traits::Strategy;
use crate::verdict::{PluginFault, PluginRef, Score};

/// Scores a bid by its price in CLORE/day divided by its total power limit in W, when the
/// price covers the host's energy cost at that power limit; otherwise 0 (not acceptable).
///
/// The requested power limit is treated as the workload's draw, so the host earns most per
/// unit of power with the highest score. This is the fallback when plugins fail and the
/// baseline of `gigaspot plugin bench`.
#[derive(Debug, Clone)]
pub struct PricePerWatt {
    plugin_ref: PluginRef,
}

impl PricePerWatt {
    /// The reference strategy.
    pub fn new() -> Self {
        PricePerWatt {
            plugin_ref: PluginRef {
                name: "price-per-watt".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                digest: "native:price-per-watt".into(),
            },
        }
    }

    /// The score of one bid on `machine`.
    pub fn score(machine: &MachineContext, bid: &CandidateBid) -> f64 {
        let profit = net_profit_usd_per_day(
            bid.price_per_day,
            bid.total_power_limit_w,
            machine.energy_price_usd_per_kwh,
            machine.clore_usd,
        );
        if profit >= 0.0 {
            price_per_watt(bid.price_per_day, bid.total_power_limit_w)
        } else {
            0.0
        }
    }
}

impl Default for PricePerWatt {
    fn default() -> Self {
        Self::new()
    }
}

impl Strategy for PricePerWatt {
    fn plugin_ref(&self) -> &PluginRef {
        &self.plugin_ref
    }

    fn rank(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Score>, PluginFault> {
        Ok(bids
            .iter()
            .map(|bid| Score {
                bid_id: bid.id,
                score: Self::score(machine, bid),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::economics::UNITS_PER_CLORE;

    fn machine(energy_price: f64, clore_usd: f64) -> MachineContext {
        MachineContext {
            id: 1,
            host_id: 1,
            gpus: vec![],
            energy_price_usd_per_kwh: energy_price,
            clore_usd,
            min_bid: 0,
            billing_interval_s: 60,
            reliability: 1.0,
            running: None,
        }
    }

    fn bid(id: u64, clore: u64, watts: u32) -> CandidateBid {
        CandidateBid {
            id,
            owner_id: 2,
            price_per_day: clore * UNITS_PER_CLORE,
            oc: vec![],
            total_power_limit_w: watts,
            created_at: 0,
            image: "img".into(),
            env_keys: vec![],
        }
    }

    #[test]
    fn higher_price_per_watt_wins_even_at_a_lower_price() {
        let m = machine(0.0, 0.05);
        let scores = PricePerWatt::new()
            .rank(&m, &[bid(1, 100, 1000), bid(2, 60, 400)])
            .unwrap();
        assert_eq!(scores[0].score, 0.1);
        assert_eq!(scores[1].score, 0.15);
    }

    #[test]
    fn a_price_below_the_energy_cost_is_not_acceptable() {
        // 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        let m = machine(0.125, 0.0625);
        let scores = PricePerWatt::new()
            .rank(&m, &[bid(1, 47, 1000), bid(2, 48, 1000)])
            .unwrap();
        assert_eq!(scores[0].score, 0.0);
        assert_eq!(scores[1].score, 0.048);
    }
}
