//! The real `gigaspot serve` binary as an operator runs it: JSON logs with a span per
//! request (echoing `X-Request-Id`), a graceful stop on SIGTERM that closes the store, and
//! a restart on the same folder that finds everything.

use std::process::Command;
use std::time::{Duration, Instant};

use gigaspot_tests::process::Served;
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "gs_operator_key_for_binary_tests_0123456789";

fn serve(data: &std::path::Path) -> Served {
    Served::start(
        env!("CARGO_BIN_EXE_gigaspot"),
        data,
        &[
            ("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY),
            ("GIGASPOT_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
}

fn log_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully_and_a_restart_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/v1/accounts", served.base))
        .header("x-request-id", "test-req-42")
        .json(&json!({"name": "survivor", "roles": ["client"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "test-req-42");
    let account: Value = response.json().await.unwrap();
    // Without an id of its own, a request gets a fresh one.
    let health = http
        .get(format!("{}/api/v1/health", served.base))
        .send()
        .await
        .unwrap();
    let made = health.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");

    let (status, log) = served.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}:\n{log}");
    let lines = log_lines(&log);
    let answered = lines
        .iter()
        .find(|l| l["span"]["request_id"] == json!("test-req-42"))
        .unwrap_or_else(|| panic!("no log line of the request:\n{log}"));
    assert_eq!(
        answered["fields"]["message"],
        json!("answered"),
        "{answered}"
    );
    assert_eq!(answered["fields"]["status"], json!(201), "{answered}");
    assert_eq!(
        answered["span"]["route"],
        json!("/api/v1/accounts"),
        "{answered}"
    );
    assert_eq!(answered["span"]["method"], json!("POST"), "{answered}");
    assert!(answered["fields"]["latency_ms"].is_number(), "{answered}");
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    let stopping = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("stopping"))
        })
        .unwrap_or_else(|| panic!("no stop line:\n{log}"));
    assert_eq!(stopping["fields"]["signal"], json!("SIGTERM"));
    assert!(
        messages.contains(&"every request in flight finished"),
        "{log}"
    );
    assert!(messages.contains(&"store closed"), "{log}");

    // The restart opens the folder at once and finds the account.
    let started = Instant::now();
    let served = serve(&data);
    assert!(started.elapsed() < Duration::from_secs(10));
    let me: Value = http
        .get(format!("{}/api/v1/accounts/me", served.base))
        .bearer_auth(account["api_key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], json!("survivor"), "{me}");
    let (status, log) = served.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}

#[test]
fn a_bad_log_filter_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "gigaspot=[[[")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}
