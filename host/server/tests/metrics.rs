//! `/metrics` stays valid Prometheus text whatever a plugin calls itself and whatever a
//! client sends: label values are escaped, and every label's values are bounded. The scrape
//! is checked by real parsers: Python's `prometheus_client` (PyPI) and `promtool check
//! metrics` (Debian's `prometheus`).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY};

/// Prints every sample `prometheus_client`'s text parser reads, as one JSON object a line.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps({"type": family.type, "name": s.name, "labels": s.labels, "value": s.value}))
"#;

/// Runs `command` with `input` on its stdin; panics with `what` and its output unless it
/// succeeds; returns its stdout.
fn feed(command: &mut Command, input: &str, what: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} refused the scrape:\n{}{}\n{input}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parse_with_prometheus_client(scrape: &str) -> Vec<Value> {
    let python = gigaspot_tests::python::python();
    feed(
        Command::new(python).args(["-c", PARSE]),
        scrape,
        "Python's prometheus_client",
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// The samples named `name`.
fn named<'a>(samples: &'a [Value], name: &str) -> Vec<&'a Value> {
    samples.iter().filter(|s| s["name"] == name).collect()
}

fn check_with_promtool(scrape: &str) {
    feed(
        Command::new("promtool").args(["check", "metrics"]),
        scrape,
        "promtool (Debian's `prometheus`; scripts/test installs it)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_named_with_quotes_backslashes_and_newlines_cannot_corrupt_the_scrape() {
    let m = Market::start(|_| {}).await;
    let digest = m.install_and_activate("odd-name", "").await;
    let (_, listed) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    let name = listed["active_strategy"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(name.contains('"') && name.contains('\\') && name.contains('\n'));
    // It ranks a real bid, so it has calls and fuel to report.
    let (_, machine, _) = m.machine().await;
    let (_, client) = m.funded_client("c", 100.0).await;
    let (status, _) = m.call("POST", "/api/v1/bids", Some(&client), Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    m.tick(0).await;

    // Clients send made-up methods and paths: they must not mint label values.
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let resp = m
            .http
            .request(method, format!("{}/no/such/route/{i}\"\n", m.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
        let resp = m
            .http
            .get(format!("{}/api/v1/bids/{i}x", m.base))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }

    let text = m.scrape().await;
    check_with_promtool(&text);
    let samples = parse_with_prometheus_client(&text);

    // The plugin's name comes back exactly (escaped on the wire, at most 64 characters).
    let expected: String = name.chars().take(64).collect();
    let calls = named(&samples, "gigaspot_plugin_calls_total");
    let calls = calls
        .iter()
        .find(|s| s["labels"]["digest"] == digest.as_str())
        .unwrap_or_else(|| panic!("no call counter for the plugin in {samples:#?}"));
    assert_eq!(calls["labels"]["plugin"], expected.as_str());
    assert!(calls["value"].as_f64().unwrap() >= 1.0, "{calls}");

    // Bounded labels: made-up methods are `other`, unknown paths `unmatched` or their
    // route template, so 80 odd requests add a handful of series, not 80.
    let requests = named(&samples, "gigaspot_http_requests_total");
    let label = |s: &Value, l: &str| s["labels"][l].as_str().unwrap().to_owned();
    assert!(
        requests
            .iter()
            .any(|s| label(s, "method") == "other" && label(s, "route") == "unmatched"),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|s| label(s, "route") == "/api/v1/bids/{id}"),
        "{requests:#?}"
    );
    assert!(requests.len() < 20, "{requests:#?}");
    for s in &requests {
        assert!(
            [
                "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other"
            ]
            .contains(&label(s, "method").as_str()),
            "{s}"
        );
        assert!(
            label(s, "route") == "unmatched" || label(s, "route").starts_with('/'),
            "{s}"
        );
    }
    // The boundary's own metrics are there with the values it produced.
    let value = |name: &str| named(&samples, name)[0]["value"].as_f64().unwrap();
    assert_eq!(value("gigaspot_ticks_total"), 1.0);
    assert_eq!(value("gigaspot_active_bids"), 1.0);
    assert_eq!(value("gigaspot_clearing_duration_seconds_count"), 1.0);

    // A removed version leaves the scrape (once another is active and the roll-back
    // target is the built-in strategy).
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/native:price-per-watt/activate",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    m.install_and_activate("price-per-watt", "").await;
    let (status, body) = m
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{digest}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = m.scrape().await;
    check_with_promtool(&text);
    assert!(!text.contains(&digest), "{text}");
}
