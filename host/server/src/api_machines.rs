//! Machines: registration and settings (host), listing and live state (anyone).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gigaspot_market::account::Role;
use gigaspot_market::clearing::Decision;
use gigaspot_market::machine::{Gpu, HostChange, HostChangeError, MachineFacts};
use gigaspot_market::money::Amount;
use gigaspot_store::MachineSpec;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::{Caller, generate_key, key_hash};
use crate::path_id::PathId;
use crate::wire::{MachineUpdate, MachineView, NewMachine, NewMachineReply};

/// Default longest rental: 30 days.
const DEFAULT_MAX_RENTAL_S: u64 = 30 * 86_400;

/// `POST /api/v1/machines`: a host registers a machine and gets its agent token once.
#[utoipa::path(
    post,
    path = "/api/v1/machines",
    tag = "machines",
    request_body = crate::wire::NewMachine,
    responses((status = 201, description = "The machine and its agent token (shown once)", body = crate::wire::NewMachineReply), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewMachine>,
) -> Result<(StatusCode, Json<NewMachineReply>), ApiError> {
    caller.require(Role::Host, "register machines")?;
    let reserve_price = request.reserve_price.map_or(Amount::ZERO, |p| p.0);
    let explicit_ceilings = request.gpus.iter().any(|g| g.ceiling_w.is_some());
    let background = request.background_job.as_ref().map(|j| j.request());
    let mut spec = MachineSpec {
        host: caller.0.id,
        facts: MachineFacts {
            cpu: request.cpu,
            ram_gib: request.ram_gib,
            cuda: request.cuda,
            country: request.country,
            // Filled in from the agent's inventory.
            cores: 0,
            threads: 0,
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
        background: None,
        background_earnings: request.background_earnings.map_or(Amount::ZERO, |e| e.0),
        explicit_ceilings,
    };
    let token = generate_key();
    let hash = key_hash(&token);
    let (machine, params) = state
        .store(move |s| {
            // The background job is checked like a bid's settings, against the cards
            // and the operator's clock table.
            if let Some(job) = &background {
                spec.background = Some(job.admit(&spec.gpus, &s.gpu_table()?)?);
            }
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
#[utoipa::path(
    get,
    path = "/api/v1/machines",
    tag = "machines",
    responses((status = 200, description = "Every machine", body = Vec<crate::wire::MachineView>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<MachineView>>, ApiError> {
    let now = state.now();
    let views = state
        .store(move |s| {
            let params = s.params()?;
            s.machines()?
                .iter()
                .map(|m| {
                    let current = s.assignment(m.id)?.and_then(|a| a.winner).map(|w| w.bid);
                    let mut view = MachineView::new(m, &params, current);
                    view.reliability = s.reliability(m.id, now)?;
                    Ok(view)
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
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    params(("id" = u64, Path, description = "The machine's id")),
    responses((status = 200, description = "The machine", body = crate::wire::MachineView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn show(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<MachineView>, ApiError> {
    let now = state.now();
    let view = state
        .store(move |s| {
            let machine = s.machine(id)?.ok_or(gigaspot_store::StoreError::NotFound {
                what: "machine",
                id,
            })?;
            let current = s.assignment(id)?.and_then(|a| a.winner).map(|w| w.bid);
            let mut view = MachineView::new(&machine, &s.params()?, current);
            view.reliability = s.reliability(id, now)?;
            Ok(view)
        })
        .await?;
    Ok(Json(state.with_live_power(view)))
}

/// `PATCH /api/v1/machines/{id}`: the host changes its energy price, reserve price, power
/// ceilings (a ceiling may not exceed the card's maximum nor go below its minimum; `null`
/// makes them follow the background job), background job (`null` removes it) or its
/// declared earnings. Live bids above a lowered ceiling stay, ineligible with the reason.
#[utoipa::path(
    patch,
    path = "/api/v1/machines/{id}",
    tag = "machines",
    request_body = crate::wire::MachineUpdate, params(("id" = u64, Path, description = "The machine's id")),
    responses((status = 200, description = "The machine as changed", body = crate::wire::MachineView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(request): JsonBody<MachineUpdate>,
) -> Result<Json<MachineView>, ApiError> {
    let change = HostChange {
        energy_price_usd_per_kwh: request.energy_price,
        reserve_price: request.reserve_price.map(|p| p.0),
        ceilings_w: request.ceilings_w,
        background: request.background_job.map(|job| job.map(|j| j.request())),
        background_earnings: request.background_earnings.map(|e| e.0),
    };
    let host = caller.0.id;
    let view = state
        .store(move |s| {
            let table = s.gpu_table()?;
            // Read, check and change under the store's writer lock: a heartbeat arriving
            // meanwhile cannot undo the host's change.
            let machine = s.modify_machine(id, &mut |machine| {
                if machine.host != host {
                    return Err(gigaspot_store::StoreError::Forbidden {
                        account: host,
                        action: "change another host's machine",
                    });
                }
                change.apply(machine, &table).map_err(|e| match e {
                    HostChangeError::Invalid { field, reason } => {
                        gigaspot_store::StoreError::Invalid { field, reason }
                    }
                    HostChangeError::Background(refusal) => refusal.into(),
                })
            })?;
            let current = s.assignment(id)?.and_then(|a| a.winner).map(|w| w.bid);
            Ok(MachineView::new(&machine, &s.params()?, current))
        })
        .await?;
    Ok(Json(state.with_live_power(view)))
}

/// `GET /api/v1/machines/{id}/decision`: the latest decision record: why each bid won or
/// lost this interval.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}/decision",
    tag = "machines",
    params(("id" = u64, Path, description = "The machine's id")),
    responses((status = 200, description = "The machine's latest clearing decision", body = gigaspot_market::clearing::Decision), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn latest_decision(
    State(state): State<AppState>,
    _caller: Caller,
    PathId(id): PathId,
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
