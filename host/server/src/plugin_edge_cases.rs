//! The order books `gigaspot plugin check` runs a plugin over besides its sample: seeded
//! and reproducible, with the edge cases a tidy sample never shows and production does.
//! (No empty book: the market never calls a plugin without candidates.)

use gigaspot_market::context::{CandidateBid, MachineContext, RunningBid};
use gigaspot_market::economics::UNITS_PER_CLORE;
use gigaspot_market::sample::SampleMarket;

/// One book: what it tests, the machine and its candidates.
pub struct EdgeBook {
    /// What the book exercises, for the report.
    pub label: &'static str,
    /// The machine as the plugin sees it.
    pub machine: MachineContext,
    /// The candidates.
    pub bids: Vec<CandidateBid>,
}

/// The edge-case books for `seed`.
pub fn books(seed: u64) -> Vec<EdgeBook> {
    let mut sample = SampleMarket::new(seed);
    let mut book =
        |label, count: usize, edit: &dyn Fn(&mut MachineContext, &mut Vec<CandidateBid>)| {
            let mut machine = sample.machine(seed);
            let mut bids = sample.bids(&mut machine, count);
            edit(&mut machine, &mut bids);
            EdgeBook {
                label,
                machine,
                bids,
            }
        };
    vec![
        book("a single bid", 1, &|_, _| {}),
        book("1,000 bids", 1_000, &|_, _| {}),
        book("a running bid among the candidates", 10, &|m, b| {
            m.running = Some(RunningBid {
                bid_id: b[3].id,
                owner_id: b[3].owner_id,
                price_per_day: b[3].price_per_day,
                total_power_limit_w: Some(b[3].total_power_limit_w),
                running_for_s: 86_400 * 19,
            });
        }),
        book("nothing running", 10, &|m, _| m.running = None),
        book(
            "a running bid that is no longer a candidate",
            10,
            &|m, _| {
                m.running = Some(RunningBid {
                    bid_id: 1_000_000_000,
                    owner_id: 77,
                    price_per_day: 5_000 * 100_000_000,
                    total_power_limit_w: None,
                    running_for_s: 3_600,
                });
            },
        ),
        book("an unreliable machine", 10, &|m, _| m.reliability = 0.0),
        book("bids below the energy cost of their limits", 10, &|m, b| {
            m.energy_price_usd_per_kwh = 10.0;
            m.clore_usd = 0.000_001;
            for bid in b.iter_mut() {
                bid.price_per_day = 10_000;
            }
        }),
        book(
            "untagged, port-qualified and digest-pinned images",
            6,
            &|_, b| {
                let images = [
                    "ubuntu",
                    "registry.example/team/app",
                    "registry.example:5000/team/app",
                    "registry.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "registry.example:5000/app:1.2",
                    "a",
                ];
                for (bid, image) in b.iter_mut().zip(images) {
                    bid.image = image.into();
                }
            },
        ),
        book(
            "extreme prices: the market's minimum and maximum",
            4,
            &|_, b| {
                for (i, bid) in b.iter_mut().enumerate() {
                    bid.price_per_day = if i % 2 == 0 {
                        10_000
                    } else {
                        5_000 * UNITS_PER_CLORE
                    };
                }
            },
        ),
        book(
            "extreme limits: every GPU at its minimum, then at its maximum",
            4,
            &|m, b| {
                for (i, bid) in b.iter_mut().enumerate() {
                    for (oc, gpu) in bid.oc.iter_mut().zip(&m.gpus) {
                        oc.power_limit_w = if i % 2 == 0 {
                            gpu.power_limit_w.min
                        } else {
                            gpu.power_limit_w.max
                        };
                    }
                    bid.total_power_limit_w = bid.oc.iter().map(|o| o.power_limit_w).sum();
                }
            },
        ),
        book("no environment and a long one", 2, &|_, b| {
            b[0].env_keys.clear();
            b[1].env_keys = (0..200).map(|i| format!("KEY_{i}")).collect();
        }),
        book("equal prices and limits (ties)", 5, &|_, b| {
            let first = b[0].clone();
            for bid in b.iter_mut().skip(1) {
                bid.price_per_day = first.price_per_day;
                bid.oc.clone_from(&first.oc);
                bid.total_power_limit_w = first.total_power_limit_w;
            }
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_books_are_reproducible_and_never_empty() {
        let a = books(7);
        let b = books(7);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(!x.bids.is_empty(), "{}", x.label);
            assert_eq!(x.bids, y.bids, "{}", x.label);
            assert_eq!(x.machine, y.machine, "{}", x.label);
        }
        assert!(a.iter().any(|b| b.bids.len() == 1_000));
        assert!(
            a.iter()
                .any(|b| b.bids.iter().any(|c| !c.image.contains(':')))
        );
    }
}
