//! `policy-validator`: the operator's bid policy as a validator plugin.
//!
//! Configured by a string of `key = value` lines (`#` starts a comment):
//!
//! ```text
//! # Only images from our registry or Docker's official library…
//! image-allow = registry.example/*, docker.io/library/*
//! # …and never a floating tag.
//! image-deny = *:latest
//! owner-deny = 13, 42
//! min-price-per-watt = 0.01
//! ```
//!
//! Patterns match the whole image reference; `*` stands for any run of characters and `?`
//! for one. Each rejected bid gets the first rule it breaks, checked in this order:
//! `owner-denied`, `image-denied`, `image-not-allowed` (when an allow list is set),
//! `price-per-watt-too-low` (CLORE/day per W of total power limit). An empty
//! configuration lets every bid through.

mod glob;
mod policy;

use gigaspot_sdk::{Bid, Machine, PluginInfo, Rejection, Validator, export_validator};

pub use policy::Policy;

impl Validator for Policy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "policy-validator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Image allow/deny patterns, owner deny list, minimum price per watt"
                .into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        Policy::parse(config)
    }

    fn validate(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Rejection> {
        bids.iter().filter_map(|bid| self.check(bid)).collect()
    }
}

export_validator!(Policy);
