//! Market-wide parameters the operator sets.

use serde::{Deserialize, Serialize};

/// Longest lifetime of any bid: 20 days.
pub const MAX_BID_LIFETIME_S: u64 = 20 * 86_400;
/// Lifetime of a native bid that asks for none: 7 days (clamped to the machine's maximum).
pub const DEFAULT_BID_LIFETIME_S: u64 = 7 * 86_400;
/// Shortest and longest billing interval, seconds.
pub const BILLING_INTERVAL_RANGE_S: std::ops::RangeInclusive<u32> = 10..=86_400;
/// Highest operator fee: 5000 basis points (50 %).
pub const MAX_FEE_BPS: u32 = 5000;
/// Range of the CLORE/USD rate: at least one nano-USD, at most a million USD.
pub const CLORE_USD_RANGE: std::ops::RangeInclusive<f64> = 0.000_000_001..=1_000_000.0;

/// Market parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketParams {
    /// Billing interval in seconds (default 60).
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 86400))]
    pub billing_interval_s: u32,
    /// Operator fee in basis points of each charge, taken from the host's side
    /// (default 250 = 2.5 %).
    #[cfg_attr(feature = "openapi", schema(maximum = 5000))]
    pub fee_bps: u32,
    /// USD price of one CLORE (default 0.02).
    #[cfg_attr(feature = "openapi", schema(minimum = 0.000000001, maximum = 1000000))]
    pub clore_usd: f64,
}

/// A parameter the market cannot run with: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The offending field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl MarketParams {
    /// Checks every parameter against its documented range.
    pub fn check(&self) -> Result<(), ParamError> {
        let fail = |field, reason: &str| {
            Err(ParamError {
                field,
                reason: reason.into(),
            })
        };
        if !BILLING_INTERVAL_RANGE_S.contains(&self.billing_interval_s) {
            return fail("billing_interval_s", "must be 10 to 86400 seconds");
        }
        if self.fee_bps > MAX_FEE_BPS {
            return fail("fee_bps", "must be at most 5000 (50 %)");
        }
        if !(self.clore_usd.is_finite() && CLORE_USD_RANGE.contains(&self.clore_usd)) {
            return fail("clore_usd", "must be a number from 0.000000001 to 1000000");
        }
        Ok(())
    }
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
