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

pub use policy::{ImageVerdict, Policy};

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
        let mut seen = ImageMemo::default();
        bids.iter()
            .filter_map(|bid| {
                let verdict = seen.verdict(&bid.image, |image| self.image_verdict(image));
                self.check_with(bid, verdict)
            })
            .collect()
    }
}

/// The image verdicts of one call. In a book from the market every distinct image is
/// stored once and each bid's image borrows it, so bids with the same image share its
/// address: the patterns are matched once per distinct image (up to [`ImageMemo::SIZE`]
/// of them; further images are matched per bid). Keyed by address and length, so a
/// lookup never compares text, and images that only look alike are matched on their own.
#[derive(Default)]
struct ImageMemo {
    known: Vec<((usize, usize), ImageVerdict)>,
}

impl ImageMemo {
    /// The most images remembered in one call.
    const SIZE: usize = 32;

    fn verdict(&mut self, image: &str, decide: impl FnOnce(&str) -> ImageVerdict) -> ImageVerdict {
        let key = (image.as_ptr() as usize, image.len());
        if let Some((_, verdict)) = self.known.iter().find(|(k, _)| *k == key) {
            return *verdict;
        }
        let verdict = decide(image);
        if self.known.len() < Self::SIZE {
            self.known.push((key, verdict));
        }
        verdict
    }
}

export_validator!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::bid;

    #[test]
    fn bids_sharing_an_image_are_judged_as_one_and_each_rejection_names_its_bid() {
        let policy = Policy::parse("image-deny = *:latest\nmin-price-per-watt = 0.05").unwrap();
        let shared: &str = "repo/app:latest";
        let other = String::from("repo/app:latest");
        let bids: Vec<Bid> = (1..=40)
            .map(|id| Bid {
                image: if id % 2 == 0 {
                    shared.into()
                } else {
                    other.as_str().into()
                },
                ..bid(id, 100, 250, 4)
            })
            .chain([Bid {
                image: "repo/app:1".into(),
                ..bid(41, 100, 250, 4)
            }])
            .collect();
        let mut calls = 0;
        let mut memo = ImageMemo::default();
        for b in &bids {
            memo.verdict(&b.image, |image| {
                calls += 1;
                policy.image_verdict(image)
            });
        }
        assert_eq!(
            calls, 3,
            "two addresses of the same text and one other image"
        );
        let rejected = Policy::validate(
            &policy,
            &gigaspot_sdk::testing::machine(4, 0.0, 0.05),
            &bids,
        );
        let ids: Vec<u64> = rejected.iter().map(|r| r.bid_id).collect();
        assert_eq!(ids, (1..=40).collect::<Vec<_>>());
        assert!(rejected.iter().all(|r| r.code == "image-denied"));
    }
}
