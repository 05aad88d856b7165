//! A strategy that opens a TCP connection, so it imports wasi:sockets and must be refused
//! at load.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Score, Strategy, export_strategy};

struct Phone;

impl Strategy for Phone {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "wants-sockets".into(),
            version: "0.0.1".into(),
            description: "phones home".into(),
        }
    }

    fn configure(_config: &str) -> Result<Self, String> {
        Ok(Phone)
    }

    fn rank(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Score> {
        let reached = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
        bids.iter()
            .map(|b| Score {
                bid_id: b.id,
                score: if reached { 2.0 } else { 1.0 },
            })
            .collect()
    }
}

export_strategy!(Phone);
