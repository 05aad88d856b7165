//! Health, registration and the caller's account.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gigaspot_market::account::Role;

use crate::api_error::ApiError;
use crate::app::{AppState, JsonBody};
use crate::auth::{Caller, generate_key, key_hash};
use crate::wire::{AccountView, NewAccount, NewAccountReply, roles};

/// `GET /api/v1/health`: the service answers; the strategy version that answers now
/// (the first of active → previous → built-in that is not quarantined), the one the
/// operator activated, and the whole fallback chain.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "service",
    responses((status = 200, description = "The service is up: the answering strategy and its fallback chain", body = crate::plugin_wire::Health))
)]
pub async fn health(State(state): State<AppState>) -> Json<crate::plugin_wire::Health> {
    Json(crate::plugin_wire::Health::of(&state.registry))
}

/// `POST /api/v1/accounts`: creates a client and/or host account and returns its API key
/// once. Open to anyone while registration is open; otherwise operators only.
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    tag = "accounts",
    request_body = crate::wire::NewAccount,
    responses((status = 201, description = "The account and its API key (shown once)", body = crate::wire::NewAccountReply), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security((), ("bearer" = []))
)]
pub async fn register(
    State(state): State<AppState>,
    caller: Option<Caller>,
    JsonBody(request): JsonBody<NewAccount>,
) -> Result<(StatusCode, Json<NewAccountReply>), ApiError> {
    let is_operator = caller.as_ref().is_some_and(|c| c.has(Role::Operator));
    if !state.config.open_registration && !is_operator {
        return Err(ApiError::forbidden(
            "registration is closed; ask the operator for an account",
        ));
    }
    let roles = roles(&request.roles)?;
    gigaspot_market::account::check_name(&request.name)
        .map_err(|reason| ApiError::bad_field("name", reason))?;
    let key = generate_key();
    let hash = key_hash(&key);
    let account = state
        .store(move |s| {
            let account = s.create_account(&request.name, &roles)?;
            s.add_api_key(account.id, hash)?;
            Ok(account)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewAccountReply {
            account: AccountView::from(&account),
            api_key: key,
        }),
    ))
}

/// `GET /api/v1/accounts/me`.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/me",
    tag = "accounts",
    responses((status = 200, description = "The caller's account", body = crate::wire::AccountView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn me(caller: Caller) -> Json<AccountView> {
    Json(AccountView::from(&caller.0))
}
