//! Strategy lab benchmarks on a large market, printed as a table (numbers recorded in
//! docs/strategy-lab.md):
//!
//! - two persisted ticks with the WASM price-per-watt strategy and the WASM policy
//!   validator, and what the recorded plugin inputs take on disk after each (the first
//!   writes every machine's book, the second only the per-interval records);
//! - the shadow's run over one interval (the WASM net-profit strategy judging every
//!   recorded clearing again) beside the tick it follows;
//! - the replay of that interval, and a "what would have won" search for a losing bid.
//!
//! `cargo bench -p gigaspot-server --bench lab -- --market FILE`, where FILE is a market
//! backup such as the store benchmark keeps (`cargo bench -p gigaspot-store --bench store
//! -- --ticks-only --native-only --market FILE` writes one of 10,000 machines × 50 bids).

use std::sync::Arc;
use std::time::Instant;

use gigaspot_market::verdict::PluginRef;
use gigaspot_market::{PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRegistry, PluginRuntime};
use gigaspot_server::backtest::{Candidate, backtest};
use gigaspot_server::plugin_versions::PluginVersions;
use gigaspot_store::{IntervalEngine, PluginVersionRecord, SledStore, Store};

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: u64 = 1_800_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(file) = args
        .iter()
        .position(|a| a == "--market")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .filter(|f| f.exists())
    else {
        eprintln!("give --market FILE, a market backup (see the header of benches/lab.rs)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut input = std::fs::File::open(&file).unwrap();
    gigaspot_store::restore(&mut input, &dir.path().join("db")).unwrap();
    let sled = Arc::new(SledStore::open(dir.path().join("db")).unwrap());
    let store: Arc<dyn Store> = sled.clone();
    let runtime =
        Arc::new(PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap());
    let registry = PluginRegistry::new(Arc::new(PricePerWatt::new()), 0);
    let keep = |guest: &str, kind: &str, config: &str, plugin: &PluginRef| {
        store
            .put_plugin_version(&PluginVersionRecord {
                digest: plugin.digest.clone(),
                name: plugin.name.clone(),
                version: plugin.version.clone(),
                kind: kind.into(),
                config: config.into(),
                installed_at: T0,
                wasm: gigaspot_tests::guest(guest),
            })
            .unwrap();
    };
    let strategy = runtime
        .load_strategy(&gigaspot_tests::guest("price-per-watt"), "")
        .unwrap();
    keep("price-per-watt", "strategy", "", strategy.plugin_ref());
    registry.activate_strategy(Arc::new(strategy));
    let deny = "image-deny = registry.example/denied/*";
    let validator = runtime
        .load_validator(&gigaspot_tests::guest("policy-validator"), deny)
        .unwrap();
    keep(
        "policy-validator",
        "validator",
        deny,
        validator.plugin_ref(),
    );
    registry.install_validator(Arc::new(validator));
    let machines = store.machines().unwrap().len();
    println!("| {machines} machines | result |");
    println!("|---|---|");

    let engine = IntervalEngine::without_audit(&*store, &registry);
    let inputs_bytes = || {
        let kinds = sled.space_by_kind().unwrap();
        let of = |k: &str| kinds.get(k).copied().unwrap_or_default();
        (of("inpc"), of("book"), of("dch"))
    };
    let mut ticks = Vec::new();
    for (i, now) in [T0, T0 + 60].into_iter().enumerate() {
        let started = Instant::now();
        let report = engine.tick(now).unwrap();
        let took = started.elapsed();
        ticks.push((report.interval.unwrap(), took));
        let ((rn, rb), (bn, bb), (_, db)) = inputs_bytes();
        println!(
            "| tick {} (WASM strategy + validator) | {:.0} ms; inputs: {rn} record chunks {:.1} MB, {bn} books {:.1} MB (decisions {:.1} MB) |",
            i + 1,
            took.as_secs_f64() * 1e3,
            rb as f64 / 1e6,
            bb as f64 / 1e6,
            db as f64 / 1e6,
        );
    }
    let (interval, tick_took) = ticks[1];

    let versions = PluginVersions::new(runtime.clone(), store.clone());
    let shadow = Candidate {
        strategy: Arc::new(
            runtime
                .load_strategy(&gigaspot_tests::guest("net-profit"), "")
                .unwrap(),
        ),
        validators: None,
    };
    let started = Instant::now();
    let report = backtest(
        &*store,
        &versions,
        &shadow,
        (interval, interval),
        None,
        |_, _| {},
    )
    .unwrap();
    let shadow_took = started.elapsed();
    println!(
        "| shadow run over the interval (WASM net-profit, recorded validators) | {:.0} ms = {:.2}× the tick; {} of {} winners would change |",
        shadow_took.as_secs_f64() * 1e3,
        shadow_took.as_secs_f64() / tick_took.as_secs_f64(),
        report.total.changed,
        report.total.machines
    );

    let started = Instant::now();
    let replayed =
        gigaspot_server::replay::replay(&*store, &versions, interval, interval, |_, _| true)
            .unwrap();
    println!(
        "| replay of the interval | {:.0} ms, {} clearings, {} differences |",
        started.elapsed().as_secs_f64() * 1e3,
        replayed.replayed,
        replayed.differences.len()
    );

    // "What would have won" for the best loser of the first machines.
    let mut searched = 0;
    let mut calls = 0;
    let started = Instant::now();
    for clearing in store.recorded_clearings(interval).unwrap().iter().take(20) {
        let d = &clearing.decision;
        let Some(loser) = d
            .verdicts
            .iter()
            .find(|v| d.winner.is_some_and(|w| w.bid != v.bid))
        else {
            continue;
        };
        let found = gigaspot_plugin_runtime::in_group(|| {
            gigaspot_server::what_wins::for_decision(&*store, &versions, d, loser.bid)
        })
        .unwrap();
        calls += found.map_or(0, |f| f.calls);
        searched += 1;
    }
    let per = started.elapsed() / searched.max(1);
    println!(
        "| \"what would have won\" search, 50-bid book (WASM) | {:.1} ms per bid, {:.0} plugin runs on average |",
        per.as_secs_f64() * 1e3,
        f64::from(calls) / f64::from(searched.max(1))
    );
}
