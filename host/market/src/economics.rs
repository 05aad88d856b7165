//! Energy and price arithmetic shared by the reference strategy and the clearing.
//!
//! The guest SDK carries the same formulas (`gigaspot_sdk::economics`); a test checks
//! that the default plugin and [`crate::PricePerWatt`] agree bit for bit, so keep the
//! order of operations identical when changing either.

/// CLORE base units in one CLORE.
pub const UNITS_PER_CLORE: u64 = 100_000_000;

/// Converts a price in base units per day to CLORE per day.
pub fn clore_per_day(units_per_day: u64) -> f64 {
    units_per_day as f64 / UNITS_PER_CLORE as f64
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
    fn price_per_watt_in_clore() {
        assert_eq!(price_per_watt(3 * UNITS_PER_CLORE, 300), 0.01);
        assert_eq!(price_per_watt(UNITS_PER_CLORE, 0), 0.0);
    }
}
