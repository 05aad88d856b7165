//! The HTTP application: shared state, the router, and request plumbing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use gigaspot_market::machine::MachineId;
use gigaspot_plugin_runtime::{PluginRegistry, PluginRuntime};
use gigaspot_store::{Store, StoreError};
use serde::de::DeserializeOwned;

use crate::api_error::ApiError;
use crate::config::Config;
use crate::market_history::HistoryCache;
use crate::metrics::{self, Metrics};
use crate::rate_limit::{self, RateLimiter};
use crate::snapshot::Snapshots;
use crate::wire::MachineView;
use crate::{api_clore, dashboard};

/// What every handler shares: one reference-counted handle (the router clones it for
/// every request and middleware layer, so a clone is one counter, not one per part).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Changing a part (tests set their own clock) copies the handles if the state is shared.
impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    /// The market's store.
    pub store: Arc<dyn Store>,
    /// The installed plugins.
    pub registry: Arc<PluginRegistry>,
    /// Loads plugins; kept alive as long as the plugins it loaded (it drives deadlines).
    pub runtime: Arc<PluginRuntime>,
    /// The service's configuration.
    pub config: Arc<Config>,
    /// Each machine's agent's last heartbeat, in memory.
    pub pulses: Arc<Mutex<HashMap<MachineId, AgentPulse>>>,
    /// Unix seconds now; the wall clock in service, a controlled clock in tests.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Per-key request budgets.
    pub limiter: Arc<RateLimiter>,
    /// Per-network budgets of requests without a valid credential.
    pub anonymous_limiter: Arc<RateLimiter>,
    /// Published market snapshots.
    pub snapshots: Arc<Snapshots>,
    /// Prometheus counters.
    pub metrics: Arc<Metrics>,
    /// `GET /api/v1/market/history` answers, recomputed once per boundary.
    pub history_cache: Arc<HistoryCache>,
    /// The time each machine's winner was confirmed running, not yet all written.
    pub served: Arc<crate::served_time::ServedTimes>,
    /// This replica's name in the clearer's lease: host name, process id and a random
    /// part, unique among the replicas of one database.
    pub replica: Arc<str>,
    /// Plugin versions by version id, for "what would win" searches, quotes, backtests
    /// and the shadow.
    pub versions: Arc<crate::plugin_versions::PluginVersions>,
    /// Backtests run through the API.
    pub backtests: Arc<crate::backtest_jobs::BacktestJobs>,
    /// "What would have won" answers already searched.
    pub what_wins: Arc<crate::what_wins::WhatWinsCache>,
}

/// A name for this process among the replicas of one database.
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "replica".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// What the service keeps in memory of an agent's last heartbeat.
#[derive(Debug, Clone)]
pub struct AgentPulse {
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, unix seconds (recorded for the other replicas).
    pub unix: u64,
    /// Measured power per GPU, W. A live gauge: kept here rather than written on every
    /// heartbeat, so that a heartbeat that changes nothing else writes nothing (and does
    /// not make the published snapshot stale).
    pub measured_power_w: Vec<u32>,
}

impl AppState {
    /// `view` with the measured power its agent reported last, when that is newer than
    /// the stored record's (any heartbeat since the service started).
    pub fn with_live_power(&self, mut view: MachineView) -> MachineView {
        let pulses = self.pulses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pulse) = pulses.get(&view.id) {
            view.agent.measured_power_w = pulse.measured_power_w.clone();
        }
        view
    }

    /// A state over `store`, `registry` and the `runtime` that loaded its plugins.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<PluginRegistry>,
        runtime: Arc<PluginRuntime>,
        config: Config,
    ) -> Self {
        let config_rate = config.rate_limit_per_minute;
        let anonymous_rate = config.anonymous_rate_limit_per_minute;
        let versions = Arc::new(crate::plugin_versions::PluginVersions::new(
            runtime.clone(),
            store.clone(),
        ));
        AppState(Arc::new(Shared {
            store,
            registry,
            runtime,
            versions,
            backtests: Arc::default(),
            what_wins: Arc::default(),
            config: Arc::new(config),
            pulses: Arc::default(),
            clock: Arc::new(wall_clock),
            limiter: Arc::new(RateLimiter::new(config_rate)),
            anonymous_limiter: Arc::new(RateLimiter::new(anonymous_rate)),
            snapshots: Arc::default(),
            metrics: Arc::default(),
            history_cache: Arc::default(),
            served: Arc::default(),
            replica: replica_name().into(),
        }))
    }

    /// Live bids in the store, for the metrics gauge.
    pub fn store_bid_count(&self) -> usize {
        let now = self.now();
        // The snapshot shares the bids with the store: counting copies nothing.
        self.store.tick_snapshot().map_or(0, |market| {
            market
                .bids
                .values()
                .flat_map(|b| b.iter())
                .filter(|b| b.is_live(now))
                .count()
        })
    }

    /// The base URL clients reach the service at: `public_url` from the configuration,
    /// else `http://<Host header>`.
    pub fn public_url(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }

    /// The market's interval clock as the store holds it.
    pub fn interval_clock(
        &self,
    ) -> Result<gigaspot_market::interval_clock::IntervalClock, StoreError> {
        self.store.interval_clock()
    }

    /// Unix seconds now, by the state's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Runs a store operation on the blocking pool (writes wait for the disk flush). From
    /// here on the request's deadline no longer applies (see [`crate::deadline`]).
    pub async fn store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        crate::deadline::work_started();
        tokio::task::spawn_blocking(move || op(&*store))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "the request was interrupted",
                )
            })?
            .map_err(ApiError::from)
    }
}

/// Unix seconds now by the system clock.
pub fn wall_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The whole service: the native API under `/api/v1`, the Clore-compatible `/v1`, and
/// `/metrics`, with the body limit, the request timeout and request metrics.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (api, _) = crate::api_doc::api_routes().split_for_parts();
    let app = api
        .route("/v1/{*rest}", axum::routing::any(api_clore::unknown))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, None, "no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_anonymous,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::deadline::enforce,
        ))
        .layer(axum::middleware::from_fn(crate::json_errors::json_errors));
    crate::logging::layer(app.with_state(state))
}

/// A JSON body whose rejections are API errors naming the field where serde can tell.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => {
                let status = rejection.status();
                let text = rejection.body_text();
                // serde_path_to_error messages read "<path>: <what>" after axum's prefix.
                let detail = text
                    .split_once("target type: ")
                    .map_or(text.as_str(), |(_, d)| d);
                let field = detail
                    .split_once(": ")
                    .map(|(path, _)| path)
                    .filter(|p| !p.contains(' '));
                let status = if status.is_server_error() {
                    StatusCode::BAD_REQUEST
                } else {
                    status
                };
                let field = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Some("body")
                } else {
                    field
                };
                Err(ApiError::new(status, field, detail.to_string()))
            }
        }
    }
}
