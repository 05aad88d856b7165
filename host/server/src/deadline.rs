//! The request deadline (`request_timeout_ms`) that never lies about a write.
//!
//! A timeout that drops the handler cannot stop store work already handed to the blocking
//! pool: the write lands while the client is told 408, and a client that retries (a `/v1`
//! bot has no idempotency key) applies it twice. So the deadline covers reading the request
//! and the work before the store is reached; once a handler has handed work to the store
//! ([`work_started`]), the request runs to its end and its real answer is sent, however
//! long that takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

tokio::task_local! {
    /// Set once the current request has handed work to the store.
    static STORE_WORK: Arc<AtomicBool>;
}

/// Marks the current request as having handed work to the store: from now on its deadline
/// no longer applies. Outside a request (the clearing loop, the CLI) it does nothing.
pub fn work_started() {
    let _ = STORE_WORK.try_with(|started| started.store(true, Ordering::SeqCst));
}

/// Middleware: answers 408 when the deadline passes before the request reached the store;
/// after that, waits for the handler's own answer.
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.config.request_timeout_ms);
    let started = Arc::new(AtomicBool::new(false));
    let handler = STORE_WORK.scope(started.clone(), next.run(request));
    tokio::pin!(handler);
    match tokio::time::timeout(limit, &mut handler).await {
        Ok(response) => response,
        Err(_) if started.load(Ordering::SeqCst) => handler.await,
        // json_errors turns the bare status into the surface's error shape.
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}
