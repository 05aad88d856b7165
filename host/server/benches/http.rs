//! HTTP benchmarks, printed as a table (numbers recorded in docs/http-service.md):
//!
//! - bids created per second over HTTP by 64 concurrent clients, with p50/p99 latency;
//! - `GET /v1/get_gigaspot` and snapshot download latency with 10,000 machines × 50 bids;
//! - agent heartbeats per second from every machine, 64 at a time, and how many of them
//!   wrote to the store (a heartbeat that repeats the last one should write nothing);
//! - `GET /api/v1/market/history` over 60 cleared intervals: computed after a boundary,
//!   then served from memory.
//!
//! `cargo bench -p gigaspot-server --bench http` (add `-- --machines N` for a smaller run).

use std::time::{Duration, Instant};

use gigaspot_market::account::Role;
use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
use gigaspot_market::money::Amount;
use gigaspot_server::auth::key_hash;
use gigaspot_server::config::Config;
use gigaspot_server::serve::prepare;
use gigaspot_store::IntervalEngine;
use serde_json::{Value, json};

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::{OPERATOR_KEY, agent_token, clients, gather, percentile, post_load, spec};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let machines: usize = args
        .iter()
        .position(|a| a == "--machines")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        operator_key: Some(OPERATOR_KEY.into()),
        rate_limit_per_minute: 0,
        anonymous_rate_limit_per_minute: 0,
        ..Config::default()
    };
    let (state, _) = tokio::task::spawn_blocking(move || prepare(config))
        .await
        .unwrap()
        .unwrap();
    let store = state.store.clone();
    let state_store = state.store.clone();
    let state_registry = state.registry.clone();
    let snapshots = state.snapshots.clone();
    let now = gigaspot_server::app::wall_clock();
    let setup = Instant::now();
    let machine_ids = tokio::task::spawn_blocking(move || {
        let host = store.create_account("host", &[Role::Host]).unwrap().id;
        let ids: Vec<u64> = (0..machines)
            .map(|_| {
                let m = store.register_machine(spec(host)).unwrap();
                gigaspot_store::testing::bring_online(store.as_ref(), m.id).unwrap();
                store
                    .set_agent_token(m.id, key_hash(&agent_token(m.id)))
                    .unwrap();
                m.id
            })
            .collect();
        let clients: Vec<u64> = (0..200)
            .map(|i| {
                let id = store
                    .create_account(&format!("c{i}"), &[Role::Client])
                    .unwrap()
                    .id;
                store
                    .deposit(id, Amount::clore(1_000_000), &format!("seed-{i}"), 0)
                    .unwrap();
                id
            })
            .collect();
        // Fill the order books from 16 threads (group commit).
        let chunks: Vec<Vec<u64>> = ids
            .chunks(ids.len().div_ceil(16))
            .map(<[u64]>::to_vec)
            .collect();
        std::thread::scope(|scope| {
            for chunk in chunks {
                let (store, clients) = (&store, &clients);
                scope.spawn(move || {
                    for machine in chunk {
                        for n in 0..50u64 {
                            let terms = BidTerms {
                                machine,
                                price_per_day: Amount::clore(10 + (machine + n) % 500),
                                image: "registry.example/app:1".into(),
                                env: Default::default(),
                                oc: vec![
                                    OcRequest {
                                        pl: Some(150 + (n as u32 * 7) % 300),
                                        ..OcRequest::default()
                                    };
                                    4
                                ],
                                lifetime: Lifetime::Explicit(86_400),
                            };
                            let owner = clients[((machine + n) % clients.len() as u64) as usize];
                            store.place_bid(owner, &terms, now, None).unwrap();
                        }
                    }
                });
            }
        });
        ids
    })
    .await
    .unwrap();
    eprintln!(
        "set up {machines} machines × 50 bids in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        gigaspot_server::listener::serve_state(listener, state, std::future::pending())
            .await
            .unwrap()
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();

    println!("| benchmark | result |");
    println!("|---|---|");

    // 64 concurrent clients placing bids.
    let keys = clients(&http, &base).await;
    let per_client = 300;
    let bid = move |machine: u64| json!({"machine": machine, "price": 20.0, "image": "registry.example/app:1", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]});
    let ids = machine_ids.clone();
    let (rate, latencies) = post_load(
        &http,
        &format!("{base}/api/v1/bids"),
        &keys,
        per_client,
        move |i, n| bid(ids[(i * per_client + n) % ids.len()]),
    )
    .await;
    println!(
        "| bids created over HTTP, 64 concurrent clients | {rate:.0} bids/s (p50 {:.1} ms, p99 {:.1} ms) |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    // The reference: a bare axum handler answering 201 with a constant, same clients,
    // same requests, same machine, same run.
    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/api/v1/bids", bare.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/api/v1/bids",
        axum::routing::post(|| async { (axum::http::StatusCode::CREATED, "{}") }),
    );
    tokio::spawn(async move { axum::serve(bare, router).await.unwrap() });
    let ids = machine_ids.clone();
    let (bare_rate, bare_latencies) =
        post_load(&http, &bare_url, &keys, per_client, move |i, n| {
            bid(ids[(i * per_client + n) % ids.len()])
        })
        .await;
    println!(
        "| bare axum handler returning a constant, same load | {bare_rate:.0} requests/s (p50 {:.1} ms, p99 {:.1} ms); intake ÷ bare = {:.2} |",
        percentile(&bare_latencies, 0.5),
        percentile(&bare_latencies, 0.99),
        rate / bare_rate
    );

    // Plugin upload (import audit, compile, a first instance, store) of components the
    // server has never seen, then their activation.
    for guest in [
        "price-per-watt",
        "sticky-price-per-watt",
        "policy-validator",
        // A strategy with real dependencies (serde, a TOML parser): ~300 KB.
        "toml-weighted",
    ] {
        let wasm = gigaspot_tests::guest(guest);
        let size = wasm.len();
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/api/v1/plugins"))
            .bearer_auth(OPERATOR_KEY)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .unwrap();
        let upload = t.elapsed();
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        let digest = body["digest"].as_str().unwrap().to_owned();
        let t = Instant::now();
        let resp = http
            .post(format!("{base}/api/v1/plugins/{digest}/activate"))
            .bearer_auth(OPERATOR_KEY)
            .send()
            .await
            .unwrap();
        let activation = t.elapsed();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        println!(
            "| plugin upload of {guest} ({:.0} KB, new to the server) / its activation | {:.0} ms / {:.1} ms |",
            size as f64 / 1e3,
            upload.as_secs_f64() * 1e3,
            activation.as_secs_f64() * 1e3
        );
    }

    // get_gigaspot: the first call builds the snapshot, later calls in the same second reuse it.
    let reply: Value = http
        .post(format!("{base}/api/v1/accounts"))
        .json(&json!({"name": "bot", "roles": ["client"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = reply["api_key"].as_str().unwrap().to_owned();
    // Funded, so that its bids below are accepted and change the market.
    let resp = http
        .post(format!("{base}/api/v1/deposits"))
        .bearer_auth(OPERATOR_KEY)
        .json(
            &json!({"account": reply["account"]["id"], "amount": 1000.0, "reference": "bench-bot"}),
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let mut cold = Vec::new();
    let mut builds = Vec::new();
    let mut warm = Vec::new();
    let mut download = Vec::new();
    let mut size = 0;
    for machine in machine_ids.iter().take(5) {
        // A new second and a changed market make the next call build a new snapshot.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resp = http.post(format!("{base}/api/v1/bids"))
            .bearer_auth(&key)
            .json(&json!({"machine": machine, "price": 20.0, "image": "registry.example/app:1", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        let t = Instant::now();
        let reply: Value = http
            .get(format!("{base}/v1/get_gigaspot"))
            .header("auth", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cold.push(t.elapsed());
        builds.push(snapshots.last_build());
        for _ in 0..20 {
            let t = Instant::now();
            http.get(format!("{base}/v1/get_gigaspot"))
                .header("auth", &key)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            warm.push(t.elapsed());
        }
        let url = reply["v1_snapshot_url"].as_str().unwrap().to_owned();
        let t = Instant::now();
        size = http
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
        download.push(t.elapsed());
    }
    for v in [&mut cold, &mut warm, &mut download] {
        v.sort();
    }
    println!(
        "| get_gigaspot building a new snapshot, {machines} machines × 50 bids | p50 {:.0} ms, max {:.0} ms |",
        percentile(&cold, 0.5),
        percentile(&cold, 1.0)
    );
    let first = builds[0];
    let later = &builds[1..];
    println!(
        "| snapshot build, {machines} machines × 50 bids: the first after a start / after one new bid | {:.0} ms ({} machines serialized) / {:.0}–{:.0} ms ({}–{} serialized, {} reused) |",
        first.took.as_secs_f64() * 1e3,
        first.rebuilt,
        later.iter().map(|b| b.took).min().unwrap().as_secs_f64() * 1e3,
        later.iter().map(|b| b.took).max().unwrap().as_secs_f64() * 1e3,
        later.iter().map(|b| b.rebuilt).min().unwrap(),
        later.iter().map(|b| b.rebuilt).max().unwrap(),
        later[0].reused
    );
    println!(
        "| get_gigaspot with the snapshot current | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&warm, 0.5),
        percentile(&warm, 0.99)
    );
    // get_gigaspot while 64 clients write bids: the snapshot goes stale every second and
    // is rebuilt by one caller while the others get the one published before.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (http, base, key, writing) =
                (http.clone(), base.clone(), key.clone(), writing.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while writing.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let resp = http
                        .get(format!("{base}/v1/get_gigaspot"))
                        .header("auth", &key)
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success());
                    resp.bytes().await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let watcher = {
        let (snapshots, writing) = (snapshots.clone(), writing.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let b = snapshots.last_build();
                if seen.last() != Some(&b) {
                    seen.push(b);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let ids = machine_ids.clone();
    let (write_rate, _) = post_load(
        &http,
        &format!("{base}/api/v1/bids"),
        &keys,
        60,
        move |i, n| bid(ids[(i * 7919 + n * 31) % ids.len()]),
    )
    .await;
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let read = gather(readers).await;
    let mut seen = watcher.await.unwrap();
    seen.retain(|b| b.rebuilt < machines);
    let mut took: Vec<Duration> = seen.iter().map(|b| b.took).collect();
    took.sort();
    println!(
        "| get_gigaspot while 64 clients write bids ({write_rate:.0} bids/s), 4 readers | {} calls, p50 {:.2} ms, p99 {:.2} ms; {} snapshots built meanwhile, p50 {:.0} ms, max {:.0} ms ({}–{} machines serialized of {machines}) |",
        read.len(),
        percentile(&read, 0.5),
        percentile(&read, 0.99),
        took.len(),
        if took.is_empty() {
            0.0
        } else {
            percentile(&took, 0.5)
        },
        if took.is_empty() {
            0.0
        } else {
            percentile(&took, 1.0)
        },
        seen.iter().map(|b| b.rebuilt).min().unwrap_or(0),
        seen.iter().map(|b| b.rebuilt).max().unwrap_or(0),
    );
    println!(
        "| snapshot download ({:.1} MB) | p50 {:.0} ms |",
        size as f64 / 1e6,
        percentile(&download, 0.5)
    );
    // Agent heartbeats: every machine reports twice, 64 requests in flight. The first
    // round changes each machine's live state (the agent reports measured power and an
    // image cache); the second repeats it with new power readings, the steady state.
    let store = state_store.clone();
    for round in ["first (state changes)", "repeated (steady state)"] {
        let generation = store.generation();
        let started = Instant::now();
        let ids = std::sync::Arc::new(machine_ids.clone());
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (http, base, ids, next) =
                    (http.clone(), base.clone(), ids.clone(), next.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&machine) = ids.get(i) else { break };
                        let body = json!({"working": true, "running_bid": null,
                            "measured_power_w": [200 + i % 50, 201, 202, 203],
                            "cached_images": ["registry.example/app:1"]});
                        let t = Instant::now();
                        let resp = http
                            .post(format!("{base}/api/v1/agent/heartbeat"))
                            .bearer_auth(agent_token(machine))
                            .json(&body)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(resp.status(), reqwest::StatusCode::OK);
                        resp.bytes().await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let latencies = gather(tasks).await;
        let elapsed = started.elapsed();
        println!(
            "| agent heartbeats, {round}, 64 in flight | {:.0} heartbeats/s (p50 {:.1} ms, p99 {:.1} ms), {} store writes |",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            store.generation() - generation
        );
    }
    // Market history: 60 cleared intervals on every machine, then the dashboard's chart
    // route: computed once after a boundary, then served from memory until the next.
    let (store, registry) = (state_store.clone(), state_registry.clone());
    let cleared = tokio::task::spawn_blocking(move || {
        let engine = IntervalEngine::without_audit(store.as_ref(), registry.as_ref());
        let now = gigaspot_server::app::wall_clock();
        let started = Instant::now();
        for back in (0..60u64).rev() {
            engine.tick(now - back * 60).unwrap();
        }
        started.elapsed()
    })
    .await
    .unwrap();
    eprintln!("cleared 60 intervals in {:.1} s", cleared.as_secs_f64());
    let mut history = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let resp = http
            .get(format!("{base}/api/v1/market/history?limit=60"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        resp.bytes().await.unwrap();
        history.push(t.elapsed());
    }
    let first = history.remove(0);
    history.sort();
    // One more boundary: only the interval it finished is computed.
    let (store, registry) = (state_store.clone(), state_registry.clone());
    tokio::task::spawn_blocking(move || {
        let engine = IntervalEngine::without_audit(store.as_ref(), registry.as_ref());
        engine
            .tick(gigaspot_server::app::wall_clock() + 60)
            .unwrap();
    })
    .await
    .unwrap();
    let t = Instant::now();
    let resp = http
        .get(format!("{base}/api/v1/market/history?limit=60"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    resp.bytes().await.unwrap();
    let after_boundary = t.elapsed();
    println!(
        "| market history, 60 intervals × {machines} machines: first call after a start (nothing remembered) | {:.0} ms |",
        first.as_secs_f64() * 1e3
    );
    println!(
        "| market history: first call after a further boundary (one interval to add) | {:.0} ms |",
        after_boundary.as_secs_f64() * 1e3
    );
    println!(
        "| market history, later calls in the same interval | p50 {:.2} ms, p99 {:.2} ms |",
        percentile(&history, 0.5),
        percentile(&history, 0.99)
    );
}
