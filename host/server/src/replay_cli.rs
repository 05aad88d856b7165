//! `gigaspot replay`: re-runs the recorded plugin versions on a stopped market's
//! recorded inputs and checks every decision bit for bit ([`crate::replay`]).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gigaspot_plugin_runtime::{ArtifactCache, PluginRuntime};

use gigaspot_server::config::Config;
use gigaspot_server::plugin_versions::PluginVersions;
use gigaspot_server::replay::{ReplayReport, replay};

/// What to replay and how to report it.
pub struct ReplayArgs<'a> {
    /// The sled folder of a stopped service.
    pub data_dir: Option<&'a Path>,
    /// Or the PostgreSQL database.
    pub database_url: Option<&'a str>,
    /// The service's configuration file (for its plugin limits).
    pub config: Option<&'a Path>,
    /// From this time on (unix seconds or RFC 3339); default: the oldest recorded.
    pub from: Option<&'a str>,
    /// Up to this time; default: the newest recorded.
    pub to: Option<&'a str>,
    /// Print the report as JSON.
    pub json: bool,
}

/// Runs the replay; `Ok(false)` when a decision differs or cannot be replayed.
pub fn run(args: &ReplayArgs<'_>) -> Result<bool> {
    let config = Config::load(args.config, |k| std::env::var(k).ok())?;
    let (store, shown) = crate::ledger_audit::open(args.data_dir, args.database_url)?;
    let Some((oldest, newest)) = store.recorded_intervals()? else {
        bail!("{shown} holds no recorded clearings to replay");
    };
    let clock = store.interval_clock()?;
    let first = match args.from {
        Some(t) => clock.interval_at(parse_time("--from", t)?).max(oldest),
        None => oldest,
    };
    let last = match args.to {
        Some(t) => clock.interval_at(parse_time("--to", t)?).min(newest),
        None => newest,
    };
    if first > last {
        bail!(
            "nothing recorded between --from and --to (recorded: {} to {})",
            humantime::format_rfc3339_seconds(system_time(clock.start_of(oldest))),
            humantime::format_rfc3339_seconds(system_time(clock.start_of(newest)))
        );
    }
    let runtime = Arc::new(PluginRuntime::new(
        config.plugins.limits(),
        ArtifactCache::in_memory(),
    )?);
    let store: Arc<dyn gigaspot_store::Store> = Arc::from(store);
    let versions = PluginVersions::new(runtime, store.clone());
    let total = last - first + 1;
    let report = replay(&*store, &versions, first, last, |interval, so_far| {
        if !args.json && total >= 100 && (interval - first) % (total / 20).max(1) == 0 {
            eprintln!(
                "  … interval {interval} ({}/{total}), {} clearings re-run",
                interval - first + 1,
                so_far.replayed
            );
        }
    })
    .context("cannot read the recorded clearings")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report, &shown, &clock);
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
        humantime::format_rfc3339_seconds(system_time(clock.start_of(report.first))),
        humantime::format_rfc3339_seconds(system_time(clock.start_of(report.last)))
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

/// Unix seconds or an RFC 3339 time.
pub fn parse_time(field: &str, text: &str) -> Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let at = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("{field}: {text:?} is neither unix seconds nor an RFC 3339 time")
    })?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{field}: {text:?} is before 1970"))?
        .as_secs())
}

fn system_time(unix: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix)
}
