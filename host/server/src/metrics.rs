//! Prometheus metrics at `GET /metrics`, in the text exposition format (0.0.4).
//!
//! Recording and rendering are the `metrics` crate's and `metrics-exporter-prometheus`'s: the
//! exporter escapes label values (`\`, `"` and newlines) as the format requires, so a plugin
//! whose `info()` name carries them cannot corrupt a scrape. Every label's values are bounded:
//! routes are the router's templates (`unmatched` for anything else), methods are the HTTP
//! methods the API knows (`other` for the rest), statuses are three digits, and plugin labels
//! exist once per installed version.
//!
//! Events (requests, boundaries) go to a recorder that lives as long as the service; values
//! read off the market and the plugin registry at scrape time go to a fresh recorder per
//! scrape, so a removed plugin version disappears from the next scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use gigaspot_store::TickReport;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::app::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Requests between two drains of the histograms' sample buffers (the exporter keeps raw
/// samples until a scrape or an upkeep folds them into the buckets).
const UPKEEP_EVERY: u64 = 4096;

const REQUESTS: &str = "gigaspot_http_requests_total";
const LATENCY: &str = "gigaspot_http_request_duration_seconds";
const CLEARING: &str = "gigaspot_clearing_duration_seconds";
const SHADOW: &str = "gigaspot_shadow_duration_seconds";
const TICKS: &str = "gigaspot_ticks_total";
const SWITCHES: &str = "gigaspot_switches_total";
const CHARGED: &str = "gigaspot_charged_intervals_total";
const REVENUE: &str = "gigaspot_revenue_units_total";
const ACTIVE_BIDS: &str = "gigaspot_active_bids";
const PLUGIN_CALLS: &str = "gigaspot_plugin_calls_total";
const PLUGIN_FUEL: &str = "gigaspot_plugin_fuel_total";
const PLUGIN_FAULTS: &str = "gigaspot_plugin_faults_total";

/// The longest plugin name a label carries (names come from the plugin's own `info()`).
const PLUGIN_NAME_CHARS: usize = 64;

/// The service's event metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests_seen: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_counter!(
                REQUESTS,
                "HTTP requests answered, by route template, method and status."
            );
            describe_histogram!(LATENCY, "Request latency by route template.");
            describe_histogram!(CLEARING, "Duration of interval boundaries.");
            describe_histogram!(
                SHADOW,
                "Duration of the shadow strategy's run after a boundary."
            );
            describe_counter!(TICKS, "Interval boundaries run.");
            describe_counter!(SWITCHES, "Workload switches decided.");
            describe_counter!(CHARGED, "Served intervals charged.");
            describe_counter!(
                REVENUE,
                "Charged for served intervals, in base units (1 CLORE = 100000000 units)."
            );
            // Present from the first scrape, before any boundary has run.
            counter!(TICKS).absolute(0);
            counter!(SWITCHES).absolute(0);
            counter!(CHARGED).absolute(0);
            counter!(REVENUE).absolute(0);
        });
        Metrics {
            recorder,
            handle,
            requests_seen: AtomicU64::new(0),
        }
    }
}

/// A recorder with the service's histogram buckets.
fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder()
}

/// The method label: one of the methods the API routes, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl Metrics {
    /// Counts one answered request; `route` is a route template (or `unmatched`).
    pub fn request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        metrics::with_local_recorder(&self.recorder, || {
            counter!(
                REQUESTS,
                "route" => route.to_owned(),
                "method" => method_label(method),
                "status" => status.to_string()
            )
            .increment(1);
            histogram!(LATENCY, "route" => route.to_owned()).record(elapsed.as_secs_f64());
        });
        if self.requests_seen.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// Counts one interval boundary.
    pub fn tick(&self, report: &TickReport, elapsed: Duration) {
        metrics::with_local_recorder(&self.recorder, || {
            histogram!(CLEARING).record(elapsed.as_secs_f64());
            counter!(TICKS).increment(1);
            counter!(SWITCHES).increment(report.switches as u64);
            counter!(CHARGED).increment(report.charged as u64);
            counter!(REVENUE).increment(report.revenue.0);
        });
        self.handle.run_upkeep();
    }

    /// Counts the shadow strategy's run over one interval, `micros` long.
    pub fn shadow(&self, micros: u64) {
        metrics::with_local_recorder(&self.recorder, || {
            histogram!(SHADOW).record(micros as f64 / 1e6);
        });
    }
}

/// Middleware: times and counts every request by its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The metrics read off the market and the plugin registry, rendered now.
fn scrape_time(state: &AppState) -> String {
    let recorder = recorder();
    let handle = recorder.handle();
    let stats = state.registry.stats();
    let bids = state.store_bid_count();
    metrics::with_local_recorder(&recorder, || {
        describe_gauge!(ACTIVE_BIDS, "Active bids.");
        describe_counter!(PLUGIN_CALLS, "Plugin calls by version.");
        describe_counter!(PLUGIN_FUEL, "Fuel consumed by plugin calls, by version.");
        describe_counter!(PLUGIN_FAULTS, "Plugin faults by version, role and kind.");
        gauge!(ACTIVE_BIDS).set(bids as f64);
        for s in &stats {
            let plugin: String = s.plugin.name.chars().take(PLUGIN_NAME_CHARS).collect();
            let digest = s.plugin.digest.clone();
            counter!(
                PLUGIN_CALLS,
                "plugin" => plugin.clone(),
                "digest" => digest.clone(),
                "role" => s.role
            )
            .absolute(s.calls);
            if let Some(fuel) = s.fuel {
                counter!(
                    PLUGIN_FUEL,
                    "plugin" => plugin.clone(),
                    "digest" => digest.clone(),
                    "role" => s.role
                )
                .absolute(fuel);
            }
            let f = s.faults;
            for (kind, n) in [
                ("out_of_fuel", f.out_of_fuel),
                ("timeout", f.timeout),
                ("memory", f.memory),
                ("trap", f.trap),
                ("panic", f.panic),
                ("bad_output", f.bad_output),
            ] {
                counter!(
                    PLUGIN_FAULTS,
                    "plugin" => plugin.clone(),
                    "digest" => digest.clone(),
                    "role" => s.role,
                    "kind" => kind
                )
                .absolute(n);
            }
        }
    });
    handle.render()
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"))
)]
pub async fn render(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut out = state.metrics.handle.render();
    out.push_str(&scrape_time(&state));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
