//! The strategy lab's operator routes: shadow mode (install, read, promote, remove) and
//! backtests of a stored version over the live market's recorded history.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use gigaspot_market::account::Role;
use gigaspot_market::counterfactual::Units;
use gigaspot_market::verdict::PluginRef;
use gigaspot_market::{Strategy, Validator};
use gigaspot_store::ShadowDiff;
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::backtest::{Candidate, backtest};
use crate::backtest_jobs::{BacktestJob, Outcome, TIME_LIMIT};
use crate::path_id::PathId;

/// One interval of the shadow's record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowInterval {
    /// The interval.
    pub interval: u64,
    /// The shadow version that ran.
    pub strategy: PluginRef,
    /// Clearings it judged.
    pub machines: u64,
    /// Machines whose winner it would change.
    pub changed: u64,
    /// Machines that switched, live.
    pub switches_live: u64,
    /// Machines that would switch under the shadow.
    pub switches_shadow: u64,
    /// Hosts' payout, live (CLORE).
    #[schema(value_type = f64)]
    pub gross_live: Units,
    /// Hosts' payout under the shadow (CLORE).
    #[schema(value_type = f64)]
    pub gross_shadow: Units,
    /// Shadow minus live payout (CLORE).
    #[schema(value_type = f64)]
    pub revenue_delta: Units,
    /// Payout net of energy, live (CLORE).
    #[schema(value_type = f64)]
    pub net_live: Units,
    /// Payout net of energy under the shadow (CLORE).
    #[schema(value_type = f64)]
    pub net_shadow: Units,
    /// The shadow's faults.
    pub faults: u64,
    /// What the shadow's run cost, microseconds.
    pub micros: u64,
    /// Machines whose winner differs: machine, live bid, shadow bid.
    pub winners: Vec<(u64, Option<u64>, Option<u64>)>,
}

impl From<ShadowDiff> for ShadowInterval {
    fn from(d: ShadowDiff) -> Self {
        ShadowInterval {
            interval: d.interval,
            strategy: d.strategy,
            machines: d.machines,
            changed: d.changed,
            switches_live: d.switches_live,
            switches_shadow: d.switches_shadow,
            gross_live: Units(d.gross_live),
            gross_shadow: Units(d.gross_shadow),
            revenue_delta: Units(d.gross_shadow - d.gross_live),
            net_live: Units(d.net_live),
            net_shadow: Units(d.net_shadow),
            faults: d.faults,
            micros: d.micros,
            winners: d.winners,
        }
    }
}

/// `GET /api/v1/plugins/shadow`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowView {
    /// The version id run in shadow, if any.
    pub shadow: Option<String>,
    /// The active strategy it is compared with.
    pub active: PluginRef,
    /// Its record, oldest first.
    pub intervals: Vec<ShadowInterval>,
}

async fn shadow_view(state: &AppState, limit: usize) -> Result<ShadowView, ApiError> {
    let now = state.now();
    let (shadow, diffs) = state
        .store(move |s| {
            let current = s.interval_clock()?.interval_at(now);
            Ok((
                s.shadow_strategy()?,
                s.shadow_diffs(current.saturating_sub(limit as u64), current)?,
            ))
        })
        .await?;
    Ok(ShadowView {
        shadow,
        active: state.registry.active_strategy(),
        intervals: diffs.into_iter().map(ShadowInterval::from).collect(),
    })
}

/// `POST /api/v1/plugins/{digest}/shadow` (operator): the stored strategy version runs in
/// shadow from the next boundary: beside the active one on the same inputs under the same
/// limits, its picks recorded per interval and never acted on.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/{digest}/shadow",
    tag = "plugins",
    params(("digest" = String, Path, description = "The version id of a stored strategy")),
    responses((status = 200, description = "The version runs in shadow", body = ShadowView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn set_shadow(
    State(state): State<AppState>,
    caller: Caller,
    Path(digest): Path<String>,
) -> Result<Json<ShadowView>, ApiError> {
    caller.require(Role::Operator, "run plugins in shadow")?;
    let versions = state.versions.clone();
    let wanted = digest.clone();
    crate::deadline::work_started();
    state
        .store(move |s| {
            versions
                .strategy(&wanted)
                .map_err(|e| gigaspot_store::StoreError::Invalid {
                    field: "digest",
                    reason: e.to_string(),
                })?;
            s.set_shadow_strategy(Some(&wanted))
        })
        .await?;
    tracing::info!(%digest, "strategy runs in shadow");
    Ok(Json(shadow_view(&state, 60).await?))
}

/// `GET /api/v1/plugins/shadow?limit=N` (operator): the shadow version and how its picks
/// differed from the live ones over the last `limit` intervals (default 60).
#[utoipa::path(
    get,
    path = "/api/v1/plugins/shadow",
    tag = "plugins",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10080, description = "Intervals (default 60)")),
    responses((status = 200, description = "Shadow against live, per interval", body = ShadowView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn get_shadow(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ShadowView>, ApiError> {
    caller.require(Role::Operator, "read the shadow's record")?;
    let limit = crate::query::limit(&query, 60, 10_080)?;
    Ok(Json(shadow_view(&state, limit).await?))
}

/// `DELETE /api/v1/plugins/shadow` (operator): no strategy runs in shadow any more (its
/// record is kept).
#[utoipa::path(
    delete,
    path = "/api/v1/plugins/shadow",
    tag = "plugins",
    responses((status = 200, description = "No shadow", body = ShadowView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn remove_shadow(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ShadowView>, ApiError> {
    caller.require(Role::Operator, "remove the shadow")?;
    state.store(|s| s.set_shadow_strategy(None)).await?;
    Ok(Json(shadow_view(&state, 60).await?))
}

/// `POST /api/v1/plugins/shadow/promote` (operator): the shadow version becomes the active
/// strategy in one call (the active one is kept as the previous, for roll-back) and no
/// longer runs in shadow.
#[utoipa::path(
    post,
    path = "/api/v1/plugins/shadow/promote",
    tag = "plugins",
    responses((status = 200, description = "The shadow is the active strategy from the next boundary", body = crate::plugin_wire::ActivePluginsView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn promote_shadow(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<crate::plugin_wire::ActivePluginsView>, ApiError> {
    caller.require(Role::Operator, "promote the shadow")?;
    let Some(digest) = state.store(|s| s.shadow_strategy()).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            None,
            "no strategy runs in shadow",
        ));
    };
    let active =
        crate::api_operator::activate(State(state.clone()), caller, Path(digest.clone())).await?;
    state.store(|s| s.set_shadow_strategy(None)).await?;
    tracing::info!(%digest, "shadow promoted to the active strategy");
    Ok(active)
}

/// `POST /api/v1/backtests` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBacktest {
    /// The version id of a stored strategy (upload it with `POST /api/v1/plugins`).
    pub strategy: String,
    /// Version ids of stored validators, in running order; absent: each clearing's
    /// recorded validators.
    pub validators: Option<Vec<String>>,
    /// From this unix second on (default: the oldest recorded clearing).
    pub from: Option<u64>,
    /// Up to this unix second (default: the newest).
    pub to: Option<u64>,
}

/// `POST /api/v1/backtests` (operator): runs a stored strategy over the live market's
/// recorded history in the background — one at a time (409 while one runs), at most five
/// minutes (it then stops with what it has) — and answers at once with the job to poll.
#[utoipa::path(
    post,
    path = "/api/v1/backtests",
    tag = "plugins",
    request_body = NewBacktest,
    responses((status = 202, description = "The backtest runs; poll it", body = BacktestJob), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn start_backtest(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewBacktest>,
) -> Result<(StatusCode, Json<BacktestJob>), ApiError> {
    caller.require(Role::Operator, "run backtests")?;
    let bad = |field: &'static str, reason: String| {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), reason)
    };
    let versions = state.versions.clone();
    crate::deadline::work_started();
    let strategy: Arc<dyn Strategy> = versions
        .strategy(&request.strategy)
        .map_err(|e| bad("strategy", e.to_string()))?;
    let validators = match &request.validators {
        None => None,
        Some(ids) => Some(
            ids.iter()
                .map(|id| versions.validator(id))
                .collect::<Result<Vec<Arc<dyn Validator>>, _>>()
                .map_err(|e| bad("validators", e.to_string()))?,
        ),
    };
    let (first, last) = recorded_range(&state, request.from, request.to).await?;
    let id = start_job(&state, "backtest", first, last)?;
    let worker = state.clone();
    let candidate = Candidate {
        strategy,
        validators,
    };
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + TIME_LIMIT;
        let outcome = backtest(
            &*worker.store,
            &worker.versions,
            &candidate,
            (first, last),
            Some(deadline),
            |done, _| worker.backtests.progress(id, done),
        )
        .map(|r| Outcome::Backtest(Box::new(r)))
        .map_err(|e| e.to_string());
        worker.backtests.finish(id, outcome);
    });
    accepted(&state, id)
}

/// The recorded intervals between the unix seconds `from` and `to` (each default: the
/// oldest and newest recorded).
async fn recorded_range(
    state: &AppState,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<(u64, u64), ApiError> {
    let range = state
        .store(move |s| {
            let clock = s.interval_clock()?;
            Ok(s.recorded_intervals()?.map(|(oldest, newest)| {
                (
                    from.map_or(oldest, |t| clock.interval_at(t).max(oldest)),
                    to.map_or(newest, |t| clock.interval_at(t).min(newest)),
                )
            }))
        })
        .await?;
    range.filter(|(f, l)| f <= l).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("from"),
            "no recorded clearings in the range asked for",
        )
    })
}

/// Takes the one job slot for a job of `kind` over `first..=last`, or 409.
fn start_job(state: &AppState, kind: &str, first: u64, last: u64) -> Result<u64, ApiError> {
    state
        .backtests
        .start(kind, last - first + 1, state.now())
        .map_err(|running| {
            ApiError::new(
                StatusCode::CONFLICT,
                None,
                format!("job {running} is still running; one backtest or replay runs at a time"),
            )
        })
}

/// 202 with the job just started.
fn accepted(state: &AppState, id: u64) -> Result<(StatusCode, Json<BacktestJob>), ApiError> {
    let job = state.backtests.get(id).ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "the job vanished")
    })?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// `POST /api/v1/replays` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReplay {
    /// From this unix second on (default: the oldest recorded clearing).
    pub from: Option<u64>,
    /// Up to this unix second (default: the newest).
    pub to: Option<u64>,
}

/// `POST /api/v1/replays` (operator): `gigaspot replay` on the live market — re-runs the
/// recorded plugin versions on the recorded inputs and checks every decision bit for bit —
/// in the background, sharing the backtests' one slot (409 while a job runs) and time
/// limit; poll `GET /api/v1/backtests/{id}` (its `replay` holds the report).
#[utoipa::path(
    post,
    path = "/api/v1/replays",
    tag = "plugins",
    request_body = NewReplay,
    responses((status = 202, description = "The replay runs; poll it", body = BacktestJob), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn start_replay(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<NewReplay>,
) -> Result<(StatusCode, Json<BacktestJob>), ApiError> {
    caller.require(Role::Operator, "run replays")?;
    let (first, last) = recorded_range(&state, request.from, request.to).await?;
    let id = start_job(&state, "replay", first, last)?;
    let worker = state.clone();
    crate::deadline::work_started();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + TIME_LIMIT;
        let outcome = crate::replay::replay(
            &*worker.store,
            &worker.versions,
            first,
            last,
            |interval, _| {
                worker.backtests.progress(id, interval - first + 1);
                std::time::Instant::now() < deadline
            },
        )
        .map(Outcome::Replay)
        .map_err(|e| e.to_string());
        worker.backtests.finish(id, outcome);
    });
    accepted(&state, id)
}

/// `GET /api/v1/backtests/{id}` (operator): a backtest's progress and, once done, its
/// report.
#[utoipa::path(
    get,
    path = "/api/v1/backtests/{id}",
    tag = "plugins",
    params(("id" = u64, Path, description = "The backtest's id")),
    responses((status = 200, description = "The backtest", body = BacktestJob), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn show_backtest(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<BacktestJob>, ApiError> {
    caller.require(Role::Operator, "read backtests")?;
    state
        .backtests
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, None, format!("no backtest {id}")))
}

/// `GET /api/v1/backtests` (operator): the backtests kept, newest first, without their
/// reports.
#[utoipa::path(
    get,
    path = "/api/v1/backtests",
    tag = "plugins",
    responses((status = 200, description = "The backtests", body = Vec<BacktestJob>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_backtests(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<BacktestJob>>, ApiError> {
    caller.require(Role::Operator, "read backtests")?;
    Ok(Json(state.backtests.list()))
}
