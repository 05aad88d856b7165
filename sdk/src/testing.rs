//! Small builders for plugin unit tests.

use crate::economics::UNITS_PER_CLORE;
use crate::{Bid, Gpu, GpuOc, Machine, RangeU32, Running};

/// A machine with `gpus` identical RTX 4090s (100–450 W, no lock or offset ranges), the
/// given energy price (USD/kWh) and CLORE/USD rate, a 60 s interval and nothing running.
pub fn machine(gpus: u32, energy_price_usd_per_kwh: f64, clore_usd: f64) -> Machine {
    Machine {
        id: 1,
        host_id: 100,
        gpus: (0..gpus)
            .map(|index| Gpu {
                index,
                model: "NVIDIA GeForce RTX 4090".into(),
                power_limit_w: RangeU32 { min: 100, max: 450 },
                core_lock_mhz: None,
                mem_lock_mhz: None,
                core_offset_mhz: None,
                mem_offset_mhz: None,
            })
            .collect(),
        energy_price_usd_per_kwh,
        clore_usd,
        min_bid: 0,
        billing_interval_s: 60,
        reliability: 1.0,
        running: None,
    }
}

/// `machine` with bid `bid_id` running on it for `running_for_s` seconds (the market
/// passes the running bid among the candidates too while it is live; ties go to it). Its
/// terms are left unknown (owner 7, price 0, no power limit); [`running_bid`] fills them
/// in from the bid.
pub fn running(mut machine: Machine, bid_id: u64, running_for_s: u64) -> Machine {
    machine.running = Some(Running {
        bid_id,
        owner_id: 7,
        price_per_day: 0,
        total_power_limit_w: None,
        running_for_s,
    });
    machine
}

/// `machine` with `bid` running on it for `running_for_s` seconds at the bid's price and
/// power limit.
pub fn running_bid(mut machine: Machine, bid: &Bid<'_>, running_for_s: u64) -> Machine {
    machine.running = Some(Running {
        bid_id: bid.id,
        owner_id: bid.owner_id,
        price_per_day: bid.price_per_day,
        total_power_limit_w: Some(bid.total_power_limit_w),
        running_for_s,
    });
    machine
}

/// Bid `id` of owner 7 offering `price_clore` **whole** CLORE per day with `power_w` watts
/// **on each** of `gpus` GPUs (so `total_power_limit_w = power_w × gpus`), for the image
/// `registry.example/app:1`.
pub fn bid(id: u64, price_clore: u64, power_w: u32, gpus: u32) -> Bid<'static> {
    Bid {
        id,
        owner_id: 7,
        price_per_day: price_clore * UNITS_PER_CLORE,
        oc: (0..gpus)
            .map(|_| GpuOc {
                power_limit_w: power_w,
                core_lock_mhz: None,
                mem_lock_mhz: None,
                core_offset_mhz: None,
                mem_offset_mhz: None,
            })
            .collect::<Vec<_>>()
            .into(),
        total_power_limit_w: power_w * gpus,
        created_at: 1_790_000_000,
        image: "registry.example/app:1".into(),
        env_keys: &[],
    }
}
