//! `gigaspot plugin bench`: per-call latency of a plugin against the native reference.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{CandidateBid, MachineContext, PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{ArtifactCache, PluginKind, PluginLimits, PluginRuntime};

/// Input sizes measured, in bids per call.
const SIZES: [usize; 3] = [10, 100, 1000];

/// Measures the plugin in `file` with `iterations` calls per input size.
pub fn run(file: &Path, config: &str, iterations: usize) -> Result<()> {
    let wasm = PluginRuntime::read(file)?;
    let runtime = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory())?;
    let iterations = iterations.max(1);
    let native = PricePerWatt::new();
    println!(
        "{} — {iterations} calls per size, latency per call",
        file.display()
    );
    println!(
        "{:>6}  {:<28} {:>10} {:>10} {:>10} {:>12}",
        "bids", "implementation", "p50", "p99", "mean", "fuel/call"
    );
    match runtime.kind_of(&wasm)? {
        PluginKind::Strategy => {
            let plugin = runtime.load_strategy(&wasm, config)?;
            for size in SIZES {
                let (machine, bids) = input(size);
                let (calls0, fuel0) = plugin.usage();
                let wasm_times = measure(iterations, || plugin.rank(&machine, &bids).map(drop))?;
                let (calls1, fuel1) = plugin.usage();
                let fuel = (fuel1 - fuel0) / (calls1 - calls0).max(1);
                report(
                    size,
                    &format!("wasm {}", plugin.plugin_ref().name),
                    &wasm_times,
                    Some(fuel),
                );
                let native_times = measure(iterations, || native.rank(&machine, &bids).map(drop))?;
                report(size, "native price-per-watt", &native_times, None);
            }
        }
        PluginKind::Validator => {
            let plugin = runtime.load_validator(&wasm, config)?;
            for size in SIZES {
                let (machine, bids) = input(size);
                let (calls0, fuel0) = plugin.usage();
                let times = measure(iterations, || plugin.validate(&machine, &bids).map(drop))?;
                let (calls1, fuel1) = plugin.usage();
                let fuel = (fuel1 - fuel0) / (calls1 - calls0).max(1);
                report(
                    size,
                    &format!("wasm {}", plugin.plugin_ref().name),
                    &times,
                    Some(fuel),
                );
            }
        }
    }
    Ok(())
}

fn input(size: usize) -> (MachineContext, Vec<CandidateBid>) {
    let mut sample = SampleMarket::new(size as u64);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, size);
    (machine, bids)
}

/// Sorted latencies of `iterations` calls after a warm-up of a tenth as many.
fn measure<E: std::error::Error + Send + Sync + 'static>(
    iterations: usize,
    mut call: impl FnMut() -> Result<(), E>,
) -> Result<Vec<Duration>> {
    for _ in 0..iterations.div_ceil(10) {
        call()?;
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        call()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times)
}

fn report(size: usize, name: &str, sorted: &[Duration], fuel: Option<u64>) {
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let mean = sorted.iter().sum::<Duration>() / sorted.len() as u32;
    let fuel = fuel.map_or("-".into(), |f| f.to_string());
    println!(
        "{size:>6}  {name:<28} {:>10} {:>10} {:>10} {fuel:>12}",
        micros(pick(0.5)),
        micros(pick(0.99)),
        micros(mean)
    );
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
