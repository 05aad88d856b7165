//! Errors of the HTTP API: a status and a JSON body naming the field and the reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gigaspot_store::StoreError;
use serde::Serialize;

/// An error answer: `{"error": {"field": ..., "reason": ...}}` with a 4xx status (5xx
/// only for failures of the service itself).
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The offending field, when one is to blame.
    pub field: Option<String>,
    /// What went wrong, for people.
    pub reason: String,
    /// Whole seconds to wait, sent as `Retry-After` (rate limiting).
    pub retry_after: Option<u64>,
}

/// Every error of the native API: `{"error": {"field", "reason"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The field at fault (when one is) and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The request field at fault, e.g. `oc[1].pl`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Why, in words.
    pub reason: String,
}

impl ApiError {
    /// An error with a status, a field and a reason.
    pub fn new(status: StatusCode, field: Option<&str>, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            field: field.map(str::to_owned),
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// 429 with an integer `Retry-After`.
    pub fn rate_limited(seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                format!("too many requests for this key; retry in {seconds} s"),
            )
        }
    }

    /// 429 with an integer `Retry-After`, for a network's requests without an API key.
    pub fn rate_limited_anonymous(seconds: u64) -> Self {
        ApiError {
            retry_after: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                format!(
                    "too many requests without an API key from this network; retry in {seconds} s"
                ),
            )
        }
    }

    /// 400 for a bad field.
    pub fn bad_field(field: &str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), reason)
    }

    /// 401: no or an unknown key.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Some("Authorization"),
            "send `Authorization: Bearer <api key>` with a valid key",
        )
    }

    /// 403: the caller may not do this.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, None, reason)
    }

    /// 404: no such object (also for objects the caller may not see).
    pub fn not_found(what: &str, id: u64) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("no {what} {id}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                field: self.field,
                reason: self.reason,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(r) => {
                tracing::info!(field = %r.field, reason = %r, "admission refused");
                Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(&r.field),
                    r.to_string(),
                )
            }
            StoreError::NotFound { what, id } => Self::not_found(what, id),
            StoreError::Forbidden { action, .. } => {
                Self::forbidden(format!("this account may not {action}"))
            }
            StoreError::Invalid { field, reason } => Self::bad_field(field, reason),
            StoreError::InvalidField { field, reason } => Self::bad_field(&field, reason),
            StoreError::Ledger(l) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("amount"),
                l.to_string(),
            ),
            StoreError::Closed => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the service is stopping; retry in a moment",
            ),
            other => {
                tracing::error!("store failure: {other}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "the service could not complete the request",
                )
            }
        }
    }
}
