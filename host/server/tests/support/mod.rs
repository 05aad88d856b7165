//! A market served over real HTTP on loopback, with a controlled clock.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gigaspot_server::app::AppState;
use gigaspot_server::clearing_loop::run_boundary;
use gigaspot_server::config::Config;
use gigaspot_server::serve::prepare;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

pub const OPERATOR_KEY: &str = "gs_operator_key_for_tests_0123456789abcdef";
pub const T0: u64 = 1_800_000_000;

pub struct Market {
    pub base: String,
    pub http: Client,
    pub state: AppState,
    pub clock: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Market {
    /// Starts a market on 127.0.0.1, with `adjust` applied to the default configuration.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Market {
        Market::start_in(tempfile::tempdir().unwrap(), adjust).await
    }

    /// Starts a market on the data in `dir` (a restart when a market ran there before).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Market {
        let mut config = Config {
            data_dir: dir.path().join("data"),
            operator_key: Some(OPERATOR_KEY.into()),
            ..Config::default()
        };
        adjust(&mut config);
        let scheme = if config.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let (mut state, generated) = tokio::task::spawn_blocking(move || prepare(config))
            .await
            .unwrap()
            .unwrap();
        assert!(generated.is_none(), "the configured operator key is used");
        let clock = Arc::new(AtomicU64::new(T0));
        let c = clock.clone();
        state.clock = Arc::new(move || c.load(Ordering::SeqCst));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let served = state.clone();
        let server = tokio::spawn(async move {
            gigaspot_server::listener::serve_state(listener, served, std::future::pending())
                .await
                .unwrap();
        });
        Market {
            base,
            http: Client::new(),
            state,
            clock,
            server,
            _dir: dir,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A `/v1` POST with Clore's `auth` header.
    pub async fn call_v1(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("auth", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A `/v1` GET with Clore's `auth` header.
    pub async fn call_v1_get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("auth", key)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn register(&self, name: &str, roles: &[&str]) -> (u64, String) {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/accounts",
                None,
                Some(json!({"name": name, "roles": roles})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["account"]["id"].as_u64().unwrap(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn tick(&self, advance_s: u64) {
        self.clock.fetch_add(advance_s, Ordering::SeqCst);
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || run_boundary(&state))
            .await
            .unwrap()
            .unwrap();
    }

    /// The agent `agent` reports `bid` running with its settings applied every 10 s from
    /// now to the end of the current interval, so the interval is served whole from now
    /// (the clock is left where it was).
    pub async fn serve(&self, agent: &str, bid: u64) {
        let base = self.clock.load(Ordering::SeqCst);
        let clock = self.state.interval_clock().unwrap();
        let interval = clock.interval_at(base);
        let end = clock.start_of(interval + 1);
        let mut at = base;
        while at < end {
            self.clock.store(at, Ordering::SeqCst);
            let (status, body) = self
                .call(
                    "POST",
                    "/api/v1/agent/heartbeat",
                    Some(agent),
                    Some(json!({"working": true, "running_bid": bid, "applied": true})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            at += 10;
        }
        self.clock.store(base, Ordering::SeqCst);
    }

    /// The published Clore-style snapshot, as a bot reads it (`/v1/get_gigaspot`, then
    /// the snapshot URL it names).
    pub async fn snapshot(&self, key: &str) -> Value {
        let gigaspot: Value = self
            .http
            .get(format!("{}/v1/get_gigaspot", self.base))
            .header("auth", key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        self.http
            .get(gigaspot["v1_snapshot_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An idle agent's heartbeat (working, running nothing); answers the desired state.
    pub async fn idle_heartbeat(&self, agent: &str) -> Value {
        let (status, desired) = self
            .call(
                "POST",
                "/api/v1/agent/heartbeat",
                Some(agent),
                Some(json!({"working": true, "running_bid": null})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{desired}");
        desired
    }

    pub async fn balance(&self, key: &str) -> f64 {
        self.call("GET", "/api/v1/balance", Some(key), None).await.1["balance"]
            .as_f64()
            .unwrap()
    }

    /// Stops serving and lets go of the store, as a shutdown would.
    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops serving and lets go of the store; returns the data folder for a restart.
    pub async fn stop_keeping_data(self) -> tempfile::TempDir {
        let Market {
            http,
            server,
            state,
            _dir,
            ..
        } = self;
        drop(http);
        drop(state);
        server.abort();
        let _ = server.await;
        _dir
    }

    /// A host with one online 4-GPU machine (150–450 W, ceiling 400 W, free energy):
    /// (host key, machine id, agent token).
    pub async fn machine(&self) -> (String, u64, String) {
        self.machine_with_gpus(4).await
    }

    /// A host with one online machine of `count` such GPUs.
    pub async fn machine_with_gpus(&self, count: u32) -> (String, u64, String) {
        self.machine_with(count, 0.0).await
    }

    /// A host with one online machine of `count` such GPUs whose electricity costs
    /// `energy_price` USD per kWh.
    pub async fn machine_with(&self, count: u32, energy_price: f64) -> (String, u64, String) {
        let (_, host) = self.register("host", &["host"]).await;
        let gpus: Vec<Value> = (0..count)
            .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 450, "ceiling_w": 400}))
            .collect();
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/machines",
                Some(&host),
                Some(json!({"gpus": gpus, "energy_price": energy_price})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let machine = body["machine"]["id"].as_u64().unwrap();
        let agent = body["agent_token"].as_str().unwrap().to_owned();
        let (status, _) = self
            .call(
                "POST",
                "/api/v1/agent/heartbeat",
                Some(&agent),
                Some(json!({"working": true, "running_bid": null})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        (host, machine, agent)
    }

    /// Uploads the built guest `guest` with `config`, as `key`: (status, answer).
    pub async fn upload_plugin(&self, key: &str, guest: &str, config: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/plugins", self.base))
            .query(&[("config", config)])
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(gigaspot_tests::guest(guest))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json().await.unwrap_or(Value::Null))
    }

    /// Uploads `guest` with `config` and activates it as the operator; its version id.
    pub async fn install_and_activate(&self, guest: &str, config: &str) -> String {
        let (status, plugin) = self.upload_plugin(OPERATOR_KEY, guest, config).await;
        assert_eq!(status, StatusCode::CREATED, "{plugin}");
        let digest = plugin["digest"].as_str().unwrap().to_owned();
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/plugins/{digest}/activate"),
                Some(OPERATOR_KEY),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        digest
    }

    /// `GET /metrics`: checks the answer is Prometheus text 0.0.4 and returns it.
    pub async fn scrape(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        resp.text().await.unwrap()
    }

    /// A client with `clore` CLORE deposited: (id, key).
    pub async fn funded_client(&self, name: &str, clore: f64) -> (u64, String) {
        let (id, key) = self.register(name, &["client"]).await;
        if clore > 0.0 {
            let (status, body) = self
                .call("POST", "/api/v1/deposits", Some(OPERATOR_KEY), Some(json!({"account": id, "amount": clore, "reference": format!("seed-{name}")})))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        (id, key)
    }
}

/// Sends the request `build` makes, again when the connection is reset before the answer
/// could be read: the server answers an oversized body (413) without reading the rest and
/// closes the connection, and the kernel may then reset it under the client's feet.
pub async fn send_tolerating_reset(
    build: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Response {
    let mut last = None;
    for _ in 0..5 {
        match build().send().await {
            Ok(resp) => return resp,
            Err(e) if e.is_request() => last = Some(e),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no answer after 5 tries: {}", last.unwrap())
}
