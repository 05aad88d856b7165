//! Host bindings of `wit/plugin.wit`, and conversions between its records and the
//! market's types.

use gigaspot_market as market;

/// Bindings of the `strategy` world; owns the shared `types` interface.
pub(crate) mod strategy {
    wasmtime::component::bindgen!({
        world: "strategy",
        path: "../../wit",
    });
}

/// Bindings of the `validator` world, reusing the strategy world's record types.
pub(crate) mod validator {
    wasmtime::component::bindgen!({
        world: "validator",
        path: "../../wit",
        with: {
            "gigaspot:plugin/types": super::strategy::gigaspot::plugin::types,
        },
    });
}

use strategy::gigaspot::plugin::types as wit;

fn range_u32(r: market::RangeU32) -> wit::RangeU32 {
    wit::RangeU32 {
        min: r.min,
        max: r.max,
    }
}

fn range_s32(r: market::RangeS32) -> wit::RangeS32 {
    wit::RangeS32 {
        min: r.min,
        max: r.max,
    }
}

/// The machine record handed to plugins.
pub(crate) fn machine(m: &market::MachineContext) -> wit::Machine {
    wit::Machine {
        id: m.id,
        host_id: m.host_id,
        gpus: m
            .gpus
            .iter()
            .map(|g| wit::Gpu {
                index: g.index,
                model: g.model.clone(),
                power_limit_w: range_u32(g.power_limit_w),
                core_lock_mhz: g.core_lock_mhz.map(range_u32),
                mem_lock_mhz: g.mem_lock_mhz.map(range_u32),
                core_offset_mhz: g.core_offset_mhz.map(range_s32),
                mem_offset_mhz: g.mem_offset_mhz.map(range_s32),
            })
            .collect(),
        energy_price_usd_per_kwh: m.energy_price_usd_per_kwh,
        clore_usd: m.clore_usd,
        min_bid: m.min_bid,
        billing_interval_s: m.billing_interval_s,
        running: m.running.map(|r| wit::Running {
            bid_id: r.bid_id,
            running_for_s: r.running_for_s,
        }),
    }
}

/// The bid records handed to plugins.
pub(crate) fn bids(bids: &[market::CandidateBid]) -> Vec<wit::Bid> {
    bids.iter()
        .map(|b| wit::Bid {
            id: b.id,
            owner_id: b.owner_id,
            price_per_day: b.price_per_day,
            oc: b
                .oc
                .iter()
                .map(|o| wit::GpuOc {
                    power_limit_w: o.power_limit_w,
                    core_lock_mhz: o.core_lock_mhz,
                    mem_lock_mhz: o.mem_lock_mhz,
                    core_offset_mhz: o.core_offset_mhz,
                    mem_offset_mhz: o.mem_offset_mhz,
                })
                .collect(),
            total_power_limit_w: b.total_power_limit_w,
            created_at: b.created_at,
            image: b.image.clone(),
            env_keys: b.env_keys.clone(),
        })
        .collect()
}

/// A plugin's scores in market terms.
pub(crate) fn scores(scores: Vec<wit::Score>) -> Vec<market::Score> {
    scores
        .into_iter()
        .map(|s| market::Score {
            bid_id: s.bid_id,
            score: s.score,
        })
        .collect()
}

/// A plugin's rejections in market terms.
pub(crate) fn rejections(rejections: Vec<wit::Rejection>) -> Vec<market::Rejection> {
    rejections
        .into_iter()
        .map(|r| market::Rejection {
            bid_id: r.bid_id,
            code: r.code,
            message: r.message,
        })
        .collect()
}

/// A plugin's description of itself.
pub(crate) fn info(info: wit::PluginInfo) -> market::PluginInfo {
    market::PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
    }
}
