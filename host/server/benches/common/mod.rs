//! What the HTTP benchmarks share: the machine they register, the load generator and
//! percentiles.

#![allow(dead_code)] // each benchmark uses its own subset

use std::time::{Duration, Instant};

use gigaspot_market::machine::Gpu;
use gigaspot_market::money::Amount;
use gigaspot_store::MachineSpec;
use serde_json::{Value, json};

/// The operator key every benchmark service is started with.
pub const OPERATOR_KEY: &str = "gs_operator_key_for_benchmarks_0123456789";

/// A 4 × RTX 4090 machine of `host`.
pub fn spec(host: u64) -> MachineSpec {
    MachineSpec {
        host,
        facts: Default::default(),
        gpus: (0..4)
            .map(|i| Gpu {
                model: "NVIDIA GeForce RTX 4090".into(),
                uuid: format!("GPU-{i}"),
                card_min_w: 150,
                card_max_w: 450,
                ceiling_w: 450,
            })
            .collect(),
        energy_price_usd_per_kwh: 0.0,
        reserve_price: Amount::ZERO,
        max_rental_length_s: 30 * 86_400,
        background: None,
        background_earnings: Amount::ZERO,
        explicit_ceilings: true,
    }
}

/// The agent token the benchmarks give `machine`.
pub fn agent_token(machine: u64) -> String {
    format!("gs_agent_token_for_benchmarks_{machine:08}")
}

/// The latencies every task measured, sorted.
pub async fn gather(tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    latencies.sort();
    latencies
}

/// Every client (one per key) POSTs `per_client` bodies `body(client, n)` to `url` one after
/// another, all clients at once, each expecting 201: the requests per second and the
/// sorted latencies.
pub async fn post_load(
    http: &reqwest::Client,
    url: &str,
    keys: &[String],
    per_client: usize,
    body: impl Fn(usize, usize) -> Value + Clone + Send + 'static,
) -> (f64, Vec<Duration>) {
    post_load_spread(http, &[url.to_owned()], keys, per_client, body).await
}

/// [`post_load`] with the clients spread over `urls` (client `i` sends to `urls[i % n]`:
/// several replicas of one service).
pub async fn post_load_spread(
    http: &reqwest::Client,
    urls: &[String],
    keys: &[String],
    per_client: usize,
    body: impl Fn(usize, usize) -> Value + Clone + Send + 'static,
) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let url = urls[i % urls.len()].clone();
            let (http, key, body) = (http.clone(), key.clone(), body.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    let json = body(i, n);
                    let t = Instant::now();
                    let resp = http
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let latencies = gather(tasks).await;
    (
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        latencies,
    )
}

/// The `q` quantile of sorted latencies, in ms.
pub fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

/// 64 funded clients registered through `base`: their API keys.
pub async fn clients(http: &reqwest::Client, base: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..64 {
        let reply: Value = http
            .post(format!("{base}/api/v1/accounts"))
            .json(&json!({"name": format!("bidder{i}"), "roles": ["client"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = reply["account"]["id"].as_u64().unwrap();
        let deposit = http
            .post(format!("{base}/api/v1/deposits"))
            .bearer_auth(OPERATOR_KEY)
            .json(&json!({"account": id, "amount": 1000.0, "reference": format!("bench-{i}")}))
            .send()
            .await
            .unwrap();
        assert!(deposit.status().is_success());
        keys.push(reply["api_key"].as_str().unwrap().to_owned());
    }
    keys
}
