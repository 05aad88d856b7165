//! `sticky-price-per-watt`: an example strategy by a third party.
//!
//! Ranks like price-per-watt, but the bid already running gets a bonus, so that a newcomer
//! must beat it by a margin before the workload is interrupted. Hosts who care about
//! their clients' experience (fewer restarts for a tiny gain) would run it.
//!
//! Configuration: `bonus = <fraction>` (default `0.05`, i.e. a challenger must offer 5 %
//! more per watt than the running bid).

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, economics, export_strategy};

/// Price per watt with a stickiness bonus for the running bid.
pub struct Sticky {
    bonus: f64,
}

impl Strategy for Sticky {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sticky-price-per-watt".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Price per watt; the running bid keeps the machine unless beaten by a margin".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        let mut bonus = 0.05;
        for line in config.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("bonus", value)) => {
                    bonus = value
                        .parse()
                        .map_err(|_| format!("bonus: {value:?} is not a number"))?;
                    if !(0.0..=1.0).contains(&bonus) {
                        return Err(format!("bonus must be between 0 and 1, got {bonus}"));
                    }
                }
                _ => return Err(format!("expected `bonus = <fraction>`, got {line:?}")),
            }
        }
        Ok(Sticky { bonus })
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
                if Some(bid.id) == running {
                    score *= 1.0 + self.bonus;
                }
                Score {
                    bid_id: bid.id,
                    score,
                }
            })
            .collect()
    }
}

export_strategy!(Sticky);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::{bid, machine};

    fn running(bid_id: u64) -> Machine {
        gigaspot_sdk::testing::running(machine(1, 0.0, 0.05), bid_id, 600)
    }

    fn winner(scores: &[Score]) -> u64 {
        scores
            .iter()
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map(|s| s.bid_id)
            .unwrap()
    }

    #[test]
    fn a_small_raise_does_not_interrupt_the_running_bid() {
        let sticky = Sticky::configure("bonus = 0.05").unwrap();
        // 103 vs 100 CLORE at the same power: 3 % better, under the 5 % bonus.
        let scores = sticky.rank(&running(1), &[bid(1, 100, 300, 1), bid(2, 103, 300, 1)]);
        assert_eq!(winner(&scores), 1);
        // 110 is 10 % better: it takes the machine.
        let scores = sticky.rank(&running(1), &[bid(1, 100, 300, 1), bid(2, 110, 300, 1)]);
        assert_eq!(winner(&scores), 2);
    }

    #[test]
    fn configuration_is_checked() {
        assert_eq!(Sticky::configure("").unwrap().bonus, 0.05);
        assert!(Sticky::configure("bonus = 2").is_err());
        assert!(Sticky::configure("bonus = x").is_err());
        assert!(Sticky::configure("speed = 1").is_err());
    }
}
