//! A validator that misbehaves as configured: `spin`, `trap`, `unknown-id`,
//! `duplicate-ids`; or `reject-all`, which behaves and rejects every bid.

use std::hint::black_box;

use gigaspot_sdk::{Bid, Machine, PluginInfo, Rejection, Validator, export_validator};

struct Hostile(String);

impl Validator for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-validator".into(),
            version: "0.0.1".into(),
            description: "misbehaves on purpose".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        match config {
            "spin" | "trap" | "unknown-id" | "duplicate-ids" | "reject-all" => {
                Ok(Hostile(config.into()))
            }
            other => Err(format!("unknown mode {other:?}")),
        }
    }

    fn validate(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Rejection> {
        let reject = |bid_id| Rejection {
            bid_id,
            code: "hostile".into(),
            message: "rejected by the hostile validator".into(),
        };
        match self.0.as_str() {
            "spin" => {
                let mut i = 0u64;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "trap" => std::process::abort(),
            "unknown-id" => vec![reject(u64::MAX)],
            "duplicate-ids" => vec![reject(bids[0].id), reject(bids[0].id)],
            _ => bids.iter().map(|b| reject(b.id)).collect(),
        }
    }
}

export_validator!(Hostile);
