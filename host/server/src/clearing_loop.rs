//! The interval clock: at every billing boundary, mark silent agents offline and run the
//! interval engine.

use std::time::{Duration, Instant};

use gigaspot_store::{IntervalEngine, Store};

use crate::app::AppState;

/// Runs one boundary now: agents silent for two intervals are marked offline, then the
/// engine settles and clears; the boundary is counted in the metrics.
pub fn run_boundary(
    state: &AppState,
) -> Result<gigaspot_store::TickReport, gigaspot_store::StoreError> {
    let stale_after = Duration::from_secs(2 * u64::from(state.config.billing_interval_s));
    let last_heard: std::collections::HashMap<_, _> = state
        .pulses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(id, pulse)| (*id, pulse.at))
        .collect();
    for mut machine in state.store.machines()? {
        let fresh = last_heard
            .get(&machine.id)
            .is_some_and(|t| t.elapsed() < stale_after);
        if machine.live.online && !fresh {
            machine.live.online = false;
            state.store.update_machine(&machine)?;
        }
    }
    let started = Instant::now();
    let report = IntervalEngine::without_audit(state.store.as_ref(), state.registry.as_ref())
        .tick(state.now())?;
    state.metrics.tick(&report, started.elapsed());
    // Publish the snapshot at least once per interval.
    state.snapshots.current(&state.store, state.now())?;
    Ok(report)
}

/// Ticks at every interval boundary until the task is dropped.
pub async fn run(state: AppState) {
    let interval_s = u64::from(state.config.billing_interval_s);
    loop {
        let wait = interval_s - state.now() % interval_s;
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let started = Instant::now();
        let tick_state = state.clone();
        match tokio::task::spawn_blocking(move || run_boundary(&tick_state)).await {
            Ok(Ok(report)) => tracing::info!(
                ?report,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "interval cleared"
            ),
            Ok(Err(e)) => tracing::error!("clearing failed: {e}"),
            Err(e) => tracing::error!("clearing task failed: {e}"),
        }
    }
}
