//! The interval clock: at every billing boundary, mark silent agents offline and run the
//! interval engine.

use std::time::{Duration, Instant};

use gigaspot_store::IntervalEngine;

use crate::app::AppState;

/// Runs one boundary now: agents silent for two intervals are marked offline, then the
/// engine settles and clears; the boundary is counted in the metrics.
pub fn run_boundary(
    state: &AppState,
) -> Result<gigaspot_store::TickReport, gigaspot_store::StoreError> {
    // Every confirmation so far counts for the intervals being settled, whichever
    // replica clears them.
    flush_served_time(state)?;
    // Only the replica holding the clearer's lease clears (always this one on sled).
    if state
        .store
        .clearer_lease(&state.replica, lease_ttl(state))?
        .is_none()
    {
        tracing::debug!("another replica holds the clearer's lease: not clearing");
        return Ok(gigaspot_store::TickReport::default());
    }
    // Two intervals of the length in force (the store's clock, not the config file).
    let stale_after = Duration::from_secs(2 * state.store.interval_clock()?.length_s());
    // What other replicas heard (unix seconds), besides this one's own pulses.
    let heard_elsewhere = state.store.last_heard()?;
    let now_unix = state.now();
    let heard_recently = |machine: u64| {
        heard_elsewhere
            .get(&machine)
            .is_some_and(|at| now_unix.saturating_sub(*at) < stale_after.as_secs())
    };
    let last_heard: std::collections::HashMap<_, _> = state
        .pulses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, pulse)| (*id, pulse.at))
        .collect();
    for machine in state.store.machines()? {
        let fresh = last_heard
            .get(&machine.id)
            .is_some_and(|t| t.elapsed() < stale_after)
            || heard_recently(machine.id);
        if machine.live.online && !fresh {
            // Re-checked under the store's lock: a heartbeat that arrived since the read
            // above wins.
            state.store.modify_machine(machine.id, &mut |m| {
                let heard = state
                    .pulses
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&m.id)
                    .is_some_and(|p| p.at.elapsed() < stale_after)
                    || heard_recently(m.id);
                if !heard {
                    m.live.online = false;
                    tracing::info!(
                        machine = m.id,
                        silent_s = stale_after.as_secs(),
                        "agent offline: no heartbeat for two intervals"
                    );
                }
                Ok(())
            })?;
        }
    }
    // Standing orders place, move and re-price their bids before the clearing, so that
    // the interval clears on them; if they cannot even be read, the clearing goes on.
    if let Err(e) = crate::standing_orders::run(state, state.now()) {
        tracing::warn!("standing orders not run at this boundary: {e}");
    }
    let started = Instant::now();
    let report = IntervalEngine::without_audit(state.store.as_ref(), state.registry.as_ref())
        .suspend_after(state.config.suspend_after_failed_intervals)
        .tick(state.now())?;
    state.metrics.tick(&report, started.elapsed());
    // Quarantines happen during ticks: keep the persisted plugin state current.
    let plugins = crate::api_operator::plugin_state(&state.registry);
    if state.store.plugin_state()?.as_ref() != Some(&plugins) {
        state.store.set_plugin_state(&plugins)?;
    }
    // The shadow strategy, if any, judges the interval just cleared (after the commit:
    // the tick does not wait for it).
    if let Some(interval) = report.interval {
        crate::shadow::run(state, interval)?;
    }
    // Publish the snapshot at least once per interval.
    state.snapshots.current(&*state.store, state.now())?;
    compact_decisions(state)?;
    prune_served_marks(state)?;
    Ok(report)
}

/// Served marks removed per store call (a few milliseconds under the writer lock).
const PRUNE_BATCH: usize = 2_000;

/// Removes the served, served-time and unserved marks of settled intervals (settlement
/// has read them; an interval served for part of its length keeps its time for the
/// ledger), in batches, for at most a second per boundary.
pub fn prune_served_marks(state: &AppState) -> Result<(), gigaspot_store::StoreError> {
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < Duration::from_secs(1) {
        let removed = state.store.prune_served_marks(PRUNE_BATCH)?;
        total += removed;
        if removed == 0 {
            break;
        }
    }
    if total > 0 {
        tracing::debug!(marks = total, "served marks of settled intervals pruned");
    }
    Ok(())
}

/// Full decision records compacted per store call: one call holds the store's writer lock
/// for a few milliseconds.
const COMPACTION_BATCH: usize = 2_000;

/// Compacts the full decision records older than `decision_retention_s` (never the two
/// newest intervals), in batches, for at most a second per boundary: a backlog (a first
/// start with a shorter window) is worked off over the next boundaries.
pub fn compact_decisions(state: &AppState) -> Result<(), gigaspot_store::StoreError> {
    let retention = state.config.decision_retention_s;
    if retention == 0 {
        return Ok(());
    }
    let now = state.now();
    let clock = state.store.interval_clock()?;
    let before = clock
        .interval_at(now.saturating_sub(retention))
        .min(clock.interval_at(now).saturating_sub(1));
    let started = Instant::now();
    let mut total = gigaspot_store::Compaction::default();
    while started.elapsed() < Duration::from_secs(1) {
        let done = state.store.compact_decisions(before, COMPACTION_BATCH)?;
        total.records += done.records;
        total.bytes_before += done.bytes_before;
        total.bytes_after += done.bytes_after;
        if done.bytes_before == 0 {
            break;
        }
    }
    if total.records > 0 {
        tracing::info!(
            records = total.records,
            bytes_before = total.bytes_before,
            bytes_after = total.bytes_after,
            before_interval = before,
            "decision records compacted"
        );
    }
    Ok(())
}

/// How long the clearer's lease lasts (`lease_ttl_s`).
fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(u64::from(state.config.lease_ttl_s))
}

/// Writes the served time accumulated since the last write, and when this replica last
/// heard each agent (for the other replicas of a shared database).
pub fn flush_served_time(state: &AppState) -> Result<(), gigaspot_store::StoreError> {
    let dirty = state.served.take_dirty();
    if let Err(e) = state.store.record_served_times(&dirty) {
        state.served.restore_dirty(&dirty);
        return Err(e);
    }
    let heard: Vec<(u64, u64)> = state
        .pulses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, pulse)| (*id, pulse.unix))
        .collect();
    state.store.record_heard(&heard)
}

/// Writes the served time every few seconds until the task is dropped.
async fn flush_served_time_periodically(state: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(SERVED_TIME_FLUSH_S)).await;
        let flushing = state.clone();
        match tokio::task::spawn_blocking(move || flush_served_time(&flushing)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("writing served time failed: {e}"),
            Err(e) => tracing::error!("served-time task failed: {e}"),
        }
    }
}

/// Seconds between writes of the accumulated served time.
pub const SERVED_TIME_FLUSH_S: u64 = 5;

/// Ticks at every interval boundary, and writes the served time every few seconds, until
/// the task is dropped.
pub async fn run(state: AppState) {
    tokio::join!(
        clear_at_boundaries(state.clone()),
        keep_lease(state.clone()),
        flush_served_time_periodically(state)
    );
}

/// On a shared database: renews the clearer's lease every third of its length while this
/// replica holds it, and takes it when it is free or expired (its holder died or lost the
/// database), so that clearing resumes within `lease_ttl_s` of a leader's death.
async fn keep_lease(state: AppState) {
    if state.config.database_url.is_none() {
        return;
    }
    let mut held = None;
    loop {
        let asking = state.clone();
        let answer = tokio::task::spawn_blocking(move || {
            asking
                .store
                .clearer_lease(&asking.replica, lease_ttl(&asking))
        })
        .await;
        match answer {
            Ok(Ok(now)) => {
                if now != held {
                    match now {
                        Some(epoch) => tracing::info!(epoch, "this replica clears (lease taken)"),
                        None => tracing::info!("another replica clears"),
                    }
                }
                held = now;
            }
            Ok(Err(e)) => tracing::warn!("cannot renew the clearer's lease: {e}"),
            Err(e) => tracing::error!("lease task failed: {e}"),
        }
        tokio::time::sleep(lease_ttl(&state) / 3).await;
    }
}

/// Ticks at every interval boundary. The boundaries come from the store's interval clock,
/// read anew each time, so a length the operator changed takes effect at the next boundary
/// without a restart.
async fn clear_at_boundaries(state: AppState) {
    loop {
        let now = state.now();
        let next = match state.store.interval_clock() {
            Ok(clock) => clock.next_boundary(now),
            Err(e) => {
                tracing::error!("cannot read the interval clock: {e}");
                now + 1
            }
        };
        tokio::time::sleep(Duration::from_secs(next.saturating_sub(now).max(1))).await;
        let started = Instant::now();
        let tick_state = state.clone();
        // One span per boundary: everything the tick logs (quarantines, offline agents)
        // carries it.
        let span = tracing::info_span!("tick", boundary = next);
        let ticked = tokio::task::spawn_blocking(move || {
            let _in_tick = span.enter();
            tracing::info!("boundary reached, clearing");
            match run_boundary(&tick_state) {
                Ok(report) => tracing::info!(
                    ?report,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "interval cleared"
                ),
                Err(e) => tracing::error!("clearing failed: {e}"),
            }
        })
        .await;
        if let Err(e) = ticked {
            tracing::error!("clearing task failed: {e}");
        }
    }
}
