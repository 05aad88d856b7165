//! Energy and price arithmetic for plugins.
//!
//! Prices arrive in CLORE base units per day (1 CLORE = [`UNITS_PER_CLORE`] units), energy
//! prices in USD per kWh, and the market's CLORE/USD rate with the machine. These are the
//! same formulas, in the same order of operations, as the market's native reference
//! strategy, so a plugin built on them ranks exactly as the reference does.

use crate::{Bid, Machine};

/// CLORE base units in one CLORE.
pub const UNITS_PER_CLORE: u64 = 100_000_000;

/// A price in base units per day, in CLORE per day.
pub fn clore_per_day(units_per_day: u64) -> f64 {
    units_per_day as f64 / UNITS_PER_CLORE as f64
}

/// The energy cost in USD of drawing `power_w` watts for a day at `usd_per_kwh`.
pub fn energy_cost_usd_per_day(power_w: u32, usd_per_kwh: f64) -> f64 {
    power_w as f64 * 24.0 / 1000.0 * usd_per_kwh
}

/// The host's energy cost of running `bid` for a day, in CLORE (the bid's total power
/// limit is taken as its draw). Infinite when the CLORE/USD rate is not positive.
pub fn energy_cost_clore_per_day(machine: &Machine, bid: &Bid) -> f64 {
    if machine.clore_usd <= 0.0 {
        return f64::INFINITY;
    }
    energy_cost_usd_per_day(bid.total_power_limit_w, machine.energy_price_usd_per_kwh)
        / machine.clore_usd
}

/// Whether the bid's price covers the host's energy cost of running it: exactly when
/// [`net_profit_usd_per_day`] is not negative (one currency, one rounding, so the two
/// never disagree at break-even).
pub fn covers_energy(machine: &Machine, bid: &Bid) -> bool {
    net_profit_usd_per_day(machine, bid) >= 0.0
}

/// The bid's price in CLORE per day per watt of its total power limit; 0 without power.
pub fn price_per_watt(bid: &Bid) -> f64 {
    if bid.total_power_limit_w == 0 {
        return 0.0;
    }
    clore_per_day(bid.price_per_day) / bid.total_power_limit_w as f64
}

/// The host's net profit of running the bid for a day in USD: the price converted at the
/// market's rate minus the energy cost of the bid's power limits.
pub fn net_profit_usd_per_day(machine: &Machine, bid: &Bid) -> f64 {
    clore_per_day(bid.price_per_day) * machine.clore_usd
        - energy_cost_usd_per_day(bid.total_power_limit_w, machine.energy_price_usd_per_kwh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bid, machine};

    #[test]
    fn a_kilowatt_day_costs_24_kwh() {
        assert!((energy_cost_usd_per_day(1000, 0.10) - 2.4).abs() < 1e-12);
    }

    #[test]
    fn energy_cover_and_profit() {
        // 2 GPUs × 500 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD
        // (values exact in binary, so the boundary is exact too).
        let m = machine(2, 0.125, 0.0625);
        let cheap = bid(1, 47, 500, 2);
        let fair = bid(2, 48, 500, 2);
        assert!(!covers_energy(&m, &cheap));
        assert!(covers_energy(&m, &fair));
        assert!((net_profit_usd_per_day(&m, &fair)).abs() < 1e-9);
        assert_eq!(price_per_watt(&fair), 0.048);
    }

    #[test]
    fn covering_the_energy_and_a_non_negative_profit_agree_at_break_even() {
        // Prices and rates whose break-even falls between floats in one currency and not
        // the other: the two answers must still agree.
        for (rate, energy) in [(0.02, 0.17), (0.03, 0.1), (0.07, 0.13), (0.011, 0.29)] {
            let m = machine(1, energy, rate);
            for price in 1..2_000u64 {
                let mut b = bid(1, 0, 100, 1);
                b.price_per_day = price * 1_000_000;
                assert_eq!(
                    covers_energy(&m, &b),
                    net_profit_usd_per_day(&m, &b) >= 0.0,
                    "price {price} rate {rate} energy {energy}"
                );
            }
        }
    }

    #[test]
    fn a_zero_rate_makes_energy_unaffordable() {
        let m = machine(1, 0.10, 0.0);
        assert!(!covers_energy(&m, &bid(1, 1000, 100, 1)));
    }
}
