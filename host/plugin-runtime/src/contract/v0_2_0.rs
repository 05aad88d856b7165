//! Host bindings of the contract `gigaspot:plugin@0.2.0` (`wit/since_v0.2.0/`): flat bid
//! records without strings or lists, their per-GPU settings, images and environment keys
//! in per-call tables (each distinct string once), the machine's reliability and the
//! running bid's terms.

use super::Strings;

super::contract_version!("../../wit/since_v0.2.0");
super::gpu_oc_record!();
super::gpu_records!();

/// The machine record of this version (with the reliability and the running bid's terms).
fn machine(m: &market::MachineContext) -> wit::Machine {
    wit::Machine {
        id: m.id,
        host_id: m.host_id,
        gpus: gpus(m),
        energy_price_usd_per_kwh: m.energy_price_usd_per_kwh,
        clore_usd: m.clore_usd,
        min_bid: m.min_bid,
        billing_interval_s: m.billing_interval_s,
        reliability: m.reliability,
        running: m.running.map(|r| wit::Running {
            bid_id: r.bid_id,
            owner_id: r.owner_id,
            price_per_day: r.price_per_day,
            total_power_limit_w: r.total_power_limit_w,
            running_for_s: r.running_for_s,
        }),
    }
}

/// The machine record and the book of this version.
fn input(m: &market::MachineContext, bids: &[market::CandidateBid]) -> (wit::Machine, wit::Book) {
    (machine(m), book(bids))
}

/// The candidates as flat records with their tables.
pub(crate) fn book(bids: &[market::CandidateBid]) -> wit::Book {
    let gpus = bids.first().map_or(0, |b| b.oc.len());
    let mut rows = Vec::with_capacity(bids.len());
    let mut oc = Vec::with_capacity(bids.len() * gpus);
    let mut images = Strings::default();
    let mut env_keys = Strings::default();
    let mut env = Vec::new();
    for b in bids {
        let oc_start = oc.len() as u32;
        oc.extend(b.oc.iter().map(gpu_oc));
        let env_start = env.len() as u32;
        env.extend(b.env_keys.iter().map(|k| env_keys.get(k)));
        rows.push(wit::Bid {
            id: b.id,
            owner_id: b.owner_id,
            price_per_day: b.price_per_day,
            total_power_limit_w: b.total_power_limit_w,
            created_at: b.created_at,
            oc_start,
            oc_count: b.oc.len() as u32,
            image: images.get(&b.image),
            env_start,
            env_count: b.env_keys.len() as u32,
        });
    }
    wit::Book {
        bids: rows,
        oc,
        images: images.order.iter().map(|s| s.to_string()).collect(),
        env_keys: env_keys.order.iter().map(|s| s.to_string()).collect(),
        env,
    }
}
