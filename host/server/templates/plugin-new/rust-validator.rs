//! `{{name}}`: a GigaSPOT bid validator. Each billing interval the market calls `validate`
//! once per machine with every candidate bid; each rejection vetoes one bid for this
//! interval, with a kebab-case code and a message the bidder and the host read.

use gigaspot_sdk::{Bid, Machine, PluginInfo, Rejection, Validator, economics, export_validator};

/// Rejects bids that pay less than a minimum price per watt (the configuration, in
/// CLORE/day per W; empty means no minimum).
pub struct Plugin {
    min_per_w: f64,
}

impl Validator for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Rejects bids below a minimum price per watt".into(),
        }
    }

    fn configure(config: &str) -> Result<Self, String> {
        let min_per_w = match config.trim() {
            "" => 0.0,
            text => match text.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => return Err(format!("expected CLORE/day per W (≥ 0), got {text:?}")),
            },
        };
        Ok(Plugin { min_per_w })
    }

    fn validate(&self, _machine: &Machine, bids: &[Bid]) -> Vec<Rejection> {
        bids.iter()
            .filter(|bid| economics::price_per_watt(bid) < self.min_per_w)
            .map(|bid| Rejection {
                bid_id: bid.id,
                code: "below-minimum-price-per-watt".into(),
                message: format!(
                    "{:.6} CLORE/day per W is below this host's minimum of {}",
                    economics::price_per_watt(bid),
                    self.min_per_w
                ),
            })
            .collect()
    }
}

export_validator!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_sdk::testing::{bid, machine};

    #[test]
    fn bids_below_the_minimum_are_rejected() {
        let plugin = Plugin::configure("0.12").unwrap();
        let rejected = plugin.validate(
            &machine(4, 0.0, 0.05),
            &[bid(1, 100, 250, 4), bid(2, 60, 100, 4)],
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].bid_id, 1);
        assert_eq!(rejected[0].code, "below-minimum-price-per-watt");
    }

    #[test]
    fn without_a_minimum_every_bid_passes() {
        let plugin = Plugin::configure("").unwrap();
        assert!(
            plugin
                .validate(&machine(4, 0.0, 0.05), &[bid(1, 1, 450, 4)])
                .is_empty()
        );
        assert!(Plugin::configure("-1").is_err());
    }
}
