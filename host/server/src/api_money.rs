//! Deposits (operator), balances and the ledger.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use gigaspot_market::account::Role;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::wire::{BalanceView, DepositRequest, LedgerEntry, TransferView};

/// `POST /api/v1/deposits`: the operator credits an account; the reference makes a
/// repeated request harmless.
#[utoipa::path(
    post,
    path = "/api/v1/deposits",
    tag = "money",
    request_body = crate::wire::DepositRequest,
    responses((status = 201, description = "The deposit (the same transfer again for a repeated reference)", body = crate::wire::TransferView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<DepositRequest>,
) -> Result<(StatusCode, Json<TransferView>), ApiError> {
    caller.require(Role::Operator, "credit deposits")?;
    let amount = request.amount.0;
    let at = state.now();
    let transfer = state
        .store(move |s| s.deposit(request.account, amount, &request.reference, at))
        .await?;
    Ok((StatusCode::CREATED, Json(TransferView::from(&transfer))))
}

/// `GET /api/v1/balance`: the caller's balance.
#[utoipa::path(
    get,
    path = "/api/v1/balance",
    tag = "money",
    responses((status = 200, description = "The caller's balance", body = crate::wire::BalanceView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<BalanceView>, ApiError> {
    let account = caller.0.id;
    let balance = state.store(move |s| s.balance(account)).await?;
    Ok(Json(BalanceView {
        account,
        balance: balance.as_clore(),
    }))
}

/// `GET /api/v1/ledger?limit=N&before=SEQ`: the transfers that touch the caller, newest
/// first: at most `limit` (default 100, up to 1,000), booked before `before` when given
/// (the last entry's `seq`, to page on). Served from a per-account index, so the cost is
/// the page, not the ledger.
#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    tag = "money",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 100, up to 1000)"), ("before" = Option<u64>, Query, description = "Only transfers booked before this sequence number")),
    responses((status = 200, description = "The caller's transfers, newest first", body = Vec<crate::wire::LedgerEntry>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn ledger(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    let limit = crate::query::limit(&query, 100, 1_000)?;
    let before = crate::query::before(&query)?;
    let account = caller.0.id;
    let page = state
        .store(move |s| {
            let clock = s.interval_clock()?;
            s.account_transfers(account, before, limit)?
                .iter()
                .map(|(seq, t)| {
                    let mut transfer = TransferView::from(t);
                    // A charge shows the time it pays for.
                    if let (Some(machine), Some(interval)) = (t.machine, t.interval) {
                        let length = clock.length_of(interval);
                        transfer.interval_s = Some(length);
                        transfer.served_s = Some(
                            s.served_time(machine, interval)?
                                .filter(|st| Some(st.bid) == t.bid)
                                .map_or(length, |st| st.seconds.min(length)),
                        );
                    }
                    Ok(LedgerEntry {
                        seq: *seq,
                        transfer,
                    })
                })
                .collect::<Result<Vec<_>, gigaspot_store::StoreError>>()
        })
        .await?;
    Ok(Json(page))
}
