//! A numeric id in the request path whose rejection is a JSON error naming the field.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use crate::api_error::ApiError;

/// The `{id}` of a route such as `/api/v1/bids/{id}`: an unsigned integer, or 400 with
/// `{"error": {"field": "id", ...}}` (axum's own rejection is plain text).
pub struct PathId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_field("id", e.body_text()))?;
        raw.parse::<u64>().map(PathId).map_err(|_| {
            let shown: String = raw.chars().take(40).collect();
            ApiError::bad_field("id", format!("{shown:?} is not an unsigned integer id"))
        })
    }
}
