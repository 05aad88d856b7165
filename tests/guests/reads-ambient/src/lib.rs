//! A strategy that reads what a program usually finds around it — the wall clock, the
//! monotonic clock, randomness (through `HashMap`'s seed), the environment, files — and
//! scores every bid with what it saw. The sandbox must answer each with a fixed value
//! and nothing of the host. The configuration names what to read.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, export_strategy};

/// What the plugin reads in `rank`.
enum Reads {
    /// Seconds since the unix epoch.
    WallClock,
    /// Nanoseconds that pass over some work.
    Monotonic,
    /// `HashMap`'s random seed, as the hash of a fixed key (53 bits).
    Random,
    /// How many variables and arguments it finds.
    Environment,
    /// 1 when it can list or read any file, else 0.
    Files,
    /// Sleeps an hour, then scores 1.
    Sleep,
}

struct Ambient(Reads);

impl Strategy for Ambient {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "reads-ambient".into(),
            version: "0.0.1".into(),
            description: "reads clocks, randomness, environment and files".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        Ok(Ambient(match config {
            "wall-clock" => Reads::WallClock,
            "monotonic" => Reads::Monotonic,
            "random" => Reads::Random,
            "environment" => Reads::Environment,
            "files" => Reads::Files,
            "sleep" => Reads::Sleep,
            other => return Err(format!("unknown reading {other:?}")),
        }))
    }

    fn rank(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        let seen = match self.0 {
            Reads::WallClock => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(-1.0, |d| d.as_secs_f64()),
            Reads::Monotonic => {
                let start = Instant::now();
                let work: u64 = bids.iter().map(|b| b.id.wrapping_mul(31)).sum();
                std::hint::black_box(work);
                start.elapsed().as_nanos() as f64
            }
            Reads::Random => (RandomState::new().hash_one(42_u64) >> 11) as f64,
            Reads::Environment => (std::env::vars().count() + std::env::args().count()) as f64,
            Reads::Files => {
                let any = std::fs::read_dir("/").is_ok()
                    || std::fs::read_dir(".").is_ok()
                    || std::fs::read("/etc/hostname").is_ok();
                f64::from(u8::from(any))
            }
            Reads::Sleep => {
                std::thread::sleep(Duration::from_secs(3600));
                1.0
            }
        };
        bids.iter()
            .map(|b| Score {
                bid_id: b.id,
                score: seen,
            })
            .collect()
    }
}

export_strategy!(Ambient);
