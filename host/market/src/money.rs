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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

    /// Converts a decimal CLORE value given as a float (tests, configuration). The float's
    /// shortest decimal form is parsed exactly with [`Amount::parse_clore`], so `0.1 + 0.2`
    /// (`0.30000000000000004`) is refused as too precise instead of being rounded.
    pub fn from_clore(value: f64) -> Result<Amount, MoneyError> {
        if !value.is_finite() {
            return Err(MoneyError::NotFinite(value.to_string()));
        }
        // `{:?}` of a finite f64 is its shortest round-tripping decimal, possibly with an
        // exponent (`1e-9`), which the parser reads too.
        Amount::parse_clore(&format!("{value:?}"))
    }

    /// Parses a decimal CLORE amount from its text exactly, as a JSON number literal is
    /// written: an optional `-`, digits, an optional fraction and an optional exponent
    /// (`12.5`, `0.00000001`, `1e-8`, `2.5E3`). More than 8 decimal places after applying
    /// the exponent is refused (never rounded), as are negative and oversized amounts.
    pub fn parse_clore(text: &str) -> Result<Amount, MoneyError> {
        let shown = || text.chars().take(40).collect::<String>();
        let not_a_number = || MoneyError::NotFinite(shown());
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(at) => {
                let exp = &body[at + 1..];
                let exp: i64 = exp
                    .strip_prefix('+')
                    .unwrap_or(exp)
                    .parse()
                    .map_err(|_| not_a_number())?;
                (&body[..at], exp)
            }
            None => (body, 0),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty() || !digits_ok(whole) || !digits_ok(fraction) {
            return Err(not_a_number());
        }
        // The value is digits × 10^(exponent − fraction length); in base units the power
        // of ten grows by 8.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let scale = exponent
            .checked_sub(fraction.len() as i64)
            .and_then(|e| e.checked_add(8))
            .ok_or_else(|| MoneyError::TooLarge(shown()))?;
        if digits.is_empty() {
            return Ok(Amount::ZERO);
        }
        if negative {
            return Err(MoneyError::Negative(shown()));
        }
        let digits = if scale < 0 {
            // Dropping |scale| digits must drop only zeros.
            let cut = usize::try_from(-scale).unwrap_or(usize::MAX);
            if cut > digits.len() || !digits[digits.len() - cut..].bytes().all(|b| b == b'0') {
                return Err(MoneyError::TooPrecise(shown()));
            }
            digits[..digits.len() - cut].to_string()
        } else {
            // u64 holds at most 20 digits: anything longer is too large anyway.
            let zeros = usize::try_from(scale).unwrap_or(usize::MAX);
            if digits.len().saturating_add(zeros) > 20 {
                return Err(MoneyError::TooLarge(shown()));
            }
            format!("{digits}{}", "0".repeat(zeros))
        };
        digits
            .parse::<u64>()
            .map(Amount)
            .map_err(|_| MoneyError::TooLarge(shown()))
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
        // The same quotient in 64 bits whenever the product fits (every market price for
        // up to a day does): a 128-bit division is a library call several times slower,
        // and the clearing computes this for every bid.
        if let Some(product) = self.0.checked_mul(seconds) {
            return Amount(product / SECONDS_PER_DAY);
        }
        let units = u128::from(self.0) * u128::from(seconds) / u128::from(SECONDS_PER_DAY);
        // A day's price for at most a day fits; longer spans saturate instead of wrapping.
        Amount(u64::try_from(units).unwrap_or(u64::MAX))
    }

    /// `basis_points` / 10,000 of the amount, rounded down.
    pub fn share_bps(self, basis_points: u32) -> Amount {
        let bps = u64::from(basis_points.min(10_000));
        if let Some(product) = self.0.checked_mul(bps) {
            return Amount(product / 10_000);
        }
        let units = u128::from(self.0) * u128::from(basis_points.min(10_000)) / 10_000;
        // At most the amount itself, so it always fits.
        Amount(units as u64)
    }
}

impl std::str::FromStr for Amount {
    type Err = MoneyError;

    /// Parses decimal CLORE exactly ([`Amount::parse_clore`]).
    fn from_str(text: &str) -> Result<Amount, MoneyError> {
        Amount::parse_clore(text)
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
        assert!(matches!(
            Amount::from_clore(0.1 + 0.2),
            Err(MoneyError::TooPrecise(_))
        ));
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

    #[test]
    fn decimal_text_parses_exactly_or_is_refused() {
        let ok = |t: &str, units: u64| assert_eq!(Amount::parse_clore(t), Ok(Amount(units)), "{t}");
        ok("10.12345678", 1_012_345_678);
        ok("0.00000001", 1);
        ok("1e-8", 1);
        ok("1.5E3", 150_000_000_000);
        ok("2.50000000000", 250_000_000);
        ok("0", 0);
        ok("-0.0", 0);
        ok("184467440737.09551615", u64::MAX);
        ok("20.4", 2_040_000_000);
        let too_precise = |t: &str| {
            assert!(
                matches!(Amount::parse_clore(t), Err(MoneyError::TooPrecise(_))),
                "{t}"
            )
        };
        too_precise("10.123456789");
        too_precise("1e-9");
        too_precise("0.000000015");
        assert!(matches!(
            Amount::parse_clore("184467440737.09551616"),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(matches!(
            Amount::parse_clore("1e300"),
            Err(MoneyError::TooLarge(_))
        ));
        assert!(matches!(
            Amount::parse_clore("1e-99999999999999999999"),
            Err(MoneyError::NotFinite(_))
        ));
        assert!(matches!(
            Amount::parse_clore("-1"),
            Err(MoneyError::Negative(_))
        ));
        for bad in ["", ".", "abc", "1.2.3", "1e", "--1", "0x10", "1 "] {
            assert!(Amount::parse_clore(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn any_amount_round_trips_through_its_text(units in any::<u64>()) {
            let text = Amount(units).to_string();
            prop_assert_eq!(Amount::parse_clore(&text), Ok(Amount(units)));
        }

        #[test]
        fn fee_and_payout_add_up_to_the_charge(units in 0u64..u64::MAX / 2, bps in 0u32..=10_000) {
            let charge = Amount(units);
            let fee = charge.share_bps(bps);
            let payout = charge.checked_sub(fee).unwrap();
            prop_assert_eq!(fee.checked_add(payout).unwrap(), charge);
        }

        #[test]
        fn the_64_bit_paths_give_the_128_bit_quotients(
            units in prop_oneof![0u64..1_000_000_000_000_000, any::<u64>()],
            secs in prop_oneof![0u64..=2 * SECONDS_PER_DAY, any::<u64>()],
            bps in 0u32..20_000,
        ) {
            let exact = u128::from(units) * u128::from(secs) / u128::from(SECONDS_PER_DAY);
            prop_assert_eq!(
                Amount(units).pro_rata(secs),
                Amount(u64::try_from(exact).unwrap_or(u64::MAX))
            );
            let share = u128::from(units) * u128::from(bps.min(10_000)) / 10_000;
            prop_assert_eq!(Amount(units).share_bps(bps), Amount(share as u64));
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
