//! What the plugins saw when a machine was cleared, kept so that the clearing can be
//! replayed, explained ("what would have won") and backtested.
//!
//! A clearing's plugin input is the machine context and the candidate bids. Most of it
//! (the machine, its ranges, the market parameters and the candidates: the *book*) stays
//! the same from one interval to the next, while the running bid's time and the
//! machine's reliability change every interval. So the input is kept in two parts: an
//! [`InputRecord`] per machine and interval (the book's digest, the running bid and the
//! reliability: about 80 bytes), and the book itself ([`PluginInput`] without the running
//! bid and the reliability), written only when its digest differs from the machine's
//! previous one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::{CandidateBid, MachineContext, RunningBid};

/// The plugins' input of one clearing: the machine context and the candidates, in id
/// order, that the validators were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInput {
    /// The machine as the plugins saw it.
    pub context: MachineContext,
    /// The candidates the validators were given, in id order.
    pub candidates: Vec<CandidateBid>,
}

/// The per-interval part of a clearing's recorded input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// sha256 of the book (see [`book_digest`]).
    pub book: [u8; 32],
    /// The machine's reliability as the plugins saw it.
    pub reliability: f64,
    /// The running bid as the plugins saw it.
    pub running: Option<RunningBid>,
    /// Whether the machine was cleared on the sequential path (its bidders' funds were
    /// contended), where plugin instances are grouped apart from the parallel path's.
    pub coupled: bool,
}

impl PluginInput {
    /// The book: this input without the running bid and the reliability (set to `None`
    /// and 0), which the [`InputRecord`] keeps.
    pub fn book(mut self) -> PluginInput {
        self.context.running = None;
        self.context.reliability = 0.0;
        self
    }

    /// The input of a clearing from its book and its record.
    pub fn from_book(mut book: PluginInput, record: &InputRecord) -> PluginInput {
        book.context.running = record.running;
        book.context.reliability = record.reliability;
        book
    }
}

/// sha256 over a canonical binary encoding of the book: every field of the context but
/// the reliability and the running bid, then every candidate, in declaration order;
/// integers little-endian, floats as IEEE bits, strings and lists length-prefixed.
pub fn book_digest(context: &MachineContext, candidates: &[CandidateBid]) -> [u8; 32] {
    let mut h = Sha256::new();
    let u64s = |h: &mut Sha256, v: u64| h.update(v.to_le_bytes());
    let text = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    let opt = |h: &mut Sha256, v: Option<i64>| match v {
        None => h.update([0]),
        Some(v) => {
            h.update([1]);
            h.update(v.to_le_bytes());
        }
    };
    u64s(&mut h, context.id);
    u64s(&mut h, context.host_id);
    u64s(&mut h, context.gpus.len() as u64);
    for g in &context.gpus {
        u64s(&mut h, g.index.into());
        text(&mut h, &g.model);
        u64s(&mut h, g.power_limit_w.min.into());
        u64s(&mut h, g.power_limit_w.max.into());
        for r in [g.core_lock_mhz, g.mem_lock_mhz] {
            opt(&mut h, r.map(|r| i64::from(r.min)));
            opt(&mut h, r.map(|r| i64::from(r.max)));
        }
        for r in [g.core_offset_mhz, g.mem_offset_mhz] {
            opt(&mut h, r.map(|r| i64::from(r.min)));
            opt(&mut h, r.map(|r| i64::from(r.max)));
        }
    }
    u64s(&mut h, context.energy_price_usd_per_kwh.to_bits());
    u64s(&mut h, context.clore_usd.to_bits());
    u64s(&mut h, context.min_bid);
    u64s(&mut h, context.billing_interval_s.into());
    u64s(&mut h, candidates.len() as u64);
    for c in candidates {
        u64s(&mut h, c.id);
        u64s(&mut h, c.owner_id);
        u64s(&mut h, c.price_per_day);
        u64s(&mut h, c.oc.len() as u64);
        for o in &c.oc {
            u64s(&mut h, o.power_limit_w.into());
            opt(&mut h, o.core_lock_mhz.map(i64::from));
            opt(&mut h, o.mem_lock_mhz.map(i64::from));
            opt(&mut h, o.core_offset_mhz.map(i64::from));
            opt(&mut h, o.mem_offset_mhz.map(i64::from));
        }
        u64s(&mut h, c.total_power_limit_w.into());
        u64s(&mut h, c.created_at);
        text(&mut h, &c.image);
        u64s(&mut h, c.env_keys.len() as u64);
        for k in &c.env_keys {
            text(&mut h, k);
        }
    }
    h.finalize().into()
}

/// The decision's `input_digest`: sha256 of the book's digest, the reliability's IEEE
/// bits and the running bid's fields (each optional field as a presence byte and, when
/// present, its little-endian value), written `sha256:<hex>`.
pub fn input_digest(book: &[u8; 32], reliability: f64, running: Option<RunningBid>) -> String {
    let mut h = Sha256::new();
    h.update(book);
    h.update(reliability.to_bits().to_le_bytes());
    match running {
        None => h.update([0]),
        Some(r) => {
            h.update([1]);
            for v in [r.bid_id, r.owner_id, r.price_per_day, r.running_for_s] {
                h.update(v.to_le_bytes());
            }
            match r.total_power_limit_w {
                None => h.update([0]),
                Some(w) => {
                    h.update([1]);
                    h.update(u64::from(w).to_le_bytes());
                }
            }
        }
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl PluginInput {
    /// This input's book digest and its decision's `input_digest`.
    pub fn digests(&self) -> ([u8; 32], String) {
        let book = book_digest(&self.context, &self.candidates);
        let digest = input_digest(&book, self.context.reliability, self.context.running);
        (book, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::GpuOc;
    use crate::gpu_ranges::GpuRangeTable;
    use crate::machine::tests::machine;
    use crate::params::MarketParams;

    fn input(running_for_s: u64, price: u64) -> PluginInput {
        let running = RunningBid {
            bid_id: 1,
            owner_id: 7,
            price_per_day: price,
            total_power_limit_w: Some(1200),
            running_for_s,
        };
        PluginInput {
            context: machine().context(
                &GpuRangeTable::defaults(),
                &MarketParams::default(),
                Some(running),
                0.75,
            ),
            candidates: vec![CandidateBid {
                id: 1,
                owner_id: 7,
                price_per_day: price,
                oc: vec![
                    GpuOc {
                        power_limit_w: 300,
                        core_lock_mhz: None,
                        mem_lock_mhz: Some(5000),
                        core_offset_mhz: Some(-100),
                        mem_offset_mhz: None,
                    };
                    4
                ],
                total_power_limit_w: 1200,
                created_at: 5,
                image: "app".into(),
                env_keys: vec!["A".into()],
            }],
        }
    }

    #[test]
    fn the_book_ignores_what_changes_every_interval_and_the_input_digest_does_not() {
        let (a_book, a) = input(60, 100).digests();
        let (b_book, b) = input(120, 100).digests();
        assert_eq!(a_book, b_book, "running time is not part of the book");
        assert_ne!(a, b, "but it is part of the input");
        let (c_book, _) = input(60, 101).digests();
        assert_ne!(a_book, c_book, "a candidate's price is part of the book");
    }

    #[test]
    fn an_input_is_rebuilt_exactly_from_its_book_and_record() {
        let original = input(60, 100);
        let (book, digest) = original.digests();
        let record = InputRecord {
            book,
            reliability: original.context.reliability,
            running: original.context.running,
            coupled: false,
        };
        let rebuilt = PluginInput::from_book(original.clone().book(), &record);
        assert_eq!(rebuilt, original);
        assert_eq!(rebuilt.digests().1, digest);
    }
}
