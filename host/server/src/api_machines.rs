//! Machines: registration and settings (host), listing and live state (anyone).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gigaspot_market::account::Role;
use gigaspot_market::clearing::Decision;
use gigaspot_market::machine::{Gpu, MachineFacts};
use gigaspot_store::{MachineSpec, Store};

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::{Caller, generate_key, key_hash};
use crate::wire::{MachineUpdate, MachineView, NewMachine, NewMachineReply, clore};

/// Default longest rental: 30 days.
const DEFAULT_MAX_RENTAL_S: u64 = 30 * 86_400;

/// `POST /api/v1/machines`: a host registers a machine and gets its agent token once.
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewMachine>,
) -> Result<(StatusCode, Json<NewMachineReply>), ApiError> {
    caller.require(Role::Host, "register machines")?;
    let reserve_price = clore("reserve_price", request.reserve_price)?;
    let spec = MachineSpec {
        host: caller.0.id,
        facts: MachineFacts {
            cpu: request.cpu,
            ram_gib: request.ram_gib,
            cuda: request.cuda,
            country: request.country,
        },
        gpus: request
            .gpus
            .into_iter()
            .map(|g| Gpu {
                ceiling_w: g.ceiling_w.unwrap_or(g.card_max_w),
                model: g.model,
                uuid: g.uuid,
                card_min_w: g.card_min_w,
                card_max_w: g.card_max_w,
            })
            .collect(),
        energy_price_usd_per_kwh: request.energy_price,
        reserve_price,
        max_rental_length_s: request.max_rental_length.unwrap_or(DEFAULT_MAX_RENTAL_S),
    };
    let token = generate_key();
    let hash = key_hash(&token);
    let (machine, params) = state
        .store(move |s| {
            let machine = s.register_machine(spec)?;
            s.set_agent_token(machine.id, hash)?;
            Ok((machine, s.params()?))
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewMachineReply {
            machine: MachineView::new(&machine, &params, None),
            agent_token: token,
        }),
    ))
}

/// `GET /api/v1/machines`: every machine with its live state.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<MachineView>>, ApiError> {
    let views = state
        .store(|s| {
            let params = s.params()?;
            s.machines()?
                .iter()
                .map(|m| {
                    let current = s.assignment(m.id)?.and_then(|a| a.winner).map(|w| w.bid);
                    Ok(MachineView::new(m, &params, current))
                })
                .collect::<Result<Vec<_>, gigaspot_store::StoreError>>()
        })
        .await?;
    Ok(Json(
        views
            .into_iter()
            .map(|v| state.with_live_power(v))
            .collect(),
    ))
}

/// `GET /api/v1/machines/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<Json<MachineView>, ApiError> {
    let view = state
        .store(move |s| {
            let machine = s.machine(id)?.ok_or(gigaspot_store::StoreError::NotFound {
                what: "machine",
                id,
            })?;
            let current = s.assignment(id)?.and_then(|a| a.winner).map(|w| w.bid);
            Ok(MachineView::new(&machine, &s.params()?, current))
        })
        .await?;
    Ok(Json(state.with_live_power(view)))
}

/// `PATCH /api/v1/machines/{id}`: the host changes its energy price, reserve price or
/// power ceilings (a ceiling may not exceed the card's maximum nor go below its minimum).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<u64>,
    JsonBody(request): JsonBody<MachineUpdate>,
) -> Result<Json<MachineView>, ApiError> {
    let reserve = request
        .reserve_price
        .map(|p| clore("reserve_price", p))
        .transpose()?;
    if let Some(price) = request.energy_price
        && !(price.is_finite() && price >= 0.0)
    {
        return Err(ApiError::bad_field(
            "energy_price",
            "must be a finite number >= 0",
        ));
    }
    let host = caller.0.id;
    let view = state
        .store(move |s| {
            let mut machine = s.machine(id)?.ok_or(gigaspot_store::StoreError::NotFound {
                what: "machine",
                id,
            })?;
            if machine.host != host {
                return Err(gigaspot_store::StoreError::Forbidden {
                    account: host,
                    action: "change another host's machine",
                });
            }
            if let Some(price) = request.energy_price {
                machine.energy_price_usd_per_kwh = price;
            }
            if let Some(reserve) = reserve {
                machine.reserve_price = reserve;
            }
            if let Some(ceilings) = &request.ceilings_w {
                if ceilings.len() != machine.gpus.len() {
                    return Err(gigaspot_store::StoreError::Invalid {
                        field: "ceilings_w",
                        reason: format!(
                            "{} values for {} GPUs",
                            ceilings.len(),
                            machine.gpus.len()
                        ),
                    });
                }
                for (i, (gpu, ceiling)) in machine.gpus.iter_mut().zip(ceilings).enumerate() {
                    if !(gpu.card_min_w..=gpu.card_max_w).contains(ceiling) {
                        return Err(gigaspot_store::StoreError::Invalid {
                            field: "ceilings_w",
                            reason: format!(
                                "gpu {i}: {ceiling} W is outside the card's [{}, {}]",
                                gpu.card_min_w, gpu.card_max_w
                            ),
                        });
                    }
                    gpu.ceiling_w = *ceiling;
                }
            }
            s.update_machine(&machine)?;
            let current = s.assignment(id)?.and_then(|a| a.winner).map(|w| w.bid);
            Ok(MachineView::new(&machine, &s.params()?, current))
        })
        .await?;
    Ok(Json(state.with_live_power(view)))
}

/// `GET /api/v1/machines/{id}/decision`: the latest decision record: why each bid won or
/// lost this interval.
pub async fn latest_decision(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Decision>, ApiError> {
    let decision = state
        .store(move |s| {
            let interval = s.assignment(id)?.map(|a| a.interval).ok_or(
                gigaspot_store::StoreError::NotFound {
                    what: "decision for machine",
                    id,
                },
            )?;
            s.decision(id, interval)?
                .ok_or(gigaspot_store::StoreError::NotFound {
                    what: "decision for machine",
                    id,
                })
        })
        .await?;
    Ok(Json(decision))
}
