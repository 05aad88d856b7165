//! Market-wide parameters the operator sets.

use serde::{Deserialize, Serialize};

/// Longest lifetime of any bid: 20 days.
pub const MAX_BID_LIFETIME_S: u64 = 20 * 86_400;

/// Market parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketParams {
    /// Billing interval in seconds (default 60).
    pub billing_interval_s: u32,
    /// Operator fee in basis points of each charge, taken from the host's side
    /// (default 250 = 2.5 %).
    pub fee_bps: u32,
    /// USD price of one CLORE (default 0.02).
    pub clore_usd: f64,
}

impl Default for MarketParams {
    fn default() -> Self {
        MarketParams {
            billing_interval_s: 60,
            fee_bps: 250,
            clore_usd: 0.02,
        }
    }
}
