//! Bids: create (with `Idempotency-Key`), edit, cancel, list, show.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gigaspot_market::account::Role;
use gigaspot_market::bid::{Bid, BidChange, BidTerms, Lifetime, OcRequest};
use gigaspot_market::params::DEFAULT_BID_LIFETIME_S;
use gigaspot_store::{Store, StoreError};

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::path_id::PathId;
use crate::wire::{BidEdit, BidView, NewBid};

/// `POST /api/v1/bids`: admits and stores a bid. A repeated `Idempotency-Key` returns the
/// bid created the first time, with 200 instead of 201.
#[utoipa::path(
    post,
    path = "/api/v1/bids",
    tag = "bids",
    request_body = crate::wire::NewBid, params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a key returns the first result (200) instead of acting again")),
    responses((status = 201, description = "The bid, admitted", body = crate::wire::BidView), (status = 200, description = "The bid first created with this Idempotency-Key", body = crate::wire::BidView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(request): JsonBody<NewBid>,
) -> Result<(StatusCode, Json<BidView>), ApiError> {
    caller.require(Role::Client, "place bids")?;
    let key = crate::query::idempotency_key(&headers)?;
    let terms = BidTerms {
        machine: request.machine,
        price_per_day: request.price.0,
        image: request.image,
        env: request.env,
        oc: request.oc.into_iter().map(OcRequest::from).collect(),
        // Without an explicit lifetime: 7 days, clamped to the machine's maximum.
        lifetime: match request.lifetime_s {
            Some(s) => Lifetime::Explicit(s),
            None => Lifetime::Default(DEFAULT_BID_LIFETIME_S),
        },
    };
    let owner = caller.0.id;
    let at = state.now();
    // The bid joins the store's batched intake without holding a blocking thread; a
    // batch's leader runs on the blocking pool. From here on the deadline no longer
    // applies (see `crate::deadline`).
    crate::deadline::work_started();
    let runtime = tokio::runtime::Handle::current();
    let placed = state
        .store
        .clone()
        .place_bid_async(
            owner,
            terms,
            at,
            key,
            Box::new(move |turn| {
                runtime.spawn_blocking(turn);
            }),
        )
        .await?;
    // An idempotent repeat returns the bid created the first time.
    let status = if placed.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(BidView::new(&placed.bid, at))))
}

/// `GET /api/v1/bids`: the caller's bids.
#[utoipa::path(
    get,
    path = "/api/v1/bids",
    tag = "bids",
    responses((status = 200, description = "The caller's bids", body = Vec<crate::wire::BidView>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn mine(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<BidView>>, ApiError> {
    let owner = caller.0.id;
    let at = state.now();
    let views = state
        .store(move |s| {
            let orders = crate::standing_orders::orders_by_bid(s, owner)?;
            s.bids_of(owner)?
                .iter()
                .map(|b| {
                    let mut v = view(s, b, at)?;
                    v.order = orders.get(&b.id).copied();
                    Ok(v)
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
    Ok(Json(views))
}

/// `GET /api/v1/bids/{id}`: for the bid's owner, the machine's host and operators; others
/// get 404 (a bid's image and settings are private).
#[utoipa::path(
    get,
    path = "/api/v1/bids/{id}",
    tag = "bids",
    params(("id" = u64, Path, description = "The bid's id")),
    responses((status = 200, description = "The bid", body = crate::wire::BidView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<BidView>, ApiError> {
    let bid = visible_bid(&state, &caller, id).await?;
    let now = state.now();
    let viewer = caller.0.id;
    Ok(Json(
        state
            .store(move |s| {
                let mut v = view(s, &bid, now)?;
                if bid.owner == viewer {
                    v.order = crate::standing_orders::orders_by_bid(s, viewer)?
                        .get(&bid.id)
                        .copied();
                }
                Ok(v)
            })
            .await?,
    ))
}

/// The view of `bid`, with the reason of its suspension when it is suspended.
fn view(s: &dyn Store, bid: &Bid, now: u64) -> Result<BidView, StoreError> {
    let failures = s.bid_failures(bid.id)?;
    Ok(BidView::new(bid, now).with_suspension(failures.as_ref()))
}

/// `GET /api/v1/bids/{id}/decision`: why the bid won or lost in the latest clearing of
/// its machine: its own verdict, the winner and the winning score, the plugin versions.
#[utoipa::path(
    get,
    path = "/api/v1/bids/{id}/decision",
    tag = "bids",
    params(("id" = u64, Path, description = "The bid's id")),
    responses((status = 200, description = "Why the bid won or lost its latest clearing", body = BidDecision), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn decision(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<BidDecision>, ApiError> {
    let bid = visible_bid(&state, &caller, id).await?;
    let machine = bid.machine;
    let now = state.now();
    let shown = bid.clone();
    let versions = state.versions.clone();
    let cache = state.what_wins.clone();
    crate::deadline::work_started();
    let (decision, own, unserved, what_would_win) = state
        .store(move |s| {
            let own = view(s, &shown, now)?;
            let interval = s.assignment(machine)?.map(|a| a.interval);
            let (decision, unserved) = match interval {
                Some(interval) => (
                    s.decision(machine, interval)?,
                    s.unserved(machine, interval)?,
                ),
                None => (None, None),
            };
            let Some(decision) = decision else {
                return Ok(None);
            };
            let what_would_win = cache.get(s, &versions, &decision, id)?;
            Ok(Some((decision, own, unserved, what_would_win)))
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                None,
                format!("machine {machine} has not been cleared yet"),
            )
        })?;
    let verdict = decision
        .verdicts
        .iter()
        .find(|v| v.bid == id)
        .map(|v| &v.verdict);
    let winning_score = decision.winner.and_then(|w| {
        decision
            .verdicts
            .iter()
            .find(|v| v.bid == w.bid)
            .and_then(|v| match v.verdict {
                gigaspot_market::clearing::Verdict::Scored { score } => Some(score),
                _ => None,
            })
    });
    Ok(Json(BidDecision {
        bid: id,
        machine,
        state: own.state,
        suspension: own.suspension,
        unserved: unserved.filter(|u| u.bid == id),
        interval: decision.interval,
        won: decision.winner.is_some_and(|w| w.bid == id),
        verdict: verdict.cloned(),
        winner: decision.winner.map(|w| w.bid),
        winning_score,
        idle_reason: decision.idle_reason,
        strategy: decision.strategy,
        validators: decision.validators,
        input_digest: decision.input_digest,
        what_would_win,
    }))
}

/// `GET /api/v1/bids/{id}/decision`: a bid's side of its machine's latest clearing.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BidDecision {
    /// The bid.
    pub bid: u64,
    /// Its machine.
    pub machine: u64,
    /// `active`, `suspended`, `cancelled` or `expired`.
    pub state: String,
    /// Why it is suspended, when it is.
    pub suspension: Option<String>,
    /// The agent's report for the interval, when this bid won it and did not run.
    pub unserved: Option<gigaspot_market::agent_protocol::Unserved>,
    /// The interval cleared.
    pub interval: u64,
    /// Whether this bid won it.
    pub won: bool,
    /// This bid's verdict (absent when it was not live at the clearing).
    pub verdict: Option<gigaspot_market::clearing::Verdict>,
    /// The winning bid, if any.
    pub winner: Option<u64>,
    /// The winner's score.
    pub winning_score: Option<f64>,
    /// Why the machine idles, when it does.
    pub idle_reason: Option<String>,
    /// The strategy version that answered.
    pub strategy: Option<gigaspot_market::verdict::PluginRef>,
    /// The validator versions that answered, in order.
    pub validators: Vec<gigaspot_market::verdict::PluginRef>,
    /// sha256 of the plugins' input.
    pub input_digest: String,
    /// For a bid that lost: the lowest price at its own power limits, or the largest power
    /// limit at its price, that would have won this clearing under the same plugin
    /// versions and the same other bids, or why nothing would (absent when it won or was
    /// not live).
    pub what_would_win: Option<crate::what_wins::WhatWinsView>,
}

/// `PATCH /api/v1/bids/{id}`: the owner changes price and settings; admission runs again.
#[utoipa::path(
    patch,
    path = "/api/v1/bids/{id}",
    tag = "bids",
    request_body = crate::wire::BidEdit, params(("id" = u64, Path, description = "The bid's id")),
    responses((status = 200, description = "The bid as changed", body = crate::wire::BidView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(request): JsonBody<BidEdit>,
) -> Result<Json<BidView>, ApiError> {
    visible_bid(&state, &caller, id).await?;
    let change = BidChange {
        price_per_day: request.price.0,
        oc: request.oc.into_iter().map(OcRequest::from).collect(),
        image: request.image,
        env: request.env,
    };
    let owner = caller.0.id;
    let now = state.now();
    let bid = state
        .store(move |s| s.edit_bid(owner, id, &change, now))
        .await?;
    Ok(Json(BidView::new(&bid, state.now())))
}

/// `DELETE /api/v1/bids/{id}`: the owner cancels.
#[utoipa::path(
    delete,
    path = "/api/v1/bids/{id}",
    tag = "bids",
    params(("id" = u64, Path, description = "The bid's id")),
    responses((status = 200, description = "The bid, cancelled", body = crate::wire::BidView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Json<BidView>, ApiError> {
    visible_bid(&state, &caller, id).await?;
    let owner = caller.0.id;
    let now = state.now();
    let bid = state.store(move |s| s.cancel_bid(owner, id, now)).await?;
    Ok(Json(BidView::new(&bid, state.now())))
}

async fn visible_bid(state: &AppState, caller: &Caller, id: u64) -> Result<Bid, ApiError> {
    let account = caller.0.clone();
    state
        .store(move |s| {
            let bid = s.bid(id)?.ok_or(StoreError::NotFound { what: "bid", id })?;
            let host = s.machine(bid.machine)?.map(|m| m.host);
            let allowed =
                bid.owner == account.id || host == Some(account.id) || account.has(Role::Operator);
            if allowed {
                Ok(bid)
            } else {
                Err(StoreError::NotFound { what: "bid", id })
            }
        })
        .await
}
