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
    /// Inventory: the GPUs as NVML reports them, in index order.
    pub gpus: Option<Vec<InventoryGpu>>,
}

/// One GPU of the agent's inventory.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryGpu {
    /// Model name.
    pub model: String,
    /// NVML uuid.
    pub uuid: String,
    /// Card minimum power limit, W.
    pub card_min_w: u32,
    /// Card maximum power limit, W.
    pub card_max_w: u32,
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
            if let Some(inventory) = &report.gpus {
                apply_inventory(&mut machine, inventory)?;
            }
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

/// Takes the agent's inventory as the truth about the cards: model, uuid and power-limit
/// constraints; the host's ceiling is kept within the card's new range.
fn apply_inventory(
    machine: &mut gigaspot_market::machine::Machine,
    inventory: &[InventoryGpu],
) -> Result<(), StoreError> {
    if inventory.len() != machine.gpus.len() {
        return Err(StoreError::Invalid {
            field: "gpus",
            reason: format!(
                "the agent reports {} GPUs, the machine is registered with {}; re-register it",
                inventory.len(),
                machine.gpus.len()
            ),
        });
    }
    for (i, (gpu, seen)) in machine.gpus.iter_mut().zip(inventory).enumerate() {
        if seen.card_min_w > seen.card_max_w || seen.card_max_w == 0 {
            return Err(StoreError::Invalid {
                field: "gpus",
                reason: format!(
                    "gpu {i}: card minimum {} W above maximum {} W",
                    seen.card_min_w, seen.card_max_w
                ),
            });
        }
        gpu.model.clone_from(&seen.model);
        gpu.uuid.clone_from(&seen.uuid);
        gpu.card_min_w = seen.card_min_w;
        gpu.card_max_w = seen.card_max_w;
        gpu.ceiling_w = gpu.ceiling_w.clamp(seen.card_min_w, seen.card_max_w);
    }
    Ok(())
}
