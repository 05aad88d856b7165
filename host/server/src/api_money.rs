//! Deposits (operator), balances and the ledger.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gigaspot_market::account::Role;
use gigaspot_market::ledger::Party;
use gigaspot_store::Store;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::Caller;
use crate::wire::{BalanceView, DepositRequest, TransferView, clore};

/// `POST /api/v1/deposits`: the operator credits an account; the reference makes a
/// repeated request harmless.
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request): JsonBody<DepositRequest>,
) -> Result<(StatusCode, Json<TransferView>), ApiError> {
    caller.require(Role::Operator, "credit deposits")?;
    let amount = clore("amount", request.amount)?;
    let at = state.now();
    let transfer = state
        .store(move |s| s.deposit(request.account, amount, &request.reference, at))
        .await?;
    Ok((StatusCode::CREATED, Json(TransferView::from(&transfer))))
}

/// `GET /api/v1/balance`: the caller's balance.
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

/// `GET /api/v1/ledger`: the transfers that touch the caller, oldest first.
pub async fn ledger(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TransferView>>, ApiError> {
    let me = Party::Account(caller.0.id);
    let transfers = state.store(|s| s.transfers()).await?;
    Ok(Json(
        transfers
            .iter()
            .filter(|t| t.from == me || t.to == me)
            .map(TransferView::from)
            .collect(),
    ))
}
