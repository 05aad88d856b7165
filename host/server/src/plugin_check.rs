//! `gigaspot plugin check`: load, audit, describe and try a plugin.

use std::path::Path;

use anyhow::{Context, Result, bail};
use gigaspot_market::economics::{clore_per_day, price_per_watt};
use gigaspot_market::sample::SampleMarket;
use gigaspot_market::{Strategy, Validator};
use gigaspot_plugin_runtime::{
    ALLOWED_IMPORT_PACKAGES, ArtifactCache, PluginKind, PluginLimits, PluginRuntime,
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
    let kind = runtime.kind_of(&wasm)?;
    let mut sample = SampleMarket::new(1);
    let mut machine = sample.machine(1);
    let bids = sample.bids(&mut machine, bids);
    match kind {
        PluginKind::Strategy => {
            let plugin = runtime.load_strategy(&wasm, config)?;
            describe("strategy", plugin.plugin_ref(), plugin.info());
            let mut scores = plugin.rank(&machine, &bids)?;
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
            describe("validator", plugin.plugin_ref(), plugin.info());
            let rejections = plugin.validate(&machine, &bids)?;
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
    println!(
        "\nok: imports limited to {}",
        ALLOWED_IMPORT_PACKAGES.join(" ")
    );
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
        let result = match kind {
            PluginKind::Strategy => runtime
                .load_strategy(wasm, config)?
                .rank(&book.machine, &book.bids)
                .map(|_| ()),
            PluginKind::Validator => runtime
                .load_validator(wasm, config)?
                .validate(&book.machine, &book.bids)
                .map(|_| ()),
        };
        match result {
            Ok(()) => println!("  ok    {} ({} bids)", book.label, book.bids.len()),
            Err(fault) => {
                println!("  FAIL  {} ({} bids): {fault}", book.label, book.bids.len());
                let input = serde_json::json!({"machine": book.machine, "bids": book.bids});
                println!(
                    "first failing input:\n{}",
                    serde_json::to_string_pretty(&input).unwrap_or_default()
                );
                bail!("the plugin fails on {}: {fault}", book.label);
            }
        }
    }
    Ok(())
}

/// The edge-case books' seed: the same books on every run.
const EDGE_SEED: u64 = 20_261_203;

fn describe(world: &str, plugin: &gigaspot_market::PluginRef, info: &gigaspot_market::PluginInfo) {
    println!("world:    {world}");
    println!("name:     {} {}", plugin.name, plugin.version);
    println!("about:    {}", info.description);
    println!("digest:   {}", plugin.digest);
}
