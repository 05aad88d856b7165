//! Answers produced below the handlers (the body limit's 413, the timeout's 408, the
//! router's 405) carry the same JSON as every other answer: `{"error": {...}}` on the
//! native API, and Clore's `{"code": ...}` on `/v1`.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;

/// Rewrites a non-JSON 413, 408 or 405 into the JSON error of the route's surface.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let clore = request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (reason, code) = match status {
        _ if is_json => return response,
        StatusCode::PAYLOAD_TOO_LARGE => (
            "the request body is larger than the service accepts (max_body_bytes)",
            2,
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "the request took longer than the service allows (request_timeout_ms)",
            6,
        ),
        StatusCode::METHOD_NOT_ALLOWED => ("this route does not answer this method", 4),
        _ => return response,
    };
    if clore {
        // Clore's codes: 2 invalid input; 4 invalid endpoint; 6 an error named in `error`.
        let body = serde_json::json!({"code": code, "error": reason});
        return (status, axum::Json(body)).into_response();
    }
    let field = (status == StatusCode::PAYLOAD_TOO_LARGE).then_some("body");
    let mut rewritten = ApiError::new(status, field, reason).into_response();
    // Keep the headers the original answer carried (e.g. Connection: close).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}
