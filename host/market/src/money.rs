//! Money: CLORE in integer base units (1 CLORE = 10^8 units) with checked arithmetic.
//! Decimal CLORE appears only at the edges ([`Amount::from_clore`], [`Amount::as_clore`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::economics::UNITS_PER_CLORE;

/// Seconds in a day: prices are per day, intervals in seconds.
pub const SECONDS_PER_DAY: u64 = 86_400;

/// An amount of CLORE in base units. Never negative; every operation is checked.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Amount(pub u64);

/// Why a decimal CLORE value could not become an [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    /// NaN or infinite.
    #[error("{0} is not a finite number")]
    NotFinite(String),
    /// Below zero.
    #[error("{0} is negative")]
    Negative(String),
    /// Finer than one base unit (10^-8 CLORE).
    #[error("{0} has more than 8 decimal places")]
    TooPrecise(String),
    /// Larger than the ledger can hold.
    #[error("{0} is too large")]
    TooLarge(String),
    /// An operation would overflow or go below zero.
    #[error("arithmetic overflow")]
    Overflow,
}

impl Amount {
    /// Zero CLORE.
    pub const ZERO: Amount = Amount(0);

    /// Whole CLORE.
    pub const fn clore(whole: u64) -> Amount {
        Amount(whole * UNITS_PER_CLORE)
    }

    /// Converts a decimal CLORE value from an API. It must be finite, non-negative and
    /// exact to 8 decimal places (within float noise, which is rounded away).
    pub fn from_clore(value: f64) -> Result<Amount, MoneyError> {
        let text = || value.to_string();
        if !value.is_finite() {
            return Err(MoneyError::NotFinite(text()));
        }
        if value < 0.0 {
            return Err(MoneyError::Negative(text()));
        }
        let units = value * UNITS_PER_CLORE as f64;
        if units >= u64::MAX as f64 {
            return Err(MoneyError::TooLarge(text()));
        }
        let rounded = units.round();
        // Accept float noise (1e-6 of a unit) but not a real ninth decimal.
        if (units - rounded).abs() > 1e-6 * rounded.max(1.0) {
            return Err(MoneyError::TooPrecise(text()));
        }
        Ok(Amount(rounded as u64))
    }

    /// The amount in decimal CLORE, for display and APIs.
    pub fn as_clore(self) -> f64 {
        self.0 as f64 / UNITS_PER_CLORE as f64
    }

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Amount) -> Result<Amount, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`, or an error when it would go below zero.
    pub fn checked_sub(self, other: Amount) -> Result<Amount, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(MoneyError::Overflow)
    }

    /// What a price per day costs for `seconds`, rounded down to a base unit
    /// (pay-as-bid, pro rata).
    pub fn pro_rata(self, seconds: u64) -> Amount {
        let units = u128::from(self.0) * u128::from(seconds) / u128::from(SECONDS_PER_DAY);
        // A day's price for at most a day fits; longer spans saturate instead of wrapping.
        Amount(u64::try_from(units).unwrap_or(u64::MAX))
    }

    /// `basis_points` / 10,000 of the amount, rounded down.
    pub fn share_bps(self, basis_points: u32) -> Amount {
        let units = u128::from(self.0) * u128::from(basis_points.min(10_000)) / 10_000;
        // At most the amount itself, so it always fits.
        Amount(units as u64)
    }
}

impl fmt::Display for Amount {
    /// Formats as decimal CLORE with 8 places, e.g. `12.50000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:08}",
            self.0 / UNITS_PER_CLORE,
            self.0 % UNITS_PER_CLORE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_clore_converts_exactly_at_the_edge() {
        assert_eq!(Amount::from_clore(12.5), Ok(Amount(1_250_000_000)));
        assert_eq!(Amount::from_clore(0.0001), Ok(Amount(10_000)));
        assert_eq!(Amount::from_clore(0.1 + 0.2), Ok(Amount(30_000_000)));
        assert_eq!(Amount::from_clore(0.00000001), Ok(Amount(1)));
        assert!(matches!(
            Amount::from_clore(0.000000001),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Amount::from_clore(-1.0),
            Err(MoneyError::Negative(_))
        ));
        assert!(matches!(
            Amount::from_clore(f64::NAN),
            Err(MoneyError::NotFinite(_))
        ));
        assert!(matches!(
            Amount::from_clore(1e12),
            Err(MoneyError::TooLarge(_))
        ));
        assert_eq!(Amount(1_250_000_000).to_string(), "12.50000000");
    }

    #[test]
    fn pro_rata_and_fees_round_down() {
        // 100 CLORE/day for 60 s = 0.069444444... CLORE.
        assert_eq!(Amount::clore(100).pro_rata(60), Amount(6_944_444));
        assert_eq!(Amount::clore(1).pro_rata(SECONDS_PER_DAY), Amount::clore(1));
        assert_eq!(Amount(6_944_444).share_bps(250), Amount(173_611));
        assert_eq!(Amount(u64::MAX).share_bps(10_000), Amount(u64::MAX));
    }

    #[test]
    fn checked_arithmetic_refuses_overflow_and_negative_results() {
        assert_eq!(Amount(1).checked_sub(Amount(2)), Err(MoneyError::Overflow));
        assert_eq!(
            Amount(u64::MAX).checked_add(Amount(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Amount(3).checked_sub(Amount(2)), Ok(Amount(1)));
    }

    proptest! {
        #[test]
        fn fee_and_payout_add_up_to_the_charge(units in 0u64..u64::MAX / 2, bps in 0u32..=10_000) {
            let charge = Amount(units);
            let fee = charge.share_bps(bps);
            let payout = charge.checked_sub(fee).unwrap();
            prop_assert_eq!(fee.checked_add(payout).unwrap(), charge);
        }

        #[test]
        fn pro_rata_never_exceeds_the_daily_price(units in 0u64..u64::MAX, secs in 0u64..=SECONDS_PER_DAY) {
            prop_assert!(Amount(units).pro_rata(secs) <= Amount(units));
        }

        #[test]
        fn whole_units_round_trip_through_decimal(units in 0u64..100_000_000_000_000) {
            // Up to a million CLORE, 8 decimals survive the round trip through f64.
            let clore = Amount(units).as_clore();
            prop_assert_eq!(Amount::from_clore(clore).unwrap(), Amount(units));
        }
    }
}
