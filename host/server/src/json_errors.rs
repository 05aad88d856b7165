//! Answers produced below the handlers (the body limit's 413, the timeout's 408, the
//! router's 405, an extractor's plain-text rejection of a query string or path) carry the
//! same JSON as every other answer: `{"error": {...}}` on the native API, and Clore's
//! `{"code": ...}` on `/v1`.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;

/// Longest plain-text rejection kept as the reason.
const REASON_BYTES: usize = 1024;

/// Rewrites a non-JSON 4xx into the JSON error of the route's surface.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let clore = request.uri().path().starts_with("/v1/");
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (reason, code, field) = match status {
        _ if is_json => return response,
        StatusCode::PAYLOAD_TOO_LARGE => (
            "the request body is larger than the service accepts (max_body_bytes)".to_owned(),
            2,
            Some("body"),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "the request took longer than the service allows (request_timeout_ms)".to_owned(),
            6,
            None,
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("this route does not answer this method".to_owned(), 4, None)
        }
        // An extractor's rejection (a query string or path that does not parse): its text.
        s if s.is_client_error() => {
            let (_, body) = response.into_parts();
            let text = axum::body::to_bytes(body, REASON_BYTES)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let field = if text.contains("query string") {
                Some("query")
            } else if text.contains("path") {
                Some("path")
            } else {
                None
            };
            let reason = if text.is_empty() {
                s.canonical_reason().unwrap_or("refused").to_owned()
            } else {
                text
            };
            let response = if clore {
                (
                    s,
                    axum::Json(serde_json::json!({"code": 2, "error": reason})),
                )
                    .into_response()
            } else {
                ApiError::new(s, field, reason).into_response()
            };
            return response;
        }
        _ => return response,
    };
    if clore {
        // Clore's codes: 2 invalid input; 4 invalid endpoint; 6 an error named in `error`.
        let body = serde_json::json!({"code": code, "error": reason});
        return (status, axum::Json(body)).into_response();
    }
    let mut rewritten = ApiError::new(status, field, reason).into_response();
    // Keep the headers the original answer carried (e.g. Connection: close).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}
