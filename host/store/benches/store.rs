//! Store benchmarks, printed as a table (numbers recorded in docs/market-core.md):
//!
//! - durable bid inserts per second, 1 writer and 32 concurrent writers;
//! - one full persisted tick for 10,000 machines × 50 bids, with the native reference
//!   strategy and, on an identical copy of the market, with the WASM price-per-watt plugin
//!   and the WASM policy validator; the phases of each (snapshot, settlement, clearing,
//!   commit: batch building, decision encoding, apply, flush); the resident set with the
//!   500,000 live bids; what a tick stores and what decision retention compacts it to.
//!
//! `cargo bench -p gigaspot-store --bench store` (add `-- --machines N` for a smaller run;
//! `-- --machines 0` measures the inserts only; `-- --market FILE` keeps the set-up market
//! as a backup in FILE and, when FILE exists, starts from it instead of placing the bids
//! again; `-- --ticks-only` skips the insert benchmarks; `-- --native-only` runs only the
//! native tick, for profiling it; `-- --postgres` also copies the market into a private
//! PostgreSQL server (`gigaspot migrate`'s import, timed) and runs the same native tick
//! on it, beside sled's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gigaspot_market::account::{AccountId, Role};
use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
use gigaspot_market::machine::Gpu;
use gigaspot_market::money::Amount;
use gigaspot_market::{Plugins, PricePerWatt, StrategyOnly};
use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRegistry, PluginRuntime};
use gigaspot_store::{IntervalEngine, MachineSpec, SledStore, Store};

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: u64 = 1_800_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let machines = args
        .iter()
        .position(|a| a == "--machines")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let market_file = args
        .iter()
        .position(|a| a == "--market")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    println!("| benchmark | result |");
    println!("|---|---|");
    if !args.iter().any(|a| a == "--ticks-only") {
        inserts(1, 2_000);
        inserts(32, 20_000);
    }
    if machines > 0 {
        let native_only = args.iter().any(|a| a == "--native-only");
        let postgres = args.iter().any(|a| a == "--postgres");
        tick(machines, 50, market_file.as_deref(), native_only, postgres);
    }
}

fn spec(host: AccountId, gpus: usize) -> MachineSpec {
    MachineSpec {
        host,
        facts: Default::default(),
        gpus: (0..gpus)
            .map(|i| Gpu {
                model: "NVIDIA GeForce RTX 4090".into(),
                uuid: format!("GPU-{i}"),
                card_min_w: 150,
                card_max_w: 450,
                ceiling_w: 450,
            })
            .collect(),
        energy_price_usd_per_kwh: 0.02,
        reserve_price: Amount::ZERO,
        max_rental_length_s: 30 * 86_400,
        background: None,
        background_earnings: Amount::ZERO,
        explicit_ceilings: true,
    }
}

fn terms(machine: u64, gpus: usize, n: u64) -> BidTerms {
    BidTerms {
        machine,
        // Above every bid's own-PL floor (at most 8 × 450 W at the spec's energy price,
        // 0.024 CLORE per W per day: 86.4 CLORE).
        price_per_day: Amount::clore(90 + n % 2000),
        image: format!("registry.example/team{}/trainer:v{}", n % 7, n % 3),
        env: [("MODEL".to_string(), "llama".to_string())].into(),
        oc: vec![
            OcRequest {
                pl: Some(150 + (n * 7 % 300) as u32),
                ..OcRequest::default()
            };
            gpus
        ],
        lifetime: Lifetime::Explicit(7 * 86_400),
    }
}

/// A store with one online machine and `clients` funded clients.
fn market(store: &SledStore, machines: usize, clients: usize) -> (Vec<u64>, Vec<AccountId>) {
    let host = store.create_account("host", &[Role::Host]).unwrap().id;
    let ids = (0..machines)
        .map(|i| {
            let m = store.register_machine(spec(host, 1 + i % 8)).unwrap();
            gigaspot_store::testing::bring_online(store, m.id).unwrap();
            m.id
        })
        .collect();
    let clients = (0..clients)
        .map(|i| {
            let id = store
                .create_account(&format!("c{i}"), &[Role::Client])
                .unwrap()
                .id;
            store
                .deposit(id, Amount::clore(1_000_000), &format!("seed-{i}"), T0)
                .unwrap();
            id
        })
        .collect();
    (ids, clients)
}

fn inserts(writers: usize, total: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let (machines, clients) = market(&store, 1, writers);
    let gpus = store.machine(machines[0]).unwrap().unwrap().gpus.len();
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, client, machine) = (store.clone(), clients[w], machines[0]);
            std::thread::spawn(move || {
                let mut latencies = Vec::with_capacity(total / writers);
                for n in 0..total / writers {
                    let t = Instant::now();
                    store
                        .place_bid(client, &terms(machine, gpus, n as u64), T0, None)
                        .unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let batched = store.bid_intake_stats();
    println!(
        "| durable bid inserts, {writers} writer(s) | {:.0} bids/s (p50 {:.2} ms, p99 {:.2} ms), {:.1} bids per batch |",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        batched.requests as f64 / batched.batches.max(1) as f64
    );
}

fn tick(
    machine_count: usize,
    bids_per_machine: usize,
    market_file: Option<&std::path::Path>,
    native_only: bool,
    postgres: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = match market_file.filter(|f| f.exists()) {
        Some(file) => {
            let mut input = std::fs::File::open(file).unwrap();
            gigaspot_store::restore(&mut input, &dir.path().join("db")).unwrap();
            eprintln!("market restored from {}", file.display());
            Arc::new(SledStore::open(dir.path().join("db")).unwrap())
        }
        None => {
            let store = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
            set_up(&store, machine_count, bids_per_machine);
            if let Some(file) = market_file {
                store
                    .backup(&mut std::fs::File::create(file).unwrap())
                    .unwrap();
            }
            store
        }
    };
    println!(
        "| resident set with {} live bids (store with its in-memory working set, sled's cache) | {:.0} MiB |",
        machine_count * bids_per_machine,
        resident_bytes() as f64 / (1 << 20) as f64
    );
    // The same market in PostgreSQL, copied before any tick.
    let pg = postgres.then(|| {
        let server = gigaspot_tests::postgres::Postgres::start();
        let url = server.fresh_database();
        let started = Instant::now();
        let market = store.export().unwrap();
        let exported = started.elapsed();
        let pg = gigaspot_store::PgStore::import(&url, &market).unwrap();
        println!(
            "| copy of the market into PostgreSQL (`gigaspot migrate`: export, one transaction, audit) | {:.1} s ({:.1} s of it reading sled) |",
            started.elapsed().as_secs_f64(),
            exported.as_secs_f64()
        );
        (server, pg)
    });
    let sled_ms = ticks(&store, machine_count, bids_per_machine, native_only);
    if let Some((_server, pg)) = pg {
        let native = StrategyOnly(PricePerWatt::new());
        let (engine, _) = IntervalEngine::start(&pg, &native).unwrap();
        let started = Instant::now();
        let report = engine.tick(T0 + 60).unwrap();
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(report.machines, machine_count);
        let t = report.timings;
        println!(
            "| persisted tick, {machine_count} machines × {bids_per_machine} bids, native reference, on PostgreSQL | {elapsed:.0} ms ({} switches, {:.1}× sled's {sled_ms:.0} ms; snapshot {:.0} ms, settlement {:.0} ms, clearing {:.0} ms, commit {:.0} ms) |",
            report.switches,
            elapsed / sled_ms,
            t.snapshot.as_secs_f64() * 1e3,
            t.settle.as_secs_f64() * 1e3,
            t.clear.as_secs_f64() * 1e3,
            t.commit.as_secs_f64() * 1e3,
        );
    }
}

/// Registers `machine_count` machines and fills each order book with `bids_per_machine` bids.
fn set_up(store: &Arc<SledStore>, machine_count: usize, bids_per_machine: usize) {
    let setup = Instant::now();
    let (machines, clients) = market(store, machine_count, 500);
    // Fill the order books from 32 threads (group commit makes this fast enough).
    let chunks: Vec<Vec<u64>> = machines
        .chunks(machines.len().div_ceil(32))
        .map(<[u64]>::to_vec)
        .collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (store, clients) = (store.clone(), clients.clone());
            std::thread::spawn(move || {
                for machine in chunk {
                    let gpus = store.machine(machine).unwrap().unwrap().gpus.len();
                    for n in 0..bids_per_machine as u64 {
                        let client = clients[((machine + n) % clients.len() as u64) as usize];
                        store
                            .place_bid(client, &terms(machine, gpus, machine * 31 + n), T0, None)
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    eprintln!(
        "set up {machine_count} machines × {bids_per_machine} bids in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
}

/// One persisted tick natively and one through WASM on an identical copy of the market.
/// Returns the native tick's milliseconds.
fn ticks(
    store: &Arc<SledStore>,
    machine_count: usize,
    bids_per_machine: usize,
    native_only: bool,
) -> f64 {
    // The WASM run gets a market in exactly the same state: a copy of the store.
    let copy_dir = tempfile::tempdir().unwrap();
    if !native_only {
        let mut backup = Vec::new();
        store.backup(&mut backup).unwrap();
        gigaspot_store::restore(&mut backup.as_slice(), &copy_dir.path().join("db")).unwrap();
    }
    let copy = Arc::new(SledStore::open(copy_dir.path().join("db")).unwrap());

    let native = StrategyOnly(PricePerWatt::new());
    let runtime = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap();
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    registry.activate_strategy(Arc::new(
        runtime
            .load_strategy(&gigaspot_tests::guest("price-per-watt"), "")
            .unwrap(),
    ));
    // A validator that reads every bid and rejects none, so both runs pick the same winners.
    registry.install_validator(Arc::new(
        runtime
            .load_validator(
                &gigaspot_tests::guest("policy-validator"),
                "image-deny = registry.example/denied/*",
            )
            .unwrap(),
    ));
    let runs: [(&str, &dyn Plugins, &Arc<SledStore>); 2] = [
        ("native reference", &native, store),
        (
            "WASM price-per-watt + WASM policy validator",
            &registry,
            &copy,
        ),
    ];
    let ticks = 1;
    let now = T0 + 60;
    let mut native_ms = 0.0;
    for (name, plugins, store) in runs.into_iter().take(if native_only { 1 } else { 2 }) {
        let (engine, _) = IntervalEngine::start(store.as_ref(), plugins).unwrap();
        // The first tick on this market records every machine's book (the plugins' input,
        // written again only when it changes); the tick measured below is the next one.
        let started = Instant::now();
        engine.tick(now - 60).unwrap();
        println!(
            "| first tick on the market, {name}: every machine's book recorded | {:.0} ms |",
            started.elapsed().as_secs_f64() * 1e3
        );
        let space_before = store.space_by_kind().unwrap();
        let started = Instant::now();
        let report = engine.tick(now).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(report.machines, machine_count);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = if native_ms > 0.0 {
            format!(", {:.2}× native", ms(elapsed) / native_ms)
        } else {
            native_ms = ms(elapsed);
            String::new()
        };
        println!(
            "| persisted tick, {machine_count} machines × {bids_per_machine} bids, {name} | {:.0} ms ({} switches{ratio}) |",
            ms(elapsed),
            report.switches
        );
        let t = report.timings;
        let c = store.last_tick_commit();
        println!(
            "| where that tick went | snapshot {:.0} ms, settlement {:.0} ms, clearing {:.0} ms, commit {:.0} ms (building the batch {:.0} ms, of it encoding decisions {:.0} ms; applying {:.0} ms; flush {:.0} ms) |",
            ms(t.snapshot),
            ms(t.settle),
            ms(t.clear),
            ms(t.commit),
            ms(c.build),
            ms(c.encode_decisions),
            ms(c.apply),
            ms(c.flush)
        );
        // What the tick added to the database, by kind of record.
        let space_after = store.space_by_kind().unwrap();
        let added: Vec<String> = space_after
            .iter()
            .filter_map(|(kind, (records, bytes))| {
                let (r0, b0) = space_before.get(kind).copied().unwrap_or_default();
                (*bytes > b0).then(|| {
                    format!(
                        "{kind} +{} records +{:.1} MB",
                        records - r0,
                        (bytes - b0) as f64 / 1e6
                    )
                })
            })
            .collect();
        let decisions =
            space_after.get("dch").map_or(0, |d| d.1) - space_before.get("dch").map_or(0, |d| d.1);
        println!(
            "| stored by that tick | {}; decision records {:.1} MB a tick, {:.1} GB a day at 60 s |",
            added.join(", "),
            decisions as f64 / 1e6,
            decisions as f64 * 1440.0 / 1e9
        );
    }
    // Retention: the ticks' full decision records compacted (what the service does to
    // records older than `decision_retention_s`), in the service's batch size.
    let started = Instant::now();
    let mut total = gigaspot_store::Compaction::default();
    loop {
        let done = store.compact_decisions(u64::MAX, 2_000).unwrap();
        if done.bytes_before == 0 {
            break;
        }
        total.records += done.records;
        total.bytes_before += done.bytes_before;
        total.bytes_after += done.bytes_after;
    }
    let intervals = ticks as f64;
    println!(
        "| decision records compacted | {} records in {:.0} ms; {:.1} MB → {:.2} MB an interval ({:.1} GB → {:.2} GB a day at 60 s) |",
        total.records,
        started.elapsed().as_secs_f64() * 1e3,
        total.bytes_before as f64 / intervals / 1e6,
        total.bytes_after as f64 / intervals / 1e6,
        total.bytes_before as f64 / intervals * 1440.0 / 1e9,
        total.bytes_after as f64 / intervals * 1440.0 / 1e9,
    );
    println!(
        "| database on disk after the ticks | {:.0} MB |",
        store.size_on_disk().unwrap() as f64 / 1e6
    );
    native_ms
}

/// The process's resident set (`VmRSS` of /proc/self/status), in bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}
