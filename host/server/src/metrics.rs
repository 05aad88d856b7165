//! Prometheus metrics, written in the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gigaspot_store::TickReport;

use crate::app::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    /// Requests by (route, method, status) and latency by route.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    clearing: Mutex<Histogram>,
    ticks: AtomicU64,
    switches: AtomicU64,
    charged_intervals: AtomicU64,
    revenue_units: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests
            .entry((route.into(), method.into(), status))
            .or_default() += 1;
        drop(requests);
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.into())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one interval boundary.
    pub fn tick(&self, report: &TickReport, elapsed: Duration) {
        self.clearing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(elapsed.as_secs_f64());
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.switches
            .fetch_add(report.switches as u64, Ordering::Relaxed);
        self.charged_intervals
            .fetch_add(report.charged as u64, Ordering::Relaxed);
        self.revenue_units
            .fetch_add(report.revenue.0, Ordering::Relaxed);
    }
}

/// Middleware: times and counts every request by its route pattern.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
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

/// `GET /metrics`.
pub async fn render(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let m = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP gigaspot_http_requests_total HTTP requests answered.\n# TYPE gigaspot_http_requests_total counter\n");
    for ((route, method, status), count) in
        m.requests.lock().unwrap_or_else(|p| p.into_inner()).iter()
    {
        let _ = writeln!(
            out,
            "gigaspot_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
        );
    }
    out.push_str("# HELP gigaspot_http_request_duration_seconds Request latency.\n# TYPE gigaspot_http_request_duration_seconds histogram\n");
    for (route, h) in m.latency.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        h.write(
            &mut out,
            "gigaspot_http_request_duration_seconds",
            &format!("route=\"{route}\""),
        );
    }
    out.push_str("# HELP gigaspot_clearing_duration_seconds Duration of interval boundaries.\n# TYPE gigaspot_clearing_duration_seconds histogram\n");
    m.clearing.lock().unwrap_or_else(|p| p.into_inner()).write(
        &mut out,
        "gigaspot_clearing_duration_seconds",
        "",
    );
    let counter = |out: &mut String, name: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        &mut out,
        "gigaspot_ticks_total",
        "Interval boundaries run.",
        m.ticks.load(Ordering::Relaxed).to_string(),
    );
    counter(
        &mut out,
        "gigaspot_switches_total",
        "Workload switches decided.",
        m.switches.load(Ordering::Relaxed).to_string(),
    );
    counter(
        &mut out,
        "gigaspot_charged_intervals_total",
        "Served intervals charged.",
        m.charged_intervals.load(Ordering::Relaxed).to_string(),
    );
    let revenue = gigaspot_market::money::Amount(m.revenue_units.load(Ordering::Relaxed));
    counter(
        &mut out,
        "gigaspot_revenue_clore_total",
        "CLORE charged for served intervals.",
        revenue.to_string(),
    );
    let bids = state.store_bid_count();
    let _ = writeln!(
        out,
        "# HELP gigaspot_active_bids Active bids.\n# TYPE gigaspot_active_bids gauge\ngigaspot_active_bids {bids}"
    );
    out.push_str("# HELP gigaspot_plugin_calls_total Plugin calls by version.\n# TYPE gigaspot_plugin_calls_total counter\n");
    let stats = state.registry.stats();
    for s in &stats {
        let _ = writeln!(
            out,
            "gigaspot_plugin_calls_total{{plugin=\"{}\",digest=\"{}\",role=\"{}\"}} {}",
            s.plugin.name, s.plugin.digest, s.role, s.calls
        );
    }
    out.push_str("# HELP gigaspot_plugin_fuel_total Fuel consumed by plugin calls.\n# TYPE gigaspot_plugin_fuel_total counter\n");
    for s in stats.iter().filter(|s| s.fuel.is_some()) {
        let _ = writeln!(
            out,
            "gigaspot_plugin_fuel_total{{plugin=\"{}\",digest=\"{}\",role=\"{}\"}} {}",
            s.plugin.name,
            s.plugin.digest,
            s.role,
            s.fuel.unwrap_or(0)
        );
    }
    out.push_str("# HELP gigaspot_plugin_faults_total Plugin faults by version and kind.\n# TYPE gigaspot_plugin_faults_total counter\n");
    for s in &stats {
        let f = s.faults;
        for (kind, n) in [
            ("out_of_fuel", f.out_of_fuel),
            ("timeout", f.timeout),
            ("memory", f.memory),
            ("trap", f.trap),
            ("panic", f.panic),
            ("bad_output", f.bad_output),
        ] {
            let _ = writeln!(
                out,
                "gigaspot_plugin_faults_total{{plugin=\"{}\",digest=\"{}\",kind=\"{kind}\"}} {n}",
                s.plugin.name, s.plugin.digest
            );
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
}
