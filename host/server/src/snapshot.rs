//! The market snapshot in the Clore GigaSPOT format: every machine and its active bids.
//! Each published snapshot has its own immutable URL ending in `_<unix seconds>.json`; a
//! new one is published when the content changed, at most once per second.
//!
//! A build serializes only the machines whose entry changed since the last build: each
//! machine's JSON is kept as a fragment with the records it was made from (the machine and
//! bid records are shared, immutable `Arc`s: the same pointer is the same content), and the
//! snapshot is the fragments joined. While one caller builds, the others are answered with
//! the snapshot published before, so a reader never waits for a build once one exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use gigaspot_market::bid::Bid;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::params::MarketParams;
#[cfg(test)]
use gigaspot_store::SledStore;
use gigaspot_store::{Store, StoreError, TickSnapshot};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Published snapshots kept for download (the newest ones)...
const KEPT: usize = 120;
/// ...as long as they hold at most this many bytes together; the two newest are always
/// kept. At 10,000 machines × 50 bids a snapshot is ~82 MB, so about six are kept.
const KEPT_BYTES: usize = 512 << 20;

/// The published snapshots.
#[derive(Default)]
pub struct Snapshots {
    inner: Mutex<Published>,
    /// The fragments of the last build; held by the one caller building.
    fragments: Mutex<Fragments>,
    /// The images each machine's agent was last told to pull ahead (`to_cache`).
    prepull: Mutex<HashMap<MachineId, Vec<String>>>,
}

#[derive(Default)]
struct Published {
    /// Content by timestamp, oldest first.
    by_ts: BTreeMap<u64, Bytes>,
    /// Hash of the newest content (over its fragments' hashes).
    newest_hash: [u8; 32],
    /// The second of the last build.
    built_at: u64,
    /// The store's generation at the last build.
    generation: Option<u64>,
    /// The earliest expiry among the bids of the last build (active or suspended):
    /// content changes then even without a write.
    next_expiry: u64,
    /// A machine's pre-pull list changed since the last build.
    prepull_changed: bool,
    /// What the last build did (readable while the next one runs).
    last: BuildStats,
}

impl Published {
    /// The newest snapshot when it is still current at `now`.
    fn current(&self, generation: u64, now: u64) -> Option<u64> {
        let newest = self.by_ts.keys().next_back().copied()?;
        let unchanged =
            self.generation == Some(generation) && now < self.next_expiry && !self.prepull_changed;
        (self.built_at >= now || unchanged).then_some(newest)
    }
}

/// Each machine's serialized entry from the last build, with what it was made from.
#[derive(Default)]
struct Fragments {
    /// The market parameters and clock table every entry was made with.
    basis: Option<(MarketParams, GpuRangeTable)>,
    by_machine: HashMap<MachineId, Fragment>,
    last: BuildStats,
}

/// One machine's entry and its inputs.
struct Fragment {
    machine: Arc<Machine>,
    active: Vec<Arc<Bid>>,
    suspended: Vec<Arc<Bid>>,
    reliability: u64,
    queued: Vec<String>,
    /// The entry changes at this second without a write (a bid in it expires).
    valid_until: u64,
    json: Vec<u8>,
    hash: [u8; 32],
}

impl Fragment {
    /// Whether this fragment is the entry of `machine` at `now` with these inputs.
    fn is_for(&self, inputs: &Inputs<'_>, now: u64) -> bool {
        fn same(a: &[Arc<Bid>], b: &[Arc<Bid>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        }
        now < self.valid_until
            && Arc::ptr_eq(&self.machine, inputs.machine)
            && same(&self.active, inputs.active)
            && same(&self.suspended, inputs.suspended)
            && self.reliability == inputs.reliability.to_bits()
            && self.queued == inputs.queued
    }
}

/// What one machine's entry is made from.
struct Inputs<'a> {
    machine: &'a Arc<Machine>,
    active: &'a [Arc<Bid>],
    suspended: &'a [Arc<Bid>],
    reliability: f64,
    queued: &'a [String],
}

/// What the last snapshot build did, for benchmarks and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Machines whose entry was serialized anew.
    pub rebuilt: usize,
    /// Machines whose entry from the build before was reused.
    pub reused: usize,
    /// Size of the snapshot, bytes.
    pub bytes: usize,
    /// Time the build took, from reading the market to the joined snapshot.
    pub took: Duration,
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

    fn published(&self) -> MutexGuard<'_, Published> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The timestamp of the current snapshot at `now`, building and publishing a new one
    /// when the market changed since the last (at most once per second). While another
    /// caller builds, the snapshot published before is the answer; only the very first
    /// build is waited for.
    pub fn current(&self, store: &dyn Store, now: u64) -> Result<u64, StoreError> {
        let newest = {
            let published = self.published();
            if let Some(ts) = published.current(store.generation(), now) {
                return Ok(ts);
            }
            published.by_ts.keys().next_back().copied()
        };
        let mut fragments = match self.fragments.try_lock() {
            Ok(fragments) => fragments,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => match newest {
                Some(ts) => return Ok(ts),
                None => self.fragments.lock().unwrap_or_else(|p| p.into_inner()),
            },
        };
        // The builder before this one may have published what is current.
        let generation = store.generation();
        if let Some(ts) = self.published().current(generation, now) {
            return Ok(ts);
        }
        self.published().prepull_changed = false;
        let prepull = self
            .prepull
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let market = store.tick_snapshot()?;
        // Below the requests' priority: readers get the snapshot published before and
        // writers go on meanwhile, so nothing but this caller waits on the build.
        let building: &mut Fragments = &mut fragments;
        let (bytes, hash, next_expiry) =
            crate::background::run(|| building.build(&market, now, &prepull, Instant::now()));
        // Whether the content changed, and under which timestamp it goes, are decided
        // under the lock; publishing to a shared database happens outside it (readers
        // take the same lock), still one build at a time under `fragments`.
        let (newest, unchanged) = {
            let published = self.published();
            let newest = published.by_ts.keys().next_back().copied();
            (newest, hash == published.newest_hash)
        };
        let fresh = match newest {
            Some(_) if unchanged => None,
            _ => {
                let ts = newest.map_or(now, |n| now.max(n + 1));
                // On a shared database: under a timestamp no replica used, so that every
                // replica serves this URL with these bytes.
                Some(store.publish_snapshot(ts, &bytes)?)
            }
        };
        let mut published = self.published();
        published.last = fragments.last;
        published.built_at = now;
        published.generation = Some(generation);
        published.next_expiry = next_expiry;
        let Some(ts) = fresh else {
            return Ok(newest.expect("an unchanged snapshot was published before"));
        };
        published.by_ts.insert(ts, bytes);
        published.newest_hash = hash;
        let mut held: usize = published.by_ts.values().map(Bytes::len).sum();
        while published.by_ts.len() > KEPT || (held > KEPT_BYTES && published.by_ts.len() > 2) {
            held -= published.by_ts.pop_first().map_or(0, |(_, b)| b.len());
        }
        Ok(ts)
    }

    /// The current snapshot's timestamp when no build is needed at `now` for a store at
    /// `generation`, or the one published before while another caller builds: answered
    /// without touching the store (for callers on the async
    /// workers; the rest call [`Snapshots::current`] on the blocking pool).
    pub fn fresh(&self, generation: u64, now: u64) -> Option<u64> {
        let published = self.published();
        if let Some(ts) = published.current(generation, now) {
            return Some(ts);
        }
        // Another caller is building: the snapshot published before is the answer, as in
        // [`Snapshots::current`], without a trip to the blocking pool.
        let newest = published.by_ts.keys().next_back().copied();
        drop(published);
        match self.fragments.try_lock() {
            Err(TryLockError::WouldBlock) => newest,
            _ => None,
        }
    }

    /// What the last build did (machines serialized anew and reused, size, time).
    pub fn last_build(&self) -> BuildStats {
        self.published().last
    }

    /// The snapshot published at `ts`, while it is kept.
    pub fn get(&self, ts: u64) -> Option<Bytes> {
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
    /// What the host's background job earns, CLORE/day: a floor of `min_bid`.
    background_earnings: f64,
    /// Which floor sets `min_bid`: `reserve_price`, `energy_floor` or
    /// `background_earnings`.
    min_bid_from: &'static str,
    /// The machine runs the host's background job now (no bid holds it).
    background: bool,
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

impl Fragments {
    /// The snapshot JSON of `market` at `now`: an object keyed by machine id (decimal
    /// string, in string order, as serde writes a map); `[0, 0]` stands for a clock range
    /// the GPU's model does not allow. Entries whose inputs did not change are reused,
    /// the others serialized on every core. Also returns the content's hash and the
    /// earliest expiry among the bids shown.
    fn build(
        &mut self,
        market: &TickSnapshot,
        now: u64,
        prepull: &HashMap<MachineId, Vec<String>>,
        started: Instant,
    ) -> (Bytes, [u8; 32], u64) {
        let basis = (market.params.clone(), market.table.clone());
        if self.basis.as_ref() != Some(&basis) {
            self.by_machine.clear();
            self.basis = Some(basis);
        }
        let mut machines: Vec<(String, Inputs<'_>)> = market
            .machines
            .iter()
            .map(|m| {
                let inputs = Inputs {
                    machine: m,
                    active: market.bids.get(&m.id).map_or(&[][..], |b| b.as_slice()),
                    suspended: market
                        .suspended
                        .get(&m.id)
                        .map_or(&[][..], |b| b.as_slice()),
                    // From the snapshot's tallies: no second trip to the store per machine.
                    reliability: gigaspot_market::suspension::reliability_at(
                        &market.tallies,
                        m.id,
                        now,
                    ),
                    queued: prepull.get(&m.id).map_or(&[][..], Vec::as_slice),
                };
                (m.id.to_string(), inputs)
            })
            .collect();
        machines.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let stale: Vec<&Inputs<'_>> = machines
            .iter()
            .map(|(_, inputs)| inputs)
            .filter(|inputs| {
                self.by_machine
                    .get(&inputs.machine.id)
                    .is_none_or(|f| !f.is_for(inputs, now))
            })
            .collect();
        let rebuilt = stale.len();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (params, table) = (&market.params, &market.table);
        let made: Vec<Fragment> = std::thread::scope(|scope| {
            let workers: Vec<_> = stale
                .chunks(stale.len().div_ceil(threads).max(1))
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|inputs| fragment(inputs, now, params, table))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for f in made {
            self.by_machine.insert(f.machine.id, f);
        }
        // Machines gone from the market leave with their fragments.
        let present: std::collections::HashSet<MachineId> =
            market.machines.iter().map(|m| m.id).collect();
        self.by_machine.retain(|id, _| present.contains(id));
        let mut hasher = Sha256::new();
        let mut next_expiry = u64::MAX;
        let size: usize = machines.iter().map(|(id, _)| id.len() + 4).sum::<usize>()
            + self
                .by_machine
                .values()
                .map(|f| f.json.len())
                .sum::<usize>()
            + 2;
        let mut out = Vec::with_capacity(size);
        out.push(b'{');
        for (id, inputs) in &machines {
            let Some(f) = self.by_machine.get(&inputs.machine.id) else {
                continue;
            };
            if out.len() > 1 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(&f.json);
            hasher.update(id.as_bytes());
            hasher.update(f.hash);
            // Each fragment knows when its own content changes without a write.
            next_expiry = next_expiry.min(f.valid_until);
        }
        out.push(b'}');
        self.last = BuildStats {
            rebuilt,
            reused: machines.len() - rebuilt,
            bytes: out.len(),
            took: started.elapsed(),
        };
        (Bytes::from(out), hasher.finalize().into(), next_expiry)
    }
}

/// Serializes one machine's entry.
fn fragment(
    inputs: &Inputs<'_>,
    now: u64,
    params: &MarketParams,
    table: &GpuRangeTable,
) -> Fragment {
    let m = inputs.machine;
    let mut entry = machine_entry(m, inputs.active, now, params, table, inputs.queued);
    // Suspended bids stay visible to their owners, marked inactive.
    entry.bids.extend(
        inputs
            .suspended
            .iter()
            .filter(|b| now < b.expires_at)
            .map(|b| bid_entry(m, b, false, inputs.queued)),
    );
    entry.reliability = inputs.reliability;
    // Serializing plain structs of numbers, strings and booleans cannot fail.
    let json = serde_json::to_vec(&entry).unwrap_or_default();
    let valid_until = inputs
        .active
        .iter()
        .chain(inputs.suspended)
        .map(|b| b.expires_at)
        .filter(|&e| e > now)
        .min()
        .unwrap_or(u64::MAX);
    Fragment {
        machine: Arc::clone(m),
        active: inputs.active.to_vec(),
        suspended: inputs.suspended.to_vec(),
        reliability: inputs.reliability.to_bits(),
        queued: inputs.queued.to_vec(),
        valid_until,
        hash: Sha256::digest(&json).into(),
        json,
    }
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
    let basis = m.min_bid_basis(params);
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
        min_bid: basis.min_bid().as_clore(),
        energy_price: m.energy_price_usd_per_kwh,
        clore_price: params.clore_usd,
        floor_per_watt: m.floor_per_watt(params),
        reserve_price: m.reserve_price.as_clore(),
        background_earnings: m.background_earnings.as_clore(),
        min_bid_from: basis.binding(),
        background: m
            .live
            .background
            .as_ref()
            .is_some_and(|b| b.state == gigaspot_market::agent_protocol::ContainerState::Running),
        gpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::account::Role;
    use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
    use gigaspot_market::money::Amount;

    const NOW: u64 = 1_800_000_000;

    /// The snapshot as one serde pass over the whole market writes it (what the build did
    /// before fragments): the reference every fragment build must equal byte for byte.
    fn whole(store: &SledStore, now: u64, prepull: &HashMap<MachineId, Vec<String>>) -> Vec<u8> {
        let market = store.tick_snapshot().unwrap();
        let entries: BTreeMap<String, MachineEntry<'_>> = market
            .machines
            .iter()
            .map(|m| {
                let queued = prepull.get(&m.id).map_or(&[][..], Vec::as_slice);
                let bids = market.bids.get(&m.id).map_or(&[][..], |b| b.as_slice());
                let mut entry = machine_entry(m, bids, now, &market.params, &market.table, queued);
                for b in market
                    .suspended
                    .get(&m.id)
                    .into_iter()
                    .flat_map(|b| b.iter())
                {
                    if now < b.expires_at {
                        entry.bids.push(bid_entry(m, b, false, queued));
                    }
                }
                entry.reliability =
                    gigaspot_market::suspension::reliability_at(&market.tallies, m.id, now);
                (m.id.to_string(), entry)
            })
            .collect();
        serde_json::to_vec(&entries).unwrap()
    }

    fn bid(store: &SledStore, client: u64, machine: u64, lifetime_s: u64, at: u64) {
        let terms = BidTerms {
            machine,
            price_per_day: Amount::clore(20 + machine),
            image: "registry.example/app:1".into(),
            env: Default::default(),
            oc: vec![OcRequest {
                pl: Some(200),
                ..OcRequest::default()
            }],
            lifetime: Lifetime::Explicit(lifetime_s),
        };
        store.place_bid(client, &terms, at, None).unwrap();
    }

    /// Twelve online machines (ids past 9, so that string order differs from number
    /// order), each with a bid living a day, and a bid on the seventh expiring 100 s after
    /// `NOW`.
    fn market() -> (tempfile::TempDir, SledStore, u64, Vec<MachineId>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let host = store.create_account("h", &[Role::Host]).unwrap().id;
        let client = store.create_account("c", &[Role::Client]).unwrap().id;
        store
            .deposit(client, Amount::clore(100_000), "seed", NOW)
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..12 {
            let id = crate::test_support::online_machine(&store, host);
            bid(&store, client, id, 86_400, NOW);
            ids.push(id);
        }
        bid(&store, client, ids[6], 100, NOW);
        assert!(ids.iter().any(|id| *id < 10) && ids.iter().any(|id| *id >= 10));
        (dir, store, client, ids)
    }

    fn content(snapshots: &Snapshots, ts: u64) -> Vec<u8> {
        snapshots.get(ts).unwrap().to_vec()
    }

    #[test]
    fn a_build_serializes_only_the_machines_that_changed_and_equals_a_whole_build() {
        let (_dir, store, client, ids) = market();
        let none = HashMap::new();
        let snapshots = Snapshots::default();
        let ts = snapshots.current(&store, NOW).unwrap();
        assert_eq!(content(&snapshots, ts), whole(&store, NOW, &none));
        let stats = snapshots.last_build();
        assert_eq!((stats.rebuilt, stats.reused), (12, 0));
        assert_eq!(stats.bytes, content(&snapshots, ts).len());

        // A new bid on machine 5: one entry serialized anew.
        bid(&store, client, ids[4], 86_400, NOW + 1);
        let ts = snapshots.current(&store, NOW + 1).unwrap();
        assert_eq!(content(&snapshots, ts), whole(&store, NOW + 1, &none));
        let stats = snapshots.last_build();
        assert_eq!((stats.rebuilt, stats.reused), (1, 11));

        // Machine 7's short bid expires without a write: its entry changes, only it.
        let ts_before = ts;
        let ts = snapshots.current(&store, NOW + 100).unwrap();
        assert!(ts > ts_before, "the expiry publishes a new snapshot");
        assert_eq!(content(&snapshots, ts), whole(&store, NOW + 100, &none));
        assert_eq!(snapshots.last_build().rebuilt, 1);

        // A pre-pull list changes one machine's entry.
        snapshots.set_prepull(ids[2], &["registry.example/app:1".to_owned()]);
        let prepull = HashMap::from([(ids[2], vec!["registry.example/app:1".to_owned()])]);
        let ts = snapshots.current(&store, NOW + 101).unwrap();
        assert_eq!(content(&snapshots, ts), whole(&store, NOW + 101, &prepull));
        assert_eq!(snapshots.last_build().rebuilt, 1);

        // New market parameters change every entry (the minimum bid, the CLORE price).
        let mut params = store.params().unwrap();
        params.clore_usd *= 2.0;
        store.set_params(&params).unwrap();
        let ts = snapshots.current(&store, NOW + 102).unwrap();
        assert_eq!(content(&snapshots, ts), whole(&store, NOW + 102, &prepull));
        assert_eq!(snapshots.last_build().rebuilt, 12);

        // Nothing changed: the same snapshot, nothing built.
        let again = snapshots.current(&store, NOW + 103).unwrap();
        assert_eq!(again, ts);
    }

    #[test]
    fn while_one_caller_builds_the_others_get_the_snapshot_published_before() {
        let (_dir, store, client, ids) = market();
        let snapshots = Snapshots::default();
        let first = snapshots.current(&store, NOW).unwrap();
        bid(&store, client, ids[1], 86_400, NOW + 1);
        {
            // A build in progress holds the fragments.
            let _building = snapshots.fragments.lock().unwrap();
            assert_eq!(snapshots.current(&store, NOW + 1).unwrap(), first);
            // The async workers' check answers the same without touching the store.
            assert_eq!(snapshots.fresh(store.generation(), NOW + 1), Some(first));
        }
        // With no build running, a stale snapshot is not "fresh": the caller builds.
        assert_eq!(snapshots.fresh(store.generation(), NOW + 1), None);
        let next = snapshots.current(&store, NOW + 1).unwrap();
        assert!(next > first);
        assert_eq!(snapshots.last_build().rebuilt, 1);
        assert_eq!(
            content(&snapshots, next),
            whole(&store, NOW + 1, &HashMap::new())
        );
    }
}
