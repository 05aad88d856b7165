//! Host bindings of the frozen contract `gigaspot:plugin@0.1.0` (`wit/since_v0.1.0/`):
//! every bid a record with its own list of per-GPU settings, image string and list of
//! key strings. Plugins built against it keep loading and see what they were built for.

super::contract_version!("../../wit/since_v0.1.0");
super::gpu_oc_record!();
super::gpu_records!();

/// The machine and bid records of this version (it has no reliability and knows the
/// running bid by id and run time only).
fn input(
    m: &market::MachineContext,
    bids: &[market::CandidateBid],
) -> (wit::Machine, Vec<wit::Bid>) {
    let machine = wit::Machine {
        id: m.id,
        host_id: m.host_id,
        gpus: gpus(m),
        energy_price_usd_per_kwh: m.energy_price_usd_per_kwh,
        clore_usd: m.clore_usd,
        min_bid: m.min_bid,
        billing_interval_s: m.billing_interval_s,
        running: m.running.map(|r| wit::Running {
            bid_id: r.bid_id,
            running_for_s: r.running_for_s,
        }),
    };
    let bids = bids
        .iter()
        .map(|b| wit::Bid {
            id: b.id,
            owner_id: b.owner_id,
            price_per_day: b.price_per_day,
            oc: b.oc.iter().map(gpu_oc).collect(),
            total_power_limit_w: b.total_power_limit_w,
            created_at: b.created_at,
            image: b.image.clone(),
            env_keys: b.env_keys.clone(),
        })
        .collect();
    (machine, bids)
}
