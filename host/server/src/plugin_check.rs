//! `gigaspot plugin check`: load, audit, describe and try a plugin.

use std::path::Path;

use anyhow::{Context, Result, bail};
use gigaspot_market::PluginFault;
use gigaspot_market::economics::{clore_per_day, price_per_watt};
use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{Strategy, Validator};
use gigaspot_plugin_runtime::{
    ArtifactCache, ContractVersion, FaultDetail, PluginKind, PluginLimits, PluginRuntime, rule_for,
};

/// Checks the plugin in `file` configured with `config` on a sample of `bids` bids.
pub fn run(file: &Path, config: &str, bids: usize) -> Result<()> {
    let wasm = PluginRuntime::read(file)?;
    let runtime = PluginRuntime::new(PluginLimits::default(), ArtifactCache::in_memory())?;
    let imports = runtime
        .imports(&wasm)
        .with_context(|| format!("{} is not a loadable component", file.display()))?;
    println!("file:     {} ({} bytes)", file.display(), wasm.len());
    println!(
        "imports:  {}",
        if imports.is_empty() {
            "none".into()
        } else {
            imports.join(", ")
        }
    );
    for import in &imports {
        let answer =
            rule_for(import).map_or("REFUSED at load: not a sandbox interface", |r| r.answer);
        println!("  {import:<40} {answer}");
    }
    let kind = runtime.kind_of(&wasm)?;
    let mut sample = SampleMarket::new(1);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, bids);
    match kind {
        PluginKind::Strategy => {
            let plugin = runtime.load_strategy(&wasm, config)?;
            describe(
                "strategy",
                plugin.plugin_ref(),
                plugin.info(),
                plugin.contract(),
            );
            let ranked = plugin.rank(&machine, &bids);
            let mut scores = explained(ranked, "the sample book", plugin.last_fault())?;
            scores.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.bid_id.cmp(&b.bid_id)));
            println!(
                "\nsample: machine with {} GPU(s), {} bids",
                machine.gpus.len(),
                bids.len()
            );
            println!(
                "{:>6} {:>14} {:>8} {:>12} {:>14}",
                "bid", "CLORE/day", "W", "CLORE/day/W", "score"
            );
            for s in &scores {
                let Some(bid) = bids.iter().find(|b| b.id == s.bid_id) else {
                    bail!("plugin scored unknown bid {}", s.bid_id);
                };
                println!(
                    "{:>6} {:>14.4} {:>8} {:>12.6} {:>14.6}",
                    bid.id,
                    clore_per_day(bid.price_per_day),
                    bid.total_power_limit_w,
                    price_per_watt(bid.price_per_day, bid.total_power_limit_w),
                    s.score
                );
            }
            match scores.first().filter(|s| s.score > 0.0) {
                Some(best) => println!("winner: bid {}", best.bid_id),
                None => println!("winner: none (no acceptable bid; the machine would idle)"),
            }
            println!("fuel:   {} units", plugin.usage().1);
        }
        PluginKind::Validator => {
            let plugin = runtime.load_validator(&wasm, config)?;
            describe(
                "validator",
                plugin.plugin_ref(),
                plugin.info(),
                plugin.contract(),
            );
            let validated = plugin.validate(&machine, &bids);
            let rejections = explained(validated, "the sample book", plugin.last_fault())?;
            println!(
                "\nsample: {} bids, {} rejected",
                bids.len(),
                rejections.len()
            );
            for r in &rejections {
                println!("  bid {:>4}: {} — {}", r.bid_id, r.code, r.message);
            }
            println!("fuel:   {} units", plugin.usage().1);
        }
    }
    edge_cases(&runtime, &wasm, config, kind)?;
    println!("\nok: every import answered without capabilities (see the list above)");
    Ok(())
}

/// Runs the plugin over the edge-case books; the first one it fails on (a trap, a panic,
/// an exceeded limit, an answer that breaks the contract) is printed whole and the check
/// fails.
fn edge_cases(runtime: &PluginRuntime, wasm: &[u8], config: &str, kind: PluginKind) -> Result<()> {
    let books = crate::plugin_edge_cases::books(EDGE_SEED);
    println!("\nedge cases (seed {EDGE_SEED}):");
    for book in &books {
        // A fresh instance per book: one failure does not hide the next.
        let (result, detail) = match kind {
            PluginKind::Strategy => {
                let plugin = runtime.load_strategy(wasm, config)?;
                let result = plugin.rank(&book.machine, &book.bids).map(|_| ());
                (result, plugin.last_fault())
            }
            PluginKind::Validator => {
                let plugin = runtime.load_validator(wasm, config)?;
                let result = plugin.validate(&book.machine, &book.bids).map(|_| ());
                (result, plugin.last_fault())
            }
        };
        match result {
            Ok(()) => println!("  ok    {} ({} bids)", book.label, book.bids.len()),
            Err(fault) => {
                println!("  FAIL  {} ({} bids)", book.label, book.bids.len());
                let input = serde_json::json!({"machine": book.machine, "bids": book.bids});
                println!(
                    "first failing input:\n{}",
                    serde_json::to_string_pretty(&input).unwrap_or_default()
                );
                explained(Err(fault), book.label, detail)?;
            }
        }
    }
    Ok(())
}

/// Passes `result` on; a fault is explained first (the guest's output during the call and
/// the wasm backtrace, each printed once) and then fails the check with its one-line cause.
fn explained<T>(
    result: Result<T, PluginFault>,
    input: &str,
    detail: Option<FaultDetail>,
) -> Result<T> {
    let fault = match result {
        Ok(value) => return Ok(value),
        Err(fault) => fault,
    };
    // A contract breach is found by the host after the call: no output or backtrace of it.
    if let Some(detail) = detail.filter(|d| d.fault == fault) {
        // The guest's own hint to set RUST_BACKTRACE does not apply: plugins get no
        // environment, and the wasm backtrace below is the backtrace.
        let output: Vec<&str> = detail
            .output
            .trim()
            .lines()
            .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .collect();
        if !output.is_empty() {
            println!("\nguest output (stdout and stderr) during the failing call:");
            for line in output {
                println!("  | {line}");
            }
        }
        if let Some(backtrace) = &detail.backtrace {
            let frames = backtrace
                .trim_end()
                .trim_start_matches("error while executing at wasm backtrace:")
                .trim_start_matches('\n');
            println!("\nwasm backtrace:\n{frames}");
        }
    }
    bail!("the plugin fails on {input}: {fault}")
}

/// The edge-case books' seed: the same books on every run.
const EDGE_SEED: u64 = 20_261_203;

fn describe(
    world: &str,
    plugin: &gigaspot_market::PluginRef,
    info: &gigaspot_market::PluginInfo,
    contract: ContractVersion,
) {
    println!("world:    {world}");
    if contract == ContractVersion::NEWEST {
        println!("contract: {contract}");
    } else {
        println!(
            "contract: {contract} (still loads and runs; rebuild with the SDK for {})",
            ContractVersion::NEWEST
        );
    }
    println!("name:     {} {}", plugin.name, plugin.version);
    println!("about:    {}", info.description);
    println!("digest:   {}", plugin.digest);
}
