//! Shadow mode: a stored strategy that runs beside the active one at every boundary, on
//! the same recorded inputs and under the same plugin limits, with nothing it does
//! reaching the market (its faults neither count against the live versions nor change a
//! decision). Right after each tick commits, the shadow judges the interval just cleared
//! again and the difference is recorded per interval (`Store::record_shadow_diff`): would
//! switch, revenue delta, winners that differ. It runs after the commit, so the tick's
//! own latency is unchanged; its cost is recorded with each interval (`micros`).

use std::time::Instant;

use gigaspot_store::{ShadowDiff, StoreError};

use crate::app::AppState;
use crate::backtest::{Candidate, backtest};

/// Runs the shadow strategy, if one is set, over `interval` and records the difference.
pub fn run(state: &AppState, interval: u64) -> Result<Option<ShadowDiff>, StoreError> {
    let Some(digest) = state.store.shadow_strategy()? else {
        return Ok(None);
    };
    let strategy = match state.versions.strategy(&digest) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%digest, "the shadow strategy cannot run: {e}");
            return Ok(None);
        }
    };
    let started = Instant::now();
    let candidate = Candidate {
        strategy,
        validators: None,
    };
    let report = backtest(
        &*state.store,
        &state.versions,
        &candidate,
        (interval, interval),
        None,
        |_, _| {},
    )?;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let Some(row) = report.intervals.into_iter().next() else {
        return Ok(None);
    };
    let diff = ShadowDiff {
        interval,
        strategy: candidate.strategy.plugin_ref().clone(),
        machines: row.machines,
        changed: row.changed,
        switches_live: row.switches_live,
        switches_shadow: row.switches_candidate,
        gross_live: row.revenue.live_gross.0,
        gross_shadow: row.revenue.candidate_gross.0,
        net_live: row.revenue.live_net.0,
        net_shadow: row.revenue.candidate_net.0,
        faults: row.faults,
        micros,
        winners: row.differing,
    };
    state.store.record_shadow_diff(&diff)?;
    state.metrics.shadow(micros);
    Ok(Some(diff))
}
