//! `gigaspot plugin bench`: per-call latency of a plugin against the native reference,
//! with a fresh instance per call and with the calls in one instance group (how the
//! clearing calls plugins: one instance per 64 machines), and the cost per bid.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{CandidateBid, MachineContext, PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{
    ArtifactCache, PluginKind, PluginLimits, PluginRuntime, WasmStrategy, WasmValidator, in_group,
};

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
    let compile = Instant::now();
    let kind = runtime.kind_of(&wasm)?;
    let compile = compile.elapsed();
    let load = Instant::now();
    let loaded = match kind {
        PluginKind::Strategy => Loaded::Strategy(runtime.load_strategy(&wasm, config)?),
        PluginKind::Validator => Loaded::Validator(runtime.load_validator(&wasm, config)?),
    };
    println!(
        "load: {:.1} MiB component, compiled in {} ms, linked and first instance \
         (configure, info) in {} ms",
        wasm.len() as f64 / f64::from(1 << 20),
        compile.as_millis(),
        load.elapsed().as_millis()
    );
    println!(
        "{:>6}  {:<34} {:>10} {:>10} {:>10} {:>12}",
        "bids", "implementation", "p50", "p99", "mean", "fuel/call"
    );
    match loaded {
        Loaded::Strategy(plugin) => {
            let name = format!("wasm {}", plugin.plugin_ref().name);
            let mut grouped = Vec::new();
            for size in SIZES {
                let (machine, bids) = input(size);
                let call = || plugin.rank(&machine, &bids).map(drop);
                let (times, fuel) = fueled(&plugin, || measure(iterations, call))?;
                report(size, &name, &times, Some(fuel));
                let times = in_group(|| measure(iterations, call))?;
                report(size, &format!("{name} (in a group)"), &times, None);
                grouped.push(median(&times));
                let native_times = measure(iterations, || native.rank(&machine, &bids).map(drop))?;
                report(size, "native price-per-watt", &native_times, None);
                println!(
                    "{size:>6}  {:<34} {:>10.0}×",
                    "in a group ÷ native (p50)",
                    median(&times).as_secs_f64() / median(&native_times).as_secs_f64().max(1e-9)
                );
            }
            per_bid(&grouped);
        }
        Loaded::Validator(plugin) => {
            let name = format!("wasm {}", plugin.plugin_ref().name);
            let mut grouped = Vec::new();
            for size in SIZES {
                let (machine, bids) = input(size);
                let call = || plugin.validate(&machine, &bids).map(drop);
                let (times, fuel) = fueled(&plugin, || measure(iterations, call))?;
                report(size, &name, &times, Some(fuel));
                let times = in_group(|| measure(iterations, call))?;
                report(size, &format!("{name} (in a group)"), &times, None);
                grouped.push(median(&times));
            }
            per_bid(&grouped);
        }
    }
    if let Some(peak) = peak_resident_mib() {
        println!("memory: peak resident set of this process {peak:.0} MiB");
    }
    Ok(())
}

/// A loaded plugin of either kind.
enum Loaded {
    Strategy(WasmStrategy),
    Validator(WasmValidator),
}

/// The process's peak resident set (`VmHWM`), where Linux reports it.
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs `measure` and returns its result with the fuel per call it consumed.
fn fueled<T>(plugin: &impl Usage, measure: impl FnOnce() -> Result<T>) -> Result<(T, u64)> {
    let (calls0, fuel0) = plugin.usage();
    let result = measure()?;
    let (calls1, fuel1) = plugin.usage();
    Ok((result, (fuel1 - fuel0) / (calls1 - calls0).max(1)))
}

/// Calls made and fuel consumed, of either kind of plugin.
trait Usage {
    fn usage(&self) -> (u64, u64);
}

impl Usage for WasmStrategy {
    fn usage(&self) -> (u64, u64) {
        WasmStrategy::usage(self)
    }
}

impl Usage for WasmValidator {
    fn usage(&self) -> (u64, u64) {
        WasmValidator::usage(self)
    }
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

/// The marginal cost of one bid in a group, from the smallest and largest sizes' medians.
fn per_bid(grouped: &[Duration]) {
    let (first, last) = (SIZES[0], SIZES[SIZES.len() - 1]);
    let (small, large) = (grouped[0], grouped[grouped.len() - 1]);
    let ns = large.saturating_sub(small).as_secs_f64() * 1e9 / (last - first) as f64;
    println!(
        "per bid in a group (p50 at {last} − p50 at {first}) ÷ {}: {ns:.1} ns",
        last - first
    );
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
        "{size:>6}  {name:<34} {:>10} {:>10} {:>10} {fuel:>12}",
        micros(pick(0.5)),
        micros(pick(0.99)),
        micros(mean)
    );
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
