//! The policy: parsing its configuration and checking a bid against it.

use gigaspot_sdk::{Bid, Rejection, economics};

use crate::glob;

/// The operator's bid policy.
#[derive(Debug, Default, PartialEq)]
pub struct Policy {
    /// When not empty, an image must match one of these patterns.
    pub image_allow: Vec<String>,
    /// An image matching one of these patterns is rejected.
    pub image_deny: Vec<String>,
    /// Bids of these owners are rejected.
    pub owner_deny: Vec<u64>,
    /// Least CLORE/day per W of total power limit.
    pub min_price_per_watt: Option<f64>,
}

impl Policy {
    /// Parses `key = value` lines; see the crate documentation for the keys.
    pub fn parse(config: &str) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for (number, raw) in config.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |what: String| format!("line {}: {what}", number + 1);
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| at(format!("expected `key = value`, got {line:?}")))?;
            let (key, value) = (key.trim(), value.trim());
            let list = || value.split(',').map(str::trim).filter(|v| !v.is_empty());
            match key {
                "image-allow" => policy.image_allow.extend(list().map(String::from)),
                "image-deny" => policy.image_deny.extend(list().map(String::from)),
                "owner-deny" => {
                    for id in list() {
                        let id = id
                            .parse()
                            .map_err(|_| at(format!("owner-deny: {id:?} is not an account id")))?;
                        policy.owner_deny.push(id);
                    }
                }
                "min-price-per-watt" => {
                    let min: f64 = value.parse().map_err(|_| {
                        at(format!("min-price-per-watt: {value:?} is not a number"))
                    })?;
                    if !min.is_finite() || min < 0.0 {
                        return Err(at(format!(
                            "min-price-per-watt must be a finite number >= 0, got {value}"
                        )));
                    }
                    policy.min_price_per_watt = Some(min);
                }
                other => {
                    return Err(at(format!(
                        "unknown key {other:?} (known: image-allow, image-deny, owner-deny, \
                         min-price-per-watt)"
                    )));
                }
            }
        }
        Ok(policy)
    }

    /// The first rule `bid` breaks, as a rejection.
    pub fn check(&self, bid: &Bid) -> Option<Rejection> {
        self.check_with(bid, self.image_verdict(&bid.image))
    }

    /// What the image rules say of `image` (the part of [`Policy::check`] that depends on
    /// the image alone, so a caller may reuse it for bids with the same image).
    pub fn image_verdict(&self, image: &str) -> ImageVerdict {
        if let Some(at) = self.image_deny.iter().position(|p| glob::matches(p, image)) {
            ImageVerdict::Denied(at)
        } else if !self.image_allow.is_empty()
            && !self.image_allow.iter().any(|p| glob::matches(p, image))
        {
            ImageVerdict::NotAllowed
        } else {
            ImageVerdict::Passes
        }
    }

    /// [`Policy::check`] with the image's verdict already known.
    pub fn check_with(&self, bid: &Bid, image: ImageVerdict) -> Option<Rejection> {
        let reject = |code: &str, message: String| {
            Some(Rejection {
                bid_id: bid.id,
                code: code.into(),
                message,
            })
        };
        if self.owner_deny.contains(&bid.owner_id) {
            return reject(
                "owner-denied",
                format!("account {} may not bid on this market", bid.owner_id),
            );
        }
        match image {
            ImageVerdict::Denied(at) => {
                return reject(
                    "image-denied",
                    format!(
                        "image {:?} matches the denied pattern {:?}",
                        bid.image, self.image_deny[at]
                    ),
                );
            }
            ImageVerdict::NotAllowed => {
                return reject(
                    "image-not-allowed",
                    format!(
                        "image {:?} matches none of the allowed patterns {:?}",
                        bid.image, self.image_allow
                    ),
                );
            }
            ImageVerdict::Passes => {}
        }
        let ppw = economics::price_per_watt(bid);
        match self.min_price_per_watt {
            Some(min) if ppw < min => reject(
                "price-per-watt-too-low",
                format!("{ppw} CLORE/day per W is below the minimum of {min}"),
            ),
            _ => None,
        }
    }
}

/// What the image rules say of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageVerdict {
    /// It matches the denied pattern at this index of [`Policy::image_deny`].
    Denied(usize),
    /// Allowed patterns are set and it matches none.
    NotAllowed,
    /// The image rules let it through.
    Passes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::bid;

    fn with_image(id: u64, image: &str) -> Bid<'_> {
        Bid {
            image: image.into(),
            ..bid(id, 100, 250, 4)
        }
    }

    const CONFIG: &str = "
        # a comment line
        image-allow = registry.example/*, docker.io/library/*
        image-deny = *:latest   # floating tags
        owner-deny = 13, 42
        min-price-per-watt = 0.05
    ";

    #[test]
    fn parses_every_key() {
        let policy = Policy::parse(CONFIG).unwrap();
        assert_eq!(policy.image_allow.len(), 2);
        assert_eq!(policy.image_deny, vec!["*:latest".to_string()]);
        assert_eq!(policy.owner_deny, vec![13, 42]);
        assert_eq!(policy.min_price_per_watt, Some(0.05));
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
    }

    #[test]
    fn refuses_bad_configuration_with_the_line() {
        for (config, needle) in [
            ("image-allow", "line 1: expected `key = value`"),
            ("\nowner-deny = x", "line 2: owner-deny"),
            ("min-price-per-watt = -1", "finite number >= 0"),
            ("min-price-per-watt = NaN", "finite number >= 0"),
            ("colour = blue", "unknown key \"colour\""),
        ] {
            let err = Policy::parse(config).unwrap_err();
            assert!(err.contains(needle), "{config:?} gave {err:?}");
        }
    }

    #[test]
    fn each_rule_rejects_with_its_code() {
        let policy = Policy::parse(CONFIG).unwrap();
        let code = |b: &Bid| policy.check(b).map(|r| r.code);
        let mut denied_owner = with_image(1, "registry.example/app:1");
        denied_owner.owner_id = 42;
        assert_eq!(code(&denied_owner).as_deref(), Some("owner-denied"));
        assert_eq!(
            code(&with_image(2, "registry.example/app:latest")).as_deref(),
            Some("image-denied")
        );
        assert_eq!(
            code(&with_image(3, "evil.example/miner:1")).as_deref(),
            Some("image-not-allowed")
        );
        // 100 CLORE over 1000 W = 0.1 per W passes; 40 over 1000 W = 0.04 does not.
        assert_eq!(code(&with_image(4, "docker.io/library/python:3.12")), None);
        let cheap = Bid {
            price_per_day: 40 * economics::UNITS_PER_CLORE,
            ..with_image(5, "docker.io/library/python:3.12")
        };
        assert_eq!(code(&cheap).as_deref(), Some("price-per-watt-too-low"));
    }

    #[test]
    fn the_image_verdict_is_what_check_decides_on() {
        let policy = Policy::parse(CONFIG).unwrap();
        for image in [
            "registry.example/app:1",
            "registry.example/app:latest",
            "evil.example/miner:1",
            "docker.io/library/python:3.12",
        ] {
            let b = with_image(1, image);
            assert_eq!(
                policy.check(&b),
                policy.check_with(&b, policy.image_verdict(image))
            );
        }
        assert_eq!(policy.image_verdict("x:latest"), ImageVerdict::Denied(0));
    }

    #[test]
    fn an_empty_policy_lets_everything_through() {
        assert_eq!(Policy::default().check(&with_image(1, "anything")), None);
    }
}
