//! Contract benchmark, printed as a table (numbers recorded in docs/plugins.md): the cost
//! of a plugin call under each contract version beside the native reference, measured in
//! the same run on the same books.
//!
//! - `price-per-watt`: the 0.1.0 build (fixture) and the 0.2.0 build (from source) against
//!   the native reference strategy, per call, with the ratio to native;
//! - transfer: the `hostile-strategy` guest in `tag=1` mode (scores every bid 1, no other
//!   work) under 0.1.0 and 0.2.0; its marginal cost per bid, (t(1000) − t(10)) / 990, is
//!   what handing one bid in and one score out costs.
//!
//! `cargo bench -p gigaspot-plugin-runtime --bench contract`.

use std::time::{Duration, Instant};

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{CandidateBid, MachineContext, PricePerWatt, Strategy};
use gigaspot_plugin_runtime::{ArtifactCache, PluginLimits, PluginRuntime, WasmStrategy};
use gigaspot_tests::{guest, repo_root};

const SIZES: [usize; 4] = [1, 10, 100, 1000];

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture(file: &str) -> Vec<u8> {
    std::fs::read(
        repo_root()
            .join("tests/fixtures/contract-v0.1.0")
            .join(file),
    )
    .unwrap()
}

fn book(size: usize) -> (MachineContext, Vec<CandidateBid>) {
    let mut sample = SampleMarket::new(size as u64);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, size);
    (machine, bids)
}

/// Median of `calls` timed calls after a warm-up of a tenth as many.
fn median(calls: usize, mut call: impl FnMut()) -> Duration {
    for _ in 0..calls.div_ceil(10) {
        call();
    }
    let mut times: Vec<Duration> = (0..calls)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn calls_for(size: usize) -> usize {
    if size >= 1000 { 400 } else { 2000 }
}

fn wasm(plugin: &WasmStrategy, size: usize) -> Duration {
    let (machine, bids) = book(size);
    median(calls_for(size), || {
        plugin.rank(&machine, &bids).unwrap();
    })
}

fn fuel_per_call(plugin: &WasmStrategy, size: usize) -> u64 {
    let (machine, bids) = book(size);
    let (c0, f0) = plugin.usage();
    plugin.rank(&machine, &bids).unwrap();
    let (c1, f1) = plugin.usage();
    (f1 - f0) / (c1 - c0).max(1)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let rt = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory()).unwrap();
    let native = PricePerWatt::new();
    let ppw_old = rt
        .load_strategy(&fixture("price_per_watt.wasm"), "")
        .unwrap();
    let ppw_new = rt.load_strategy(&guest("price-per-watt"), "").unwrap();
    let probe_old = rt
        .load_strategy(&fixture("hostile_strategy.wasm"), "tag=1")
        .unwrap();
    let probe_new = rt
        .load_strategy(&guest("hostile-strategy"), "tag=1")
        .unwrap();

    println!("price-per-watt, median per call (ratio to native in the same run):");
    println!(
        "{:>6} {:>10} {:>22} {:>22} {:>12} {:>12}",
        "bids", "native", "wasm 0.1.0", "wasm 0.2.0", "fuel 0.1.0", "fuel 0.2.0"
    );
    for size in SIZES {
        let (machine, bids) = book(size);
        let n = median(calls_for(size) * 10, || {
            native.rank(&machine, &bids).unwrap();
        });
        let old = wasm(&ppw_old, size);
        let new = wasm(&ppw_new, size);
        let ratio = |d: Duration| d.as_secs_f64() / n.as_secs_f64().max(1e-9);
        println!(
            "{size:>6} {:>10} {:>22} {:>22} {:>12} {:>12}",
            us(n),
            format!("{} ({:.0}×)", us(old), ratio(old)),
            format!("{} ({:.0}×)", us(new), ratio(new)),
            fuel_per_call(&ppw_old, size),
            fuel_per_call(&ppw_new, size),
        );
    }

    println!("\ntransfer probe (tag=1: one bid in, one score out, no other work):");
    println!(
        "{:>10} {:>12} {:>12} {:>16} {:>14}",
        "contract", "10 bids", "1000 bids", "per bid", "fuel per bid"
    );
    for (name, plugin) in [("0.1.0", &probe_old), ("0.2.0", &probe_new)] {
        let small = wasm(plugin, 10);
        let large = wasm(plugin, 1000);
        let per_bid = large.saturating_sub(small).as_secs_f64() * 1e9 / 990.0;
        let fuel = (fuel_per_call(plugin, 1000) - fuel_per_call(plugin, 10)) / 990;
        println!(
            "{name:>10} {:>12} {:>12} {:>13.1} ns {fuel:>14}",
            us(small),
            us(large),
            per_bid
        );
    }
}
