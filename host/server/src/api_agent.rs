//! The agent's heartbeat: inventory and observed state in, the full desired state out.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::State;
use axum::http::request::Parts;
use gigaspot_market::agent_protocol::{DesiredState, Heartbeat, InventoryGpu, Workload};
use gigaspot_market::clearing::{Decision, Verdict};
use gigaspot_store::{Store, StoreError};
use std::time::Instant;

use crate::api_error::ApiError;
use crate::app::{AgentPulse, AppState, JsonBody};
use crate::auth::key_hash;
use crate::served_time::Confirmation;

/// The machine whose agent token the request carries (`Authorization: Bearer <token>`).
/// An extractor of the request's head: the credential is checked before the body is read
/// or parsed, so an unauthenticated request gets 401 whatever its body.
pub struct AgentMachine(pub gigaspot_market::machine::MachineId);

impl FromRequestParts<AppState> for AgentMachine {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthenticated)?;
        let hash = key_hash(token.trim());
        // Tokens are in the store's in-memory working set: looked up inline.
        state
            .store
            .machine_by_agent_token(&hash)?
            .map(AgentMachine)
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// `POST /api/v1/agent/heartbeat` with `Authorization: Bearer <agent token>`: updates the
/// machine's live state, records the interval as served when the assigned bid runs with
/// its settings applied, and answers the desired state.
#[utoipa::path(
    post,
    path = "/api/v1/agent/heartbeat",
    tag = "agent",
    request_body = gigaspot_market::agent_protocol::Heartbeat,
    responses((status = 200, description = "What the machine should run", body = gigaspot_market::agent_protocol::DesiredState), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    AgentMachine(machine_id): AgentMachine,
    JsonBody(report): JsonBody<Heartbeat>,
) -> Result<Json<DesiredState>, ApiError> {
    report.check_bounds().map_err(|(field, reason)| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            Some(field),
            reason,
        )
    })?;
    state
        .pulses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            machine_id,
            AgentPulse {
                at: Instant::now(),
                unix: state.now(),
                measured_power_w: report.measured_power_w.clone(),
            },
        );
    let now = state.now();
    let served = state.served.clone();
    let bound = u64::from(state.config.served_heartbeat_bound_s);
    let desired = state
        .store(move |s| {
            // The interval clock of the store: a length changed by the operator applies
            // here from the boundary the engine opened it at.
            let clock = s.interval_clock()?;
            let current = clock.interval_at(now);
            // Only the agent's part of the record changes, read and written under the
            // store's lock: a host's concurrent PATCH is never undone.
            let machine = s.modify_machine(machine_id, &mut |machine| {
                let before = machine.live.clone();
                if !before.online {
                    tracing::info!(machine = machine.id, "agent online");
                }
                machine.live.online = true;
                machine.live.working = report.working;
                machine.live.cached_images.clone_from(&report.cached_images);
                machine.live.running_bid = report.running_bid;
                machine
                    .live
                    .applied_settings
                    .clone_from(&report.applied_settings);
                machine.live.workload.clone_from(&report.workload);
                machine.live.last_error.clone_from(&report.last_error);
                machine.live.verification.clone_from(&report.verification);
                machine.live.background.clone_from(&report.background);
                // The agent's reading of its host is the truth about CPU, memory, CUDA.
                if let Some(host) = &report.host {
                    machine.facts.cpu.clone_from(&host.cpu);
                    machine.facts.cores = host.cores;
                    machine.facts.threads = host.threads;
                    machine.facts.ram_gib = host.ram_gib;
                    machine.facts.cuda.clone_from(&host.cuda);
                }
                if let Some(inventory) = &report.gpus {
                    apply_inventory(machine, inventory)?;
                }
                // Most heartbeats repeat the last one: write only what changed. The
                // measured power alone does not count (it is served from memory, see
                // AgentPulse); the record takes the latest reading when something else
                // changes.
                if machine.live != before {
                    machine
                        .live
                        .measured_power_w
                        .clone_from(&report.measured_power_w);
                }
                Ok(())
            })?;
            let assignment = s.assignment(machine_id)?;
            if let Some(a) = &assignment
                && a.interval == current
                && let Some(w) = a.winner
                && report.running_bid == Some(w.bid)
                && report.applied
            {
                s.record_served(machine_id, a.interval, w.bid)?;
                // Served time: the first confirmation of the interval is written now,
                // the rest in batches (see served_time).
                let confirmation = Confirmation {
                    machine: machine_id,
                    interval: a.interval,
                    start: clock.start_of(a.interval),
                    end: clock.start_of(a.interval + 1),
                    bid: w.bid,
                    at: now,
                    bound_s: bound,
                };
                if let Some(first) =
                    served.confirm(confirmation, || s.served_time(machine_id, a.interval))?
                {
                    s.record_served_times(&[(machine_id, a.interval, first)])?;
                }
            }
            // Why the assigned bid does not run, as the agent sees it: the bid's own fault
            // counts towards its suspension at the boundary, the host's never does.
            if let Some(a) = &assignment
                && a.interval == current
                && let Some(w) = a.winner
                && let Some(unserved) = &report.unserved
                && unserved.bid == w.bid
                && report.running_bid != Some(w.bid)
            {
                s.record_unserved(machine_id, a.interval, unserved)?;
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
            let prepull = match &assignment {
                Some(a) => match s.decision(machine_id, a.interval)? {
                    Some(decision) => prepull_images(s, &decision, &machine.live.cached_images)?,
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            let background = gigaspot_market::background::wanted(&machine, workload.as_ref());
            Ok(DesiredState {
                interval: assignment.map(|a| a.interval),
                workload,
                prepull,
                background,
            })
        })
        .await?;
    state.snapshots.set_prepull(machine_id, &desired.prepull);
    Ok(Json(desired))
}

/// How many losing bids' images an agent pulls ahead of a possible switch.
const PREPULL_DEPTH: usize = 3;

/// The images of the best-scored losing bids of `decision` that the machine lacks, best
/// first: the bids most likely to win next, so that a switch does not wait for a pull.
fn prepull_images(
    store: &dyn Store,
    decision: &Decision,
    cached: &[String],
) -> Result<Vec<String>, StoreError> {
    let winner = decision.winner.map(|w| w.bid);
    let mut losers: Vec<(f64, u64)> = decision
        .verdicts
        .iter()
        .filter(|v| Some(v.bid) != winner)
        .filter_map(|v| match &v.verdict {
            Verdict::Scored { score } if *score > 0.0 => Some((*score, v.bid)),
            _ => None,
        })
        .collect();
    losers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut images: Vec<String> = Vec::new();
    for (_, bid) in losers {
        if images.len() == PREPULL_DEPTH {
            break;
        }
        if let Some(b) = store.bid(bid)?
            && !cached.contains(&b.image)
            && !images.contains(&b.image)
        {
            images.push(b.image);
        }
    }
    Ok(images)
}

/// Takes the agent's inventory as the truth about the cards: model, uuid and power-limit
/// constraints; the ceilings are worked out again (kept within the card's new range, or
/// following the background job).
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
    }
    machine.follow_background();
    Ok(())
}
