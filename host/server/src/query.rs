//! Query-string parameters and request headers shared by the routes.

use std::collections::HashMap;

use axum::http::StatusCode;

use crate::api_error::ApiError;

/// `limit`: a whole number from 1 to `max`; `default` when absent.
pub fn limit(
    query: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("limit"),
                format!("{v:?} is not a whole number from 1 to {max}"),
            )),
        },
    }
}

/// `before`: the cursor of a newest-first page, a whole number ≥ 1; `None` when absent.
pub fn before(query: &HashMap<String, String>) -> Result<Option<u64>, ApiError> {
    match query.get("before") {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                Some("before"),
                format!("{v:?} is not a whole number >= 1 (the `seq` of a ledger entry)"),
            )),
        },
    }
}

/// The request's `Idempotency-Key` header, if any; it must be visible ASCII.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_field("Idempotency-Key", "must be visible ASCII"))
        })
        .transpose()
}
