//! Contract benchmark, printed as a table (numbers recorded in docs/plugins.md): the cost
//! of a plugin call under each contract version beside the native reference, measured in
//! the same run on the same books.
//!
//! - `price-per-watt`: the builds of the frozen versions (fixtures) and of the newest
//!   (from source) against the native reference strategy, per call, with the ratio to
//!   native;
//! - transfer: the `hostile-strategy` guest in `tag=1` mode (scores every bid 1, no other
//!   work) under every version; its marginal cost per bid, (t(1000) − t(10)) / 990, is
//!   what handing one bid in and one score out costs.
//!
//! `cargo bench -p gigaspot-plugin-runtime --bench contract`.

use std::time::{Duration, Instant};

use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{CandidateBid, MachineContext, PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{
    ArtifactCache, ContractVersion, PluginLimits, PluginRuntime, WasmStrategy,
};
use gigaspot_tests::{guest, repo_root};

const SIZES: [usize; 4] = [1, 10, 100, 1000];

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Plugin `name` built for `version`: the kept fixture of a frozen version, the build
/// from source of the newest.
fn build(version: ContractVersion, name: &str) -> Vec<u8> {
    if version == ContractVersion::NEWEST {
        return guest(name);
    }
    let file = format!("{}.wasm", name.replace('-', "_"));
    let folder = format!("tests/fixtures/contract-v{}", version.as_str());
    std::fs::read(repo_root().join(folder).join(file)).unwrap()
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
    // Oldest first.
    let versions: Vec<ContractVersion> = ContractVersion::ALL.into_iter().rev().collect();
    let load = |name: &str, config: &str| -> Vec<WasmStrategy> {
        versions
            .iter()
            .map(|&v| {
                let plugin = rt.load_strategy(&build(v, name), config).unwrap();
                assert_eq!(plugin.contract(), v, "{name}");
                plugin
            })
            .collect()
    };
    let ppw = load("price-per-watt", "");
    let probes = load("hostile-strategy", "tag=1");

    println!("price-per-watt, median per call (ratio to native in the same run):");
    print!("{:>6} {:>10}", "bids", "native");
    for v in &versions {
        print!(" {:>22}", format!("wasm {}", v.as_str()));
    }
    for v in &versions {
        print!(" {:>11}", format!("fuel {}", v.as_str()));
    }
    println!();
    for size in SIZES {
        let (machine, bids) = book(size);
        let n = median(calls_for(size) * 10, || {
            native.rank(&machine, &bids).unwrap();
        });
        let ratio = |d: Duration| d.as_secs_f64() / n.as_secs_f64().max(1e-9);
        print!("{size:>6} {:>10}", us(n));
        for plugin in &ppw {
            let t = wasm(plugin, size);
            print!(" {:>22}", format!("{} ({:.0}×)", us(t), ratio(t)));
        }
        for plugin in &ppw {
            print!(" {:>11}", fuel_per_call(plugin, size));
        }
        println!();
    }

    println!(
        "\nprice-per-watt {}, median per call: a fresh instance each, or one instance shared \
         by the calls of a group (as the clearing groups a decision chunk's machines):",
        ContractVersion::NEWEST.as_str()
    );
    println!(
        "{:>6} {:>10} {:>22} {:>22} {:>26}",
        "bids", "native", "fresh instance", "in a group", "policy validator, group"
    );
    let newest = ppw.last().expect("the newest version is loaded");
    let policy = rt
        .load_validator(
            &guest("policy-validator"),
            "image-deny = registry.example/denied/*",
        )
        .unwrap();
    for size in [1, 10, 50, 100, 1000] {
        let (machine, bids) = book(size);
        let n = median(calls_for(size) * 10, || {
            native.rank(&machine, &bids).unwrap();
        });
        let ratio = |d: Duration| d.as_secs_f64() / n.as_secs_f64().max(1e-9);
        let fresh = wasm(newest, size);
        let grouped = gigaspot_plugin_runtime::in_group(|| wasm(newest, size));
        let validator = gigaspot_plugin_runtime::in_group(|| {
            median(calls_for(size), || {
                policy.validate(&machine, &bids).unwrap();
            })
        });
        println!(
            "{size:>6} {:>10} {:>22} {:>22} {:>26}",
            us(n),
            format!("{} ({:.0}×)", us(fresh), ratio(fresh)),
            format!("{} ({:.0}×)", us(grouped), ratio(grouped)),
            us(validator),
        );
    }

    println!("\ntransfer probe (tag=1: one bid in, one score out, no other work):");
    println!(
        "{:>10} {:>12} {:>12} {:>16} {:>14}",
        "contract", "10 bids", "1000 bids", "per bid", "fuel per bid"
    );
    for (version, plugin) in versions.iter().zip(&probes) {
        let small = wasm(plugin, 10);
        let large = wasm(plugin, 1000);
        let per_bid = large.saturating_sub(small).as_secs_f64() * 1e9 / 990.0;
        let fuel = (fuel_per_call(plugin, 1000) - fuel_per_call(plugin, 10)) / 990;
        println!(
            "{:>10} {:>12} {:>12} {:>13.1} ns {fuel:>14}",
            version.as_str(),
            us(small),
            us(large),
            per_bid
        );
    }
    let newest = probes.last().expect("the newest version is loaded");
    let (small, large) =
        gigaspot_plugin_runtime::in_group(|| (wasm(newest, 10), wasm(newest, 1000)));
    println!(
        "{:>10} {:>12} {:>12} {:>13.1} ns {:>14}",
        format!("{} grouped", ContractVersion::NEWEST.as_str()),
        us(small),
        us(large),
        large.saturating_sub(small).as_secs_f64() * 1e9 / 990.0,
        "",
    );
}
