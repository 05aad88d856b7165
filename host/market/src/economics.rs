//! Energy and price arithmetic shared by the reference strategy and the clearing.
//!
//! The guest SDK carries the same formulas (`gigaspot_sdk::economics`); a test checks
//! that the default plugin and [`crate::PricePerWatt`] agree bit for bit, so keep the
//! order of operations identical when changing either.

/// CLORE base units in one CLORE.
pub const UNITS_PER_CLORE: u64 = 100_000_000;

/// A price in CLORE per day per kW of total power limit (0 without a limit).
pub fn price_per_kw(price: f64, power_w: u32) -> f64 {
    if power_w == 0 {
        0.0
    } else {
        price * 1000.0 / f64::from(power_w)
    }
}

/// Converts a price in base units per day to CLORE per day.
pub fn clore_per_day(units_per_day: u64) -> f64 {
    units_per_day as f64 / UNITS_PER_CLORE as f64
}

/// A USD rate (USD per kWh, USD per CLORE) in nano-USD, the fixed point in which the
/// market computes floors: rates are decimal numbers of at most 9 places, so rounding the
/// float to the nearest nano-USD recovers the decimal exactly. `None` when not finite,
/// negative or too large to be a rate.
pub fn nano_usd(rate: f64) -> Option<u64> {
    if !rate.is_finite() || !(0.0..=1e9).contains(&rate) {
        return None;
    }
    Some((rate * 1e9).round() as u64)
}

/// The energy cost in CLORE base units of drawing `power_w` watts for a day, at
/// `usd_per_kwh` and `clore_usd` USD per CLORE, rounded **up** to a base unit, computed in
/// integers: `power_w × 24 / 1000 × usd_per_kwh / clore_usd × 10^8`. `None` when a rate is
/// unusable (the floor is then unreachable); saturates at the largest amount.
pub fn energy_floor_units(power_w: u64, usd_per_kwh: f64, clore_usd: f64) -> Option<u64> {
    let energy = u128::from(nano_usd(usd_per_kwh)?);
    let rate = u128::from(nano_usd(clore_usd)?);
    if rate == 0 {
        return None;
    }
    let numerator = u128::from(power_w) * 24 * energy * u128::from(UNITS_PER_CLORE);
    let denominator = 1000 * rate;
    Some(u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX))
}

/// Energy cost in USD of drawing `power_w` watts for a day at `usd_per_kwh`.
pub fn energy_cost_usd_per_day(power_w: u32, usd_per_kwh: f64) -> f64 {
    power_w as f64 * 24.0 / 1000.0 * usd_per_kwh
}

/// Energy cost in CLORE of drawing `power_w` watts for a day, at `clore_usd` USD per CLORE.
/// A non-positive rate makes energy unaffordable (infinite cost).
pub fn energy_cost_clore_per_day(power_w: u32, usd_per_kwh: f64, clore_usd: f64) -> f64 {
    if clore_usd <= 0.0 {
        return f64::INFINITY;
    }
    energy_cost_usd_per_day(power_w, usd_per_kwh) / clore_usd
}

/// The host's net profit of a day at `units_per_day` drawing `power_w`, in USD: the price
/// at `clore_usd` minus the energy at `usd_per_kwh`. A price covers the energy exactly when
/// this is not negative (the SDK's `covers_energy`, in the same order of operations).
pub fn net_profit_usd_per_day(
    units_per_day: u64,
    power_w: u32,
    usd_per_kwh: f64,
    clore_usd: f64,
) -> f64 {
    clore_per_day(units_per_day) * clore_usd - energy_cost_usd_per_day(power_w, usd_per_kwh)
}

/// Price per watt in CLORE per day per W; zero when the power is zero.
pub fn price_per_watt(units_per_day: u64, power_w: u32) -> f64 {
    if power_w == 0 {
        return 0.0;
    }
    clore_per_day(units_per_day) / power_w as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_cost_of_a_kilowatt_day() {
        // 1000 W for 24 h = 24 kWh; at 0.10 USD/kWh that is 2.4 USD, i.e. 24 CLORE at 0.1 USD.
        assert!((energy_cost_usd_per_day(1000, 0.10) - 2.4).abs() < 1e-12);
        assert!((energy_cost_clore_per_day(1000, 0.10, 0.1) - 24.0).abs() < 1e-9);
        assert_eq!(energy_cost_clore_per_day(1000, 0.10, 0.0), f64::INFINITY);
    }

    #[test]
    fn energy_floors_are_exact_integers() {
        // 100 W × 24 h = 2.4 kWh × 0.17 USD = 0.408 USD = 20.4 CLORE at 0.02 USD (floats
        // give 20.40000001).
        assert_eq!(energy_floor_units(100, 0.17, 0.02), Some(2_040_000_000));
        assert_eq!(energy_floor_units(600, 0.125, 0.0625), Some(2_880_000_000));
        // Rounded up: 1 W at 0.000000001 USD/kWh for a day is far below a unit.
        assert_eq!(energy_floor_units(1, 0.000000001, 1.0), Some(1));
        assert_eq!(energy_floor_units(0, 0.3, 0.02), Some(0));
        assert_eq!(energy_floor_units(100, 0.17, 0.0), None);
        assert_eq!(energy_floor_units(100, f64::NAN, 0.02), None);
        assert_eq!(energy_floor_units(100, 1e300, 0.02), None);
    }

    #[test]
    fn price_per_watt_in_clore() {
        assert_eq!(price_per_watt(3 * UNITS_PER_CLORE, 300), 0.01);
        assert_eq!(price_per_watt(UNITS_PER_CLORE, 0), 0.0);
    }
}
