//! A strategy that reads a file: it imports wasi:filesystem, which the sandbox answers with no
//! preopened directory, so it finds none and scores 0.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, export_strategy};

struct Snoop;

impl Strategy for Snoop {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "wants-filesystem".into(),
            version: "0.0.1".into(),
            description: "reads files".into(),
        }
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Snoop)
    }

    fn rank(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        let secret = std::fs::read_to_string("/etc/hostname").map_or(0, |s| s.len());
        bids.iter()
            .map(|b| Score {
                bid_id: b.id,
                score: secret as f64,
            })
            .collect()
    }
}

export_strategy!(Snoop);
