//! The agent's heartbeat: inventory and observed state in, the full desired state out.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use gigaspot_market::context::GpuOc;
use gigaspot_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::key_hash;

/// What an agent reports.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// NVML and Docker are usable.
    pub working: bool,
    /// The bid whose workload runs now, if any.
    pub running_bid: Option<u64>,
    /// The running bid's settings were applied and read back.
    #[serde(default)]
    pub applied: bool,
    /// Measured power per GPU, W.
    #[serde(default)]
    pub measured_power_w: Vec<u32>,
    /// Images present on the machine.
    #[serde(default)]
    pub cached_images: Vec<String>,
}

/// What the machine should run: level-triggered, complete every time.
#[derive(Debug, Deserialize, Serialize)]
pub struct DesiredState {
    /// The interval this applies to.
    pub interval: Option<u64>,
    /// The workload to run, `None` to run nothing.
    pub workload: Option<Workload>,
}

/// A workload the agent must run.
#[derive(Debug, Deserialize, Serialize)]
pub struct Workload {
    /// The bid.
    pub bid: u64,
    /// Container image.
    pub image: String,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// Per-GPU settings.
    pub oc: Vec<GpuOc>,
}

/// `POST /api/v1/agent/heartbeat` with `Authorization: Bearer <agent token>`: updates the
/// machine's live state, records the interval as served when the assigned bid runs with
/// its settings applied, and answers the desired state.
pub async fn heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(report): JsonBody<Heartbeat>,
) -> Result<Json<DesiredState>, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthenticated)?;
    let hash = key_hash(token.trim());
    let machine_id = state
        .store(move |s| s.machine_by_agent_token(&hash))
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    state
        .heartbeats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(machine_id, Instant::now());
    let interval_s = u64::from(state.config.billing_interval_s);
    let current = state.now() / interval_s;
    let desired = state
        .store(move |s| {
            let mut machine = s.machine(machine_id)?.ok_or(StoreError::NotFound {
                what: "machine",
                id: machine_id,
            })?;
            machine.live.online = true;
            machine.live.working = report.working;
            machine.live.measured_power_w = report.measured_power_w;
            machine.live.cached_images = report.cached_images;
            s.update_machine(&machine)?;
            let assignment = s.assignment(machine_id)?;
            if let Some(a) = &assignment
                && a.interval == current
                && let Some(w) = a.winner
                && report.running_bid == Some(w.bid)
                && report.applied
            {
                s.record_served(machine_id, a.interval, w.bid)?;
            }
            let workload = match assignment.as_ref().and_then(|a| a.winner) {
                Some(w) => s.bid(w.bid)?.map(|b| Workload {
                    bid: b.id,
                    image: b.image,
                    env: b.env,
                    oc: b.oc,
                }),
                None => None,
            };
            Ok(DesiredState {
                interval: assignment.map(|a| a.interval),
                workload,
            })
        })
        .await?;
    Ok(Json(desired))
}
