//! `GET /api/v1/backup`: a consistent copy of the whole market, taken while it runs.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use gigaspot_market::account::Role;

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::Caller;

/// `GET /api/v1/backup` (operator): every account, transfer, machine, bid, plugin version
/// and setting in the backup format `gigaspot restore` reads. Writes wait while the copy is
/// taken; reads do not.
#[utoipa::path(
    get,
    path = "/api/v1/backup",
    tag = "operator",
    responses((status = 200, description = "A consistent copy of the whole market, for gigaspot restore", body = Vec<u8>, content_type = "application/octet-stream"), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn backup(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Operator, "download backups")?;
    let (bytes, summary) = state
        .store(|s| {
            let mut out = Vec::new();
            let summary = s.backup(&mut out)?;
            Ok((out, summary))
        })
        .await?;
    tracing::info!(
        entries = summary.entries,
        bytes = summary.bytes,
        "backup taken"
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"gigaspot.backup\"",
            ),
        ],
        bytes,
    )
        .into_response())
}
