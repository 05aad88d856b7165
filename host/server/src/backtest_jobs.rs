//! Backtests and replays run through the API (`POST /api/v1/backtests`, `POST
//! /api/v1/replays`): one at a time, on the live market's database (read only), bounded in
//! time ([`TIME_LIMIT`]); their results are kept in memory for the life of the process
//! (the newest [`KEPT`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::backtest::BacktestReport;
use crate::replay::ReplayReport;

/// The longest a backtest runs; it then stops with what it has, saying so.
pub const TIME_LIMIT: Duration = Duration::from_secs(300);

/// Backtests whose results are kept.
pub const KEPT: usize = 16;

/// A backtest's or a replay's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BacktestJob {
    /// Its id.
    pub id: u64,
    /// `backtest` or `replay`.
    pub kind: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// Unix seconds when it started.
    pub started_at: u64,
    /// Intervals done so far.
    pub done: u64,
    /// Intervals to do.
    pub total: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// A backtest's report, once done (live and candidate per interval, totals, hosts,
    /// clients).
    #[schema(value_type = Option<Object>)]
    pub report: Option<BacktestReport>,
    /// A replay's report, once done (clearings re-run, every difference).
    #[schema(value_type = Option<Object>)]
    pub replay: Option<ReplayReport>,
}

/// What a finished job produced.
pub enum Outcome {
    /// A backtest's report.
    Backtest(Box<BacktestReport>),
    /// A replay's report.
    Replay(ReplayReport),
}

/// The backtests of this process.
#[derive(Default)]
pub struct BacktestJobs {
    jobs: Mutex<BTreeMap<u64, BacktestJob>>,
}

impl BacktestJobs {
    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, BacktestJob>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a job of `kind` over `total` intervals, unless one is running: its id.
    pub fn start(&self, kind: &str, total: u64, now: u64) -> Result<u64, u64> {
        let mut jobs = self.jobs();
        if let Some(running) = jobs.values().find(|j| j.status == "running") {
            return Err(running.id);
        }
        let id = jobs.keys().next_back().map_or(1, |last| last + 1);
        jobs.insert(
            id,
            BacktestJob {
                id,
                kind: kind.into(),
                status: "running".into(),
                started_at: now,
                done: 0,
                total,
                error: None,
                report: None,
                replay: None,
            },
        );
        while jobs.len() > KEPT {
            jobs.pop_first();
        }
        Ok(id)
    }

    /// Records progress.
    pub fn progress(&self, id: u64, done: u64) {
        if let Some(job) = self.jobs().get_mut(&id) {
            job.done = done;
        }
    }

    /// Records the outcome.
    pub fn finish(&self, id: u64, outcome: Result<Outcome, String>) {
        if let Some(job) = self.jobs().get_mut(&id) {
            match outcome {
                Ok(outcome) => {
                    job.status = "done".into();
                    job.done = job.total;
                    match outcome {
                        Outcome::Backtest(report) => job.report = Some(*report),
                        Outcome::Replay(report) => job.replay = Some(report),
                    }
                }
                Err(e) => {
                    job.status = "failed".into();
                    job.error = Some(e);
                }
            }
        }
    }

    /// A job by id.
    pub fn get(&self, id: u64) -> Option<BacktestJob> {
        self.jobs().get(&id).cloned()
    }

    /// Every kept job without its report, newest first.
    pub fn list(&self) -> Vec<BacktestJob> {
        self.jobs()
            .values()
            .rev()
            .map(|j| BacktestJob {
                report: None,
                replay: None,
                ..j.clone()
            })
            .collect()
    }
}
