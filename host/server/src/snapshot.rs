//! The market snapshot in the Clore GigaSPOT format: every machine and its active bids.
//! Each published snapshot has its own immutable URL ending in `_<unix seconds>.json`; a
//! new one is published when the content changed, at most once per second.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::params::MarketParams;
use gigaspot_store::{SledStore, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Published snapshots kept for download (the newest ones).
const KEPT: usize = 120;

/// The published snapshots.
#[derive(Default)]
pub struct Snapshots {
    inner: Mutex<Published>,
    /// The images each machine's agent was last told to pull ahead (`to_cache`).
    prepull: Mutex<HashMap<MachineId, Vec<String>>>,
}

#[derive(Default)]
struct Published {
    /// Content by timestamp, oldest first.
    by_ts: BTreeMap<u64, Arc<Vec<u8>>>,
    /// Hash of the newest content.
    newest_hash: [u8; 32],
    /// The second of the last build.
    built_at: u64,
    /// The store's generation at the last build.
    generation: Option<u64>,
    /// The earliest expiry among the bids of the last build: content changes then even
    /// without a write.
    next_expiry: u64,
    /// A machine's pre-pull list changed since the last build.
    prepull_changed: bool,
}

impl Snapshots {
    /// Records the images `machine`'s agent was told to pull ahead, shown as `to_cache`.
    pub fn set_prepull(&self, machine: MachineId, images: &[String]) {
        let changed = {
            let mut prepull = self.prepull.lock().unwrap_or_else(|p| p.into_inner());
            let changed = prepull.get(&machine).map(Vec::as_slice) != Some(images);
            if changed {
                prepull.insert(machine, images.to_vec());
            }
            changed
        };
        // Never hold both locks here: `current` takes `inner`, then `prepull`.
        if changed {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .prepull_changed = true;
        }
    }

    /// The timestamp of the current snapshot at `now`, building and publishing a new one
    /// when the market changed since the last (at most once per second).
    pub fn current(&self, store: &SledStore, now: u64) -> Result<u64, StoreError> {
        let mut published = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let newest = published.by_ts.keys().next_back().copied();
        let generation = store.generation();
        let unchanged = published.generation == Some(generation)
            && now < published.next_expiry
            && !published.prepull_changed;
        if let Some(ts) = newest
            && (published.built_at >= now || unchanged)
        {
            return Ok(ts);
        }
        let prepull = self
            .prepull
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        published.prepull_changed = false;
        let (bytes, next_expiry) = build(store, now, &prepull)?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        published.built_at = now;
        published.generation = Some(generation);
        published.next_expiry = next_expiry;
        match newest {
            Some(ts) if hash == published.newest_hash => Ok(ts),
            _ => {
                let ts = newest.map_or(now, |n| now.max(n + 1));
                published.by_ts.insert(ts, Arc::new(bytes));
                published.newest_hash = hash;
                while published.by_ts.len() > KEPT {
                    published.by_ts.pop_first();
                }
                Ok(ts)
            }
        }
    }

    /// The snapshot published at `ts`, while it is kept.
    pub fn get(&self, ts: u64) -> Option<Arc<Vec<u8>>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_ts
            .get(&ts)
            .cloned()
    }
}

/// One machine in the snapshot (field names and types per clore-compat.md).
#[derive(Serialize)]
struct MachineEntry<'a> {
    bids: Vec<BidEntry>,
    on_demand_rented: bool,
    online: bool,
    working_properly: bool,
    cpu: &'a str,
    cores: u32,
    threads: u32,
    ram: u32,
    cuda: &'a str,
    max_rental_length: u64,
    cc: &'a str,
    host: u64,
    reliability: f64,
    min_bid: f64,
    energy_price: f64,
    /// USD per CLORE of the energy floors.
    clore_price: f64,
    /// CLORE/day per W of a bid's total power limit: a bid's floor is
    /// `max(reserve_price, pl × floor_per_watt)`.
    floor_per_watt: f64,
    /// The host's reserve price, CLORE/day.
    reserve_price: f64,
    gpus: Vec<GpuEntry<'a>>,
}

#[derive(Serialize)]
struct GpuEntry<'a> {
    model: &'a str,
    pl: [u32; 2],
    core_lock: [u32; 2],
    mem_lock: [u32; 2],
    core_offset: [i32; 2],
    mem_offset: [i32; 2],
}

#[derive(Serialize)]
struct BidEntry {
    owner: u64,
    id: u64,
    active: bool,
    /// `active`, or `suspended` (out of clearing until its owner edits it).
    state: &'static str,
    to_cache: bool,
    cached: bool,
    price: f64,
    currency: &'static str,
    pl: u32,
}

/// The snapshot JSON: an object keyed by machine id (decimal string); `[0, 0]` stands for
/// a clock range the GPU's model does not allow. Also returns the earliest expiry among
/// the live bids.
fn build(
    store: &SledStore,
    now: u64,
    prepull: &HashMap<MachineId, Vec<String>>,
) -> Result<(Vec<u8>, u64), StoreError> {
    let market = store.tick_snapshot()?;
    let next_expiry = market
        .bids
        .values()
        .flatten()
        .filter(|b| b.is_live(now))
        .map(|b| b.expires_at)
        .min()
        .unwrap_or(u64::MAX);
    let entries: BTreeMap<String, MachineEntry<'_>> = market
        .machines
        .iter()
        .map(|m| {
            let bids = market.bids.get(&m.id).map_or(&[][..], Vec::as_slice);
            let suspended = market.suspended.get(&m.id).map_or(&[][..], Vec::as_slice);
            let queued = prepull.get(&m.id).map_or(&[][..], Vec::as_slice);
            let mut entry = machine_entry(m, bids, now, &market.params, &market.table, queued);
            // Suspended bids stay visible to their owners, marked inactive.
            entry.bids.extend(
                suspended
                    .iter()
                    .filter(|b| now < b.expires_at)
                    .map(|b| bid_entry(m, b, false, queued)),
            );
            // From the snapshot's tallies: no second trip to the store per machine.
            entry.reliability =
                gigaspot_market::suspension::reliability_at(&market.tallies, m.id, now);
            Ok((m.id.to_string(), entry))
        })
        .collect::<Result<_, StoreError>>()?;
    let bytes = serde_json::to_vec(&entries).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok((bytes, next_expiry))
}

fn bid_entry(
    m: &Machine,
    b: &gigaspot_market::bid::Bid,
    active: bool,
    queued: &[String],
) -> BidEntry {
    let cached = m.live.cached_images.contains(&b.image);
    BidEntry {
        owner: b.owner,
        id: b.id,
        active,
        state: if active { "active" } else { "suspended" },
        // Queued for pre-pull on the machine and not there yet.
        to_cache: !cached && queued.contains(&b.image),
        cached,
        price: b.price_per_day.as_clore(),
        currency: "CLORE-Blockchain",
        pl: b.total_power_limit_w(),
    }
}

fn machine_entry<'a>(
    m: &'a Machine,
    bids: &[Arc<gigaspot_market::bid::Bid>],
    now: u64,
    params: &MarketParams,
    table: &'a GpuRangeTable,
    queued: &[String],
) -> MachineEntry<'a> {
    let gpus = m
        .gpus
        .iter()
        .map(|g| {
            let pl = g.power_limit_range();
            let clocks = table.get(&g.model);
            GpuEntry {
                model: &g.model,
                pl: [pl.min, pl.max],
                core_lock: clocks.map_or([0, 0], |c| [c.core_lock.min, c.core_lock.max]),
                mem_lock: clocks.map_or([0, 0], |c| [c.mem_lock.min, c.mem_lock.max]),
                core_offset: clocks.map_or([0, 0], |c| [c.core_offset.min, c.core_offset.max]),
                mem_offset: clocks.map_or([0, 0], |c| [c.mem_offset.min, c.mem_offset.max]),
            }
        })
        .collect();
    let bids = bids
        .iter()
        .filter(|b| b.is_live(now))
        .map(|b| bid_entry(m, b, true, queued))
        .collect();
    MachineEntry {
        bids,
        on_demand_rented: false,
        online: m.live.online,
        working_properly: m.live.working,
        cpu: &m.facts.cpu,
        cores: m.facts.cores,
        threads: m.facts.threads,
        ram: m.facts.ram_gib,
        cuda: &m.facts.cuda,
        max_rental_length: m.max_rental_length_s,
        cc: &m.facts.country,
        host: m.host,
        reliability: 1.0,
        min_bid: m.min_bid(params).as_clore(),
        energy_price: m.energy_price_usd_per_kwh,
        clore_price: params.clore_usd,
        floor_per_watt: m.floor_per_watt(params),
        reserve_price: m.reserve_price.as_clore(),
        gpus,
    }
}
