//! Schemathesis (PyPI, in `target/py-venv`) fuzzes every operation of the served OpenAPI
//! document against the real `gigaspot serve` binary, seeded with an operator, a client, a
//! host, a machine whose simulated agent has reported, bids and a withdrawal: once as the
//! operator and once as the client, with its response checks on (no 5xx, every status and
//! content type documented, every body valid against its schema). Pass: Schemathesis finds
//! nothing, and the server never panicked. Bounded by examples per operation.
//!
//! `DELETE /api/v1/keys/current` revokes the key it is called with, so it gets a run of its
//! own with a key of its own (otherwise it would end the other runs' authentication).

use std::process::Command;
use std::time::Duration;

use gigaspot_tests::process::Served;
use reqwest::Client;
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "gs_operator_key_for_fuzz_tests_0123456789abcd";
const EXAMPLES_PER_OPERATION: &str = "50";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

async fn call(
    http: &Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> Value {
    let mut req = http
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "{method} {path}: {}",
        resp.status()
    );
    resp.json().await.unwrap()
}

/// Runs Schemathesis over the document with `key` in both credential headers; returns
/// its output.
fn schemathesis(base: &str, key: &str, filter: &[&str]) -> String {
    let python = gigaspot_tests::python::python();
    let out = Command::new(python.with_file_name("schemathesis"))
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: with two, Hypothesis describes strategies by parsing their source
        // from two threads at once, which Debian's Python 3.11 can fail with "AST
        // constructor recursion depth mismatch" (a race in CPython's ast module,
        // gh-106905), an error of the tool rather than a finding about the server.
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        .args(["--suppress-health-check", "all"])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["-H", &format!("auth: {key}")])
        .args(filter)
        .output()
        .expect("schemathesis runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "Schemathesis found problems:\n{text}");
    text
}

/// The summary lines worth keeping from a run (operations, cases, the seed).
fn summary(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Tested:")
                || l.starts_with("Selected:")
                || l.ends_with("passed")
                || l.starts_with("Seed:")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_schema_violation_as_operator_or_client() {
    // The venv (and Schemathesis in it) before the server starts.
    gigaspot_tests::python::python();
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        env!("CARGO_BIN_EXE_gigaspot"),
        &dir.path().join("data"),
        &[
            ("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY),
            ("GIGASPOT_RATE_LIMIT_PER_MINUTE", "0"),
            ("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE", "0"),
        ],
    );
    let base = served.base.clone();
    let http = Client::new();
    let client = call(
        &http,
        &base,
        "POST",
        "/api/v1/accounts",
        None,
        json!({"name": "fuzz-client", "roles": ["client"]}),
    )
    .await;
    let client_key = client["api_key"].as_str().unwrap().to_owned();
    let host = call(
        &http,
        &base,
        "POST",
        "/api/v1/accounts",
        None,
        json!({"name": "fuzz-host", "roles": ["host"]}),
    )
    .await;
    call(
        &http,
        &base,
        "POST",
        "/api/v1/deposits",
        Some(OPERATOR_KEY),
        json!({"account": client["account"]["id"], "amount": 1000, "reference": "seed"}),
    )
    .await;
    let machine = call(&http, &base, "POST", "/api/v1/machines", host["api_key"].as_str(), json!({"gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 450, "ceiling_w": 400}], "energy_price": 0.0})).await;
    call(
        &http,
        &base,
        "POST",
        "/api/v1/agent/heartbeat",
        machine["agent_token"].as_str(),
        json!({"working": true, "running_bid": null}),
    )
    .await;
    for price in [5, 7, 9] {
        call(&http, &base, "POST", "/api/v1/bids", Some(&client_key), json!({"machine": machine["machine"]["id"], "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}]})).await;
    }
    call(
        &http,
        &base,
        "POST",
        "/api/v1/withdrawals",
        Some(&client_key),
        json!({"amount": 1, "destination": "clore1-fuzz"}),
    )
    .await;
    let spare = call(
        &http,
        &base,
        "POST",
        "/api/v1/accounts",
        None,
        json!({"name": "fuzz-spare", "roles": ["client"]}),
    )
    .await;

    let runs = {
        let base = base.clone();
        let spare = spare["api_key"].as_str().unwrap().to_owned();
        tokio::task::spawn_blocking(move || {
            let keep_key = ["--exclude-path", "/api/v1/keys/current"];
            let operator = schemathesis(&base, OPERATOR_KEY, &keep_key);
            let client = schemathesis(&base, &client_key, &keep_key);
            let revoke = schemathesis(&base, &spare, &["--include-path", "/api/v1/keys/current"]);
            [operator, client, revoke]
        })
        .await
        .unwrap()
    };
    for (who, text) in ["operator", "client", "key revocation"].iter().zip(&runs) {
        eprintln!("Schemathesis as {who}: {}", summary(text));
    }

    // The server is still healthy, and never panicked.
    let health = http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    let (status, log) = served.terminate(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
