//! Withdrawals: an account asks for a payout; the operator pays or rejects it.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use gigaspot_market::account::Role;
use gigaspot_market::withdrawal::{Settlement, Withdrawal, WithdrawalState};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::path_id::PathId;
use crate::wire::Clore;

/// `POST /api/v1/withdrawals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// CLORE, up to 8 decimals; at most the balance not committed to winning bids.
    pub amount: Clore,
    /// Where to pay it (a wallet address), 1 to 256 bytes.
    pub destination: String,
}

/// `POST /api/v1/withdrawals/{id}/paid` (operator).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidRequest {
    /// The payment's external reference (e.g. a transaction id), 1 to 256 bytes.
    pub reference: String,
}

/// `POST /api/v1/withdrawals/{id}/rejected` (operator).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectedRequest {
    /// Why, 1 to 256 bytes; shown to the account.
    pub reason: String,
}

/// A withdrawal as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WithdrawalView {
    /// Id.
    pub id: u64,
    /// The account paid out.
    pub account: u64,
    /// CLORE.
    pub amount: f64,
    /// Where to pay it.
    pub destination: String,
    /// `pending`, `paid` or `rejected`.
    pub state: String,
    /// The operator's payment reference, once paid.
    pub reference: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// Unix seconds.
    pub requested_at: u64,
    /// Unix seconds, once paid or rejected.
    pub settled_at: Option<u64>,
}

impl From<&Withdrawal> for WithdrawalView {
    fn from(w: &Withdrawal) -> Self {
        let (state, reference, reason) = match &w.state {
            WithdrawalState::Pending => ("pending", None, None),
            WithdrawalState::Paid { reference } => ("paid", Some(reference.clone()), None),
            WithdrawalState::Rejected { reason } => ("rejected", None, Some(reason.clone())),
        };
        WithdrawalView {
            id: w.id,
            account: w.account,
            amount: w.amount.as_clore(),
            destination: w.destination.clone(),
            state: state.into(),
            reference,
            reason,
            requested_at: w.requested_at,
            settled_at: w.settled_at,
        }
    }
}

/// `POST /api/v1/withdrawals`: moves the amount at once from the caller's balance to the
/// pending withdrawals. A repeated `Idempotency-Key` answers 200 with the first request.
#[utoipa::path(
    post,
    path = "/api/v1/withdrawals",
    tag = "money",
    request_body = crate::api_withdrawals::WithdrawalRequest, params(("Idempotency-Key" = Option<String>, Header, description = "Repeating a key returns the first result (200) instead of acting again")),
    responses((status = 201, description = "The withdrawal, pending", body = crate::api_withdrawals::WithdrawalView), (status = 200, description = "The withdrawal first requested with this Idempotency-Key", body = crate::api_withdrawals::WithdrawalView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn request(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<WithdrawalRequest>,
) -> Result<(StatusCode, Json<WithdrawalView>), ApiError> {
    let key = crate::query::idempotency_key(&headers)?;
    let account = caller.0.id;
    let now = state.now();
    let (withdrawal, replayed) = state
        .store(move |s| {
            s.request_withdrawal(
                account,
                body.amount.0,
                &body.destination,
                key.as_deref(),
                now,
            )
        })
        .await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(WithdrawalView::from(&withdrawal))))
}

/// `GET /api/v1/withdrawals[?state=pending|paid|rejected]`: the caller's withdrawals; an
/// operator sees everyone's.
#[utoipa::path(
    get,
    path = "/api/v1/withdrawals",
    tag = "money",
    params(("state" = Option<String>, Query, description = "pending, paid or rejected")),
    responses((status = 200, description = "The caller's withdrawals (an operator's: everyone's)", body = Vec<crate::api_withdrawals::WithdrawalView>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<WithdrawalView>>, ApiError> {
    let wanted = query.get("state").cloned();
    if let Some(s) = &wanted
        && !["pending", "paid", "rejected"].contains(&s.as_str())
    {
        return Err(ApiError::bad_field(
            "state",
            "must be pending, paid or rejected",
        ));
    }
    let account = (!caller.has(Role::Operator)).then_some(caller.0.id);
    let all = state.store(move |s| s.withdrawals(account)).await?;
    Ok(Json(
        all.iter()
            .map(WithdrawalView::from)
            .filter(|w| wanted.as_ref().is_none_or(|s| &w.state == s))
            .collect(),
    ))
}

/// `POST /api/v1/withdrawals/{id}/paid` (operator): the payout was made.
#[utoipa::path(
    post,
    path = "/api/v1/withdrawals/{id}/paid",
    tag = "money",
    request_body = crate::api_withdrawals::PaidRequest, params(("id" = u64, Path, description = "The withdrawal's id")),
    responses((status = 200, description = "The withdrawal, paid", body = crate::api_withdrawals::WithdrawalView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn paid(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<PaidRequest>,
) -> Result<Json<WithdrawalView>, ApiError> {
    settle(
        state,
        caller,
        id,
        Settlement::Paid {
            reference: body.reference,
        },
    )
    .await
}

/// `POST /api/v1/withdrawals/{id}/rejected` (operator): the amount returns to the account.
#[utoipa::path(
    post,
    path = "/api/v1/withdrawals/{id}/rejected",
    tag = "money",
    request_body = crate::api_withdrawals::RejectedRequest, params(("id" = u64, Path, description = "The withdrawal's id")),
    responses((status = 200, description = "The withdrawal, rejected and refunded", body = crate::api_withdrawals::WithdrawalView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn rejected(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<RejectedRequest>,
) -> Result<Json<WithdrawalView>, ApiError> {
    settle(
        state,
        caller,
        id,
        Settlement::Rejected {
            reason: body.reason,
        },
    )
    .await
}

async fn settle(
    state: AppState,
    caller: Caller,
    id: u64,
    decision: Settlement,
) -> Result<Json<WithdrawalView>, ApiError> {
    caller.require(Role::Operator, "settle withdrawals")?;
    let now = state.now();
    let settled = state
        .store(move |s| s.settle_withdrawal(id, decision, now))
        .await?;
    Ok(Json(WithdrawalView::from(&settled)))
}
