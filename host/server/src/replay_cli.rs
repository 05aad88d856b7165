//! `gigaspot replay`: re-runs the recorded plugin versions on a stopped market's
//! recorded inputs and checks every decision bit for bit ([`crate::replay`]).

use anyhow::{Context, Result};
use gigaspot_server::replay::{ReplayReport, replay};

use crate::history_cli::{HistoryArgs, rfc3339};

/// Runs the replay; `Ok(false)` when a decision differs or cannot be replayed.
pub fn run(args: &HistoryArgs, json: bool) -> Result<bool> {
    let h = args.open()?;
    let (first, total) = (h.first, h.last - h.first + 1);
    let report = replay(
        &*h.store,
        &h.versions,
        h.first,
        h.last,
        |interval, so_far| {
            if !json && total >= 100 && (interval - first) % (total / 20).max(1) == 0 {
                eprintln!(
                    "  … interval {interval} ({}/{total}), {} clearings re-run",
                    interval - first + 1,
                    so_far.replayed
                );
            }
            true
        },
    )
    .context("cannot read the recorded clearings")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, &h.shown, &h.clock);
    }
    Ok(report.differences.is_empty())
}

fn print(
    report: &ReplayReport,
    shown: &str,
    clock: &gigaspot_market::interval_clock::IntervalClock,
) {
    println!(
        "replay of {shown}: intervals {} to {} ({} to {})",
        report.first,
        report.last,
        rfc3339(clock.start_of(report.first)),
        rfc3339(clock.start_of(report.last))
    );
    for d in &report.differences {
        println!(
            "DIFFERS interval {} machine {}: {}",
            d.interval, d.machine, d.what
        );
    }
    println!(
        "intervals: {}   clearings re-run: {}   without plugin calls: {}   not recorded: {}",
        report.intervals, report.replayed, report.without_plugins, report.unrecorded
    );
    if report.differences.is_empty() {
        println!(
            "every decision replayed bit for bit: input digests, plugin versions, scores, rejections and winners"
        );
    } else {
        println!("{} difference(s)", report.differences.len());
    }
}
