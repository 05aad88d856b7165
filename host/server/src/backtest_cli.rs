//! `gigaspot backtest`: a candidate strategy over a stopped market's recorded history
//! (`gigaspot_server::backtest`), as a table on the terminal (a progress bar on long
//! runs), JSON or CSV. Nothing is written to the market.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use gigaspot_market::{Strategy, Validator};
use gigaspot_plugin_runtime::PluginRuntime;
use gigaspot_server::backtest::{BacktestReport, Candidate, IntervalRow, backtest};

use crate::history_cli::{History, HistoryArgs};

/// How to print the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table per interval and the totals, per host and per client.
    Table,
    /// The whole report as JSON.
    Json,
    /// One CSV row per interval, then the total.
    Csv,
}

/// What to backtest.
pub struct BacktestArgs<'a> {
    /// The candidate strategy component.
    pub strategy: &'a Path,
    /// Its configuration string.
    pub strategy_config: &'a str,
    /// Candidate validators (none: each clearing's recorded validators).
    pub validators: &'a [PathBuf],
    /// Their configuration strings, in the same order (missing ones empty).
    pub validator_configs: &'a [String],
    /// How to print.
    pub format: Format,
    /// Write the output to this file instead of stdout.
    pub out: Option<&'a Path>,
}

/// Runs the backtest.
pub fn run(history: &HistoryArgs, args: &BacktestArgs<'_>) -> Result<()> {
    let History {
        store,
        shown,
        first,
        last,
        runtime,
        versions,
        ..
    } = history.open()?;
    let load = |path: &Path| {
        PluginRuntime::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let strategy: Arc<dyn Strategy> = Arc::new(
        runtime
            .load_strategy(&load(args.strategy)?, args.strategy_config)
            .with_context(|| format!("--strategy {}", args.strategy.display()))?,
    );
    let validators = if args.validators.is_empty() {
        None
    } else {
        let mut loaded: Vec<Arc<dyn Validator>> = Vec::new();
        for (i, path) in args.validators.iter().enumerate() {
            let config = args.validator_configs.get(i).map_or("", String::as_str);
            loaded.push(Arc::new(
                runtime
                    .load_validator(&load(path)?, config)
                    .with_context(|| format!("--validator {}", path.display()))?,
            ));
        }
        Some(loaded)
    };
    let candidate = Candidate {
        strategy,
        validators,
    };
    let bar = (args.format == Format::Table && last - first >= 50).then(|| {
        let bar = indicatif::ProgressBar::new(last - first + 1);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} intervals {pos}/{len} [{bar:40}] {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let report = backtest(
        &*store,
        &versions,
        &candidate,
        (first, last),
        None,
        |done, _| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        },
    )
    .context("cannot read the recorded clearings")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut out: Box<dyn Write> = match args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Csv => csv(&mut out, &report)?,
        Format::Table => table(&mut out, &report, &shown)?,
    }
    Ok(())
}

const CSV_HEADER: &str = "interval,start,machines,changed,switches_live,switches_candidate,\
live_gross,candidate_gross,live_net,candidate_net,faults";

/// Every interval's row with its number, then the total's, labelled `total`.
fn rows(report: &BacktestReport) -> impl Iterator<Item = (String, &IntervalRow)> {
    report
        .intervals
        .iter()
        .map(|r| (r.interval.to_string(), r))
        .chain([("total".to_string(), &report.total)])
}

fn csv(out: &mut dyn Write, report: &BacktestReport) -> Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for (interval, r) in rows(report) {
        writeln!(
            out,
            "{interval},{},{},{},{},{},{},{},{},{},{}",
            r.start,
            r.machines,
            r.changed,
            r.switches_live,
            r.switches_candidate,
            r.revenue.live_gross,
            r.revenue.candidate_gross,
            r.revenue.live_net,
            r.revenue.candidate_net,
            r.faults
        )?;
    }
    Ok(())
}

fn table(out: &mut dyn Write, report: &BacktestReport, shown: &str) -> Result<()> {
    let name = report
        .strategy
        .as_ref()
        .map_or("?".into(), |s| format!("{} {}", s.name, s.version));
    writeln!(
        out,
        "backtest of {name} on {shown}, intervals {} to {}",
        report.first, report.last
    )?;
    writeln!(
        out,
        "{:>10} {:>8} {:>7} {:>9} {:>16} {:>16} {:>16} {:>16} {:>6}",
        "interval",
        "machines",
        "changed",
        "switches",
        "gross live",
        "gross cand.",
        "net live",
        "net cand.",
        "faults"
    )?;
    for (interval, r) in rows(report) {
        writeln!(
            out,
            "{interval:>10} {:>8} {:>7} {:>4}→{:<4} {:>16} {:>16} {:>16} {:>16} {:>6}",
            r.machines,
            r.changed,
            r.switches_live,
            r.switches_candidate,
            r.revenue.live_gross.to_string(),
            r.revenue.candidate_gross.to_string(),
            r.revenue.live_net.to_string(),
            r.revenue.candidate_net.to_string(),
            r.faults
        )?;
    }
    writeln!(out, "\nper host (CLORE):")?;
    for h in &report.hosts {
        writeln!(
            out,
            "  host {:>6}: gross {} → {}, net {} → {}",
            h.host,
            h.revenue.live_gross,
            h.revenue.candidate_gross,
            h.revenue.live_net,
            h.revenue.candidate_net
        )?;
    }
    writeln!(out, "clients whose wins would change (machine-intervals):")?;
    if report.clients.is_empty() {
        writeln!(out, "  none")?;
    }
    for c in &report.clients {
        writeln!(
            out,
            "  client {:>6}: {} → {}",
            c.client, c.wins_live, c.wins_candidate
        )?;
    }
    if let Some(fuel) = report.fuel {
        writeln!(out, "candidate fuel: {fuel}")?;
    }
    Ok(())
}
