//! A strategy that misbehaves in the way its configuration names: `spin`, `grow-memory`,
//! `recurse`, `panic`, `chatty-panic` (writes 10 KiB to stderr first), `exit`,
//! `duplicate-ids`, `unknown-id`, `nan`, `drop-one`, `tag-blind`; `tag=<n>`, which behaves
//! and scores every bid `n` (to tell versions apart); `env`, which reads the environment
//! in `configure` and scores every bid 1 + the number of variables it saw; or `count`,
//! which keeps state between calls and scores every bid with the number of calls its
//! instance has answered (1 when every call gets a fresh instance).

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
            other => match other.strip_prefix("tag=").map(str::parse) {
                Some(Ok(tag)) => Mode::Tag(tag),
                _ => return Err(format!("unknown mode {other:?}")),
            },
        };
        Ok(Hostile(mode, Cell::new(0)))
    }

    fn rank(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Score> {
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
