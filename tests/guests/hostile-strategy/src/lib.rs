//! A strategy that misbehaves in the way its configuration names: `spin`, `grow-memory`,
//! `recurse`, `panic`, `chatty-panic` (writes 10 KiB to stderr first), `exit`,
//! `duplicate-ids`, `unknown-id`, `nan`, `drop-one`, `tag-blind`; `tag=<n>`, which behaves
//! and scores every bid `n` (to tell versions apart); `env`, which reads the environment
//! in `configure` and scores every bid 1 + the number of variables it saw; or `count`,
//! which keeps state between calls and scores every bid with the number of calls its
//! instance has answered (1 when every call gets a fresh instance); or `fingerprint`,
//! which scores every bid with a hash of everything the market told about it and the
//! machine (so a test can check that the contract's tables arrive intact).

use std::cell::Cell;
use std::hint::black_box;

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, export_strategy};

enum Mode {
    Spin,
    GrowMemory,
    Recurse,
    Panic,
    ChattyPanic,
    Exit,
    DuplicateIds,
    UnknownId,
    Nan,
    DropOne,
    Tag(f64),
    TagBlind,
    Count,
    Fingerprint,
}

/// FNV-1a over the little-endian bytes of each value, for the `fingerprint` mode (the
/// runtime's test computes the same function natively).
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn opt(&mut self, v: Option<i64>) {
        match v {
            None => self.u64(u64::MAX),
            Some(v) => self.u64(v as u64),
        }
    }
}

fn fingerprint(machine: &Machine, bid: &Bid) -> f64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.u64(machine.id);
    h.u64(machine.host_id);
    h.u64(machine.energy_price_usd_per_kwh.to_bits());
    h.u64(machine.clore_usd.to_bits());
    h.u64(machine.min_bid);
    h.u64(machine.billing_interval_s.into());
    for g in &machine.gpus {
        h.u64(g.index.into());
        h.bytes(g.model.as_bytes());
        h.u64(g.power_limit_w.min.into());
        h.u64(g.power_limit_w.max.into());
        for r in [g.core_lock_mhz, g.mem_lock_mhz] {
            h.opt(r.map(|r| i64::from(r.min)));
            h.opt(r.map(|r| i64::from(r.max)));
        }
        for r in [g.core_offset_mhz, g.mem_offset_mhz] {
            h.opt(r.map(|r| i64::from(r.min)));
            h.opt(r.map(|r| i64::from(r.max)));
        }
    }
    h.u64(machine.reliability.to_bits());
    if let Some(r) = &machine.running {
        h.u64(r.bid_id);
        h.u64(r.owner_id);
        h.u64(r.price_per_day);
        h.opt(r.total_power_limit_w.map(i64::from));
        h.u64(r.running_for_s);
    }
    h.u64(bid.id);
    h.u64(bid.owner_id);
    h.u64(bid.price_per_day);
    h.u64(bid.total_power_limit_w.into());
    h.u64(bid.created_at);
    for o in bid.oc.iter() {
        h.u64(o.power_limit_w.into());
        h.opt(o.core_lock_mhz.map(i64::from));
        h.opt(o.mem_lock_mhz.map(i64::from));
        h.opt(o.core_offset_mhz.map(i64::from));
        h.opt(o.mem_offset_mhz.map(i64::from));
    }
    h.bytes(bid.image.as_bytes());
    for k in bid.env_keys.iter() {
        h.bytes(k.as_bytes());
        h.u64(0);
    }
    // 52 bits fit an f64 exactly; +1 keeps the score positive.
    ((h.0 >> 12) + 1) as f64
}

struct Hostile(Mode, Cell<u32>);

fn depth(n: u64) -> u64 {
    // The stop can never be reached; black_box keeps the compiler from knowing that.
    if n == black_box(u64::MAX) {
        return 0;
    }
    // Not a tail call: the addition after the call keeps every frame alive.
    black_box(depth(black_box(n + 1))) + 1
}

impl Strategy for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-strategy".into(),
            version: "0.0.1".into(),
            description: "misbehaves on purpose".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        let mode = match config {
            "spin" => Mode::Spin,
            "grow-memory" => Mode::GrowMemory,
            "recurse" => Mode::Recurse,
            "panic" => Mode::Panic,
            "chatty-panic" => Mode::ChattyPanic,
            "exit" => Mode::Exit,
            // What an author might do in `configure`: read a setting from the environment.
            "env" => {
                let home = std::env::var("HOME").ok();
                Mode::Tag(1.0 + std::env::vars().count() as f64 + home.map_or(0.0, |_| 100.0))
            }
            "duplicate-ids" => Mode::DuplicateIds,
            "unknown-id" => Mode::UnknownId,
            "nan" => Mode::Nan,
            "drop-one" => Mode::DropOne,
            "tag-blind" => Mode::TagBlind,
            "count" => Mode::Count,
            "fingerprint" => Mode::Fingerprint,
            other => match other.strip_prefix("tag=").map(str::parse) {
                Some(Ok(tag)) => Mode::Tag(tag),
                _ => return Err(format!("unknown mode {other:?}")),
            },
        };
        Ok(Hostile(mode, Cell::new(0)))
    }

    fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        let mut scores: Vec<Score> = bids
            .iter()
            .map(|b| Score {
                bid_id: b.id,
                score: 1.0,
            })
            .collect();
        match self.0 {
            Mode::Spin => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            Mode::GrowMemory => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch one byte per page: real memory, little fuel.
                    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 20);
                    for page in chunk.spare_capacity_mut().iter_mut().step_by(4096) {
                        page.write(0xAB);
                    }
                    hoard.push(black_box(chunk));
                }
            }
            Mode::Recurse => {
                black_box(depth(0));
            }
            Mode::Panic => panic!("deliberate panic"),
            Mode::ChattyPanic => {
                for line in 0..160 {
                    eprintln!("debug line {line:03}: {}", "x".repeat(48));
                }
                panic!("deliberate panic after {} bids of chatter", bids.len());
            }
            Mode::Exit => std::process::exit(3),
            Mode::DuplicateIds => {
                let first = scores[0];
                scores.push(first);
                scores.remove(1);
            }
            Mode::UnknownId => scores[0].bid_id = u64::MAX,
            Mode::Nan => scores[0].score = f64::NAN,
            Mode::DropOne => {
                scores.pop();
            }
            Mode::Tag(tag) => scores.iter_mut().for_each(|s| s.score = tag),
            Mode::Fingerprint => {
                for (s, b) in scores.iter_mut().zip(bids) {
                    s.score = fingerprint(machine, b);
                }
            }
            Mode::Count => {
                self.1.set(self.1.get() + 1);
                let calls = f64::from(self.1.get());
                scores.iter_mut().for_each(|s| s.score = calls);
            }
            // An author's slip that a tidy sample book never shows: every image is assumed
            // to carry a tag.
            Mode::TagBlind => {
                for (s, b) in scores.iter_mut().zip(bids) {
                    let tag = b.image.rsplit_once(':').map(|(_, t)| t).unwrap();
                    s.score = tag.len() as f64;
                }
            }
        }
        scores
    }
}

export_strategy!(Hostile);
