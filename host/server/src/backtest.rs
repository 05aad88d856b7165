//! Backtests: a candidate strategy (and optionally validators) over the market's recorded
//! history. Each recorded clearing is judged again on its recorded input — the same
//! machine, bids, running bid and reliability the live plugins saw — and compared with
//! what the market decided: machines whose winner would change, switches, host revenue
//! (gross and net of energy) per host and in total, clients who would win or lose, and
//! the candidate's faults and fuel. Each interval is judged on its own recorded input:
//! what the candidate picks does not feed into the next interval (the bids that were
//! placed answered the live outcomes). Nothing is written to the market.
//!
//! Revenue counts each winning interval as served whole at the winner's price: the host's
//! payout after the operator's fee (`gross`), and that minus the energy of the winner's
//! power limits at the host's electricity price (`net`).

use std::collections::BTreeMap;
use std::sync::Arc;

use gigaspot_market::account::AccountId;
use gigaspot_market::bid::BidId;
use gigaspot_market::counterfactual::{Compared, Revenue, compare};
use gigaspot_market::machine::MachineId;
use gigaspot_market::plugin_traits::FixedPlugins;
use gigaspot_market::verdict::PluginRef;
use gigaspot_market::{Strategy, Validator};
use gigaspot_store::{RecordedClearing, Store, StoreError};
use serde::Serialize;

use crate::plugin_versions::{PluginVersions, VersionError};

/// What a backtest runs.
#[derive(Clone)]
pub struct Candidate {
    /// The candidate strategy.
    pub strategy: Arc<dyn Strategy>,
    /// The candidate validators; `None` keeps each clearing's recorded validators.
    pub validators: Option<Vec<Arc<dyn Validator>>>,
}

/// One interval of a backtest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IntervalRow {
    /// The interval.
    pub interval: u64,
    /// Its start, unix seconds.
    pub start: u64,
    /// Clearings judged again.
    pub machines: u64,
    /// Machines whose winner would change.
    pub changed: u64,
    /// Machines that switched workloads, live.
    pub switches_live: u64,
    /// Machines that would switch, candidate.
    pub switches_candidate: u64,
    /// Revenue, live and candidate.
    pub revenue: Revenue,
    /// Candidate plugin faults.
    pub faults: u64,
    /// The machines whose winner would change (the first [`DIFFERING_SHOWN`]): machine,
    /// live winning bid, candidate winning bid.
    pub differing: Vec<(MachineId, Option<BidId>, Option<BidId>)>,
}

/// Machines with a changed winner listed per interval.
pub const DIFFERING_SHOWN: usize = 100;

/// One host's revenue over the backtest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostRow {
    /// The host.
    pub host: AccountId,
    /// Its revenue, live and candidate.
    pub revenue: Revenue,
}

/// A client whose wins would change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientRow {
    /// The client.
    pub client: AccountId,
    /// Machine-intervals it won live.
    pub wins_live: u64,
    /// Machine-intervals it would win under the candidate.
    pub wins_candidate: u64,
}

/// What a backtest found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BacktestReport {
    /// The first interval asked for.
    pub first: u64,
    /// The last interval asked for.
    pub last: u64,
    /// The candidate strategy.
    pub strategy: Option<PluginRef>,
    /// The candidate validators (`None`: each clearing's recorded ones).
    pub validators: Option<Vec<PluginRef>>,
    /// Per interval with recorded clearings, oldest first.
    pub intervals: Vec<IntervalRow>,
    /// Totals over every interval.
    pub total: IntervalRow,
    /// Per host.
    pub hosts: Vec<HostRow>,
    /// Clients who would win or lose machine-intervals.
    pub clients: Vec<ClientRow>,
    /// Fuel the candidate's calls consumed (WebAssembly plugins).
    pub fuel: Option<u64>,
    /// Why the backtest stopped before `last` (time limit), if it did.
    pub stopped: Option<String>,
}

/// Accumulates compared clearings into a report.
#[derive(Default)]
pub struct Tally {
    report: BacktestReport,
    hosts: BTreeMap<AccountId, Revenue>,
    clients: BTreeMap<AccountId, (u64, u64)>,
}

impl Tally {
    /// Adds one interval's compared clearings.
    pub fn add(&mut self, interval: u64, start: u64, compared: &[Compared]) {
        let mut row = IntervalRow {
            interval,
            start,
            ..IntervalRow::default()
        };
        for c in compared {
            row.machines += 1;
            row.changed += u64::from(c.changed);
            row.switches_live += u64::from(c.switched_live);
            row.switches_candidate += u64::from(c.switched_candidate);
            row.revenue.add(&c.revenue);
            row.faults += c.faults;
            if c.changed && row.differing.len() < DIFFERING_SHOWN {
                row.differing.push((c.machine, c.bids.0, c.bids.1));
            }
            self.hosts.entry(c.host).or_default().add(&c.revenue);
            if let Some(owner) = c.winners.0 {
                self.clients.entry(owner).or_default().0 += 1;
            }
            if let Some(owner) = c.winners.1 {
                self.clients.entry(owner).or_default().1 += 1;
            }
        }
        let total = &mut self.report.total;
        total.machines += row.machines;
        total.changed += row.changed;
        total.switches_live += row.switches_live;
        total.switches_candidate += row.switches_candidate;
        total.revenue.add(&row.revenue);
        total.faults += row.faults;
        self.report.intervals.push(row);
    }

    /// The report.
    pub fn finish(mut self, first: u64, last: u64) -> BacktestReport {
        self.report.first = first;
        self.report.last = last;
        self.report.total.interval = last;
        self.report.hosts = self
            .hosts
            .into_iter()
            .map(|(host, revenue)| HostRow { host, revenue })
            .collect();
        self.report.clients = self
            .clients
            .into_iter()
            .filter(|(_, (live, cand))| live != cand)
            .map(|(client, (wins_live, wins_candidate))| ClientRow {
                client,
                wins_live,
                wins_candidate,
            })
            .collect();
        self.report
    }
}

/// Runs `candidate` over the recorded clearings of the intervals `first..=last`, grouped
/// as the clearing grouped them; stops (saying so) once `deadline` has passed. `progress`
/// is told each interval done and how many there are.
pub fn backtest(
    store: &dyn Store,
    versions: &PluginVersions,
    candidate: &Candidate,
    (first, last): (u64, u64),
    deadline: Option<std::time::Instant>,
    mut progress: impl FnMut(u64, u64),
) -> Result<BacktestReport, StoreError> {
    let fee_bps = store.params()?.fee_bps;
    let clock = store.interval_clock()?;
    let fuel_before = candidate.strategy.fuel_consumed();
    let mut tally = Tally::default();
    let mut stopped = None;
    let mut done_through = last;
    for interval in first..=last {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            stopped = Some(format!(
                "the time limit was reached after interval {}",
                interval.saturating_sub(1)
            ));
            done_through = interval.saturating_sub(1);
            break;
        }
        let clearings = store.recorded_clearings(interval)?;
        progress(interval - first + 1, last - first + 1);
        if clearings.is_empty() {
            continue;
        }
        let mut compared = Vec::with_capacity(clearings.len());
        let mut failed: Option<VersionError> = None;
        for group in crate::replay::groups(&clearings) {
            gigaspot_plugin_runtime::in_group(|| {
                for clearing in group {
                    match compare_recorded(clearing, versions, candidate, fee_bps) {
                        Ok(Some(c)) => compared.push(c),
                        Ok(None) => {}
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
            });
            if let Some(e) = failed.take() {
                return Err(StoreError::Backend(e.to_string()));
            }
        }
        tally.add(interval, clock.start_of(interval), &compared);
    }
    let mut report = tally.finish(first, done_through);
    report.strategy = Some(candidate.strategy.plugin_ref().clone());
    report.validators = candidate
        .validators
        .as_ref()
        .map(|v| v.iter().map(|v| v.plugin_ref().clone()).collect());
    report.fuel = candidate
        .strategy
        .fuel_consumed()
        .map(|f| f.saturating_sub(fuel_before.unwrap_or(0)));
    report.stopped = stopped;
    Ok(report)
}

/// One recorded clearing compared under the candidate (`None`: no plugin was called).
fn compare_recorded(
    clearing: &RecordedClearing,
    versions: &PluginVersions,
    candidate: &Candidate,
    fee_bps: u32,
) -> Result<Option<Compared>, VersionError> {
    let Some((_, input)) = clearing.input.as_ref() else {
        return Ok(None);
    };
    let validators = match &candidate.validators {
        Some(v) => v.clone(),
        None => clearing
            .decision
            .validators
            .iter()
            .map(|v| versions.validator(&v.digest))
            .collect::<Result<_, _>>()?,
    };
    let plugins = FixedPlugins {
        validators,
        strategy: candidate.strategy.clone(),
    };
    Ok(Some(compare(&clearing.decision, input, &plugins, fee_bps)))
}
