//! A complete local GigaSPOT market in one process, for newcomers and for the dashboard's
//! browser tests: the real server (sled in a data directory, the default plugins, the
//! interval clock), one real agent per machine on simulated GPUs with the `none` container
//! backend, and simulated clients that place, raise, re-tune and cancel bids, one of them
//! through a standing order.
//!
//! A second start on the same data directory reuses the market and its keys
//! (`demo-keys.json`).

pub mod api;
pub mod clients;
pub mod keys;
pub mod population;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gigaspot_agent::config::{AgentConfig, ContainerBackend};
use gigaspot_server::app::AppState;
use gigaspot_server::config::Config;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use api::Api;
use keys::DemoKeys;

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Holds the market (`market/`) and the keys (`demo-keys.json`).
    pub data_dir: PathBuf,
    /// Where the server listens; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Billing interval, seconds (10 at least).
    pub interval_s: u32,
    /// The folder of the first-party plugin components (`price_per_watt.wasm`,
    /// `policy_validator.wasm`, `net_profit.wasm`), installed on the first start; `None`
    /// runs the built-in price-per-watt fallback.
    pub plugins: Option<PathBuf>,
    /// Whether the simulated clients trade.
    pub clients: bool,
    /// A PostgreSQL database for the market: the demo then runs two replicas of the
    /// service on it (the second on a free port), agents and clients spread over both.
    pub database_url: Option<String>,
}

/// A running demo.
pub struct Demo {
    /// Base URL of the server (the first replica's).
    pub url: String,
    /// Base URLs of every replica (one unless the market is in PostgreSQL).
    pub urls: Vec<String>,
    /// Everyone the demo created.
    pub keys: DemoKeys,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    servers: Vec<JoinHandle<()>>,
    clearing: Vec<JoinHandle<()>>,
    /// Kept to know when every other handle on the stores has gone.
    states: Vec<AppState>,
}

/// The demo validator's policy: a denied image family and a floor on price per watt, so
/// that the order books show validator rejections next to scores.
const POLICY: &str = "image-deny = registry.example/miner/*\nmin-price-per-watt = 0.02";

fn server_config(options: &DemoOptions, operator: &str, replica: usize) -> Config {
    Config {
        bind: options.bind,
        // On PostgreSQL each replica's folder holds only its compiled-plugin cache.
        data_dir: options.data_dir.join(match replica {
            0 => "market".to_string(),
            n => format!("replica-{n}"),
        }),
        billing_interval_s: Some(options.interval_s),
        operator_key: Some(operator.to_owned()),
        database_url: options.database_url.clone(),
        // The second replica comes up quickly when the first stops.
        lease_ttl_s: 6,
        ..Config::default()
    }
}

/// A replica of the service: serving on `bind` and clearing (when it holds the lease).
async fn replica(
    config: Config,
    bind: SocketAddr,
    stopped: &watch::Receiver<bool>,
) -> Result<(String, AppState, JoinHandle<()>, JoinHandle<()>)> {
    let (state, _) =
        tokio::task::spawn_blocking(move || gigaspot_server::serve::prepare(config)).await??;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut server_stop = stopped.clone();
    let served = state.clone();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = gigaspot_server::listener::serve_state(listener, served, shutdown).await {
            tracing::error!("server: {e:#}");
        }
    });
    let clearing = tokio::spawn(gigaspot_server::clearing_loop::run(state.clone()));
    Ok((url, state, server, clearing))
}

/// Installs the plugins the way an operator does, through the API, so that the operator's
/// panel has versions to show and swap: the price-per-watt strategy and the policy
/// validator are activated, the net-profit strategy is stored beside them. The server
/// restores the active versions on the next start.
async fn install_plugins(api: &Api, operator: &str, dir: &Path) -> Result<()> {
    for (file, config, activate) in [
        ("net_profit.wasm", "", false),
        ("price_per_watt.wasm", "", true),
        ("policy_validator.wasm", POLICY, true),
    ] {
        let path = dir.join(file);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let digest = api.upload_plugin(operator, wasm, config).await?;
        if activate {
            api.post(
                &format!("/api/v1/plugins/{digest}/activate"),
                Some(operator),
                &serde_json::json!({}),
            )
            .await?;
        }
    }
    Ok(())
}

/// Starts the market, its agents and its clients.
pub async fn start(options: DemoOptions) -> Result<Demo> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let keys_path = options.data_dir.join("demo-keys.json");
    let saved = DemoKeys::load(&keys_path)?;
    let operator = saved
        .as_ref()
        .map(|k| k.operator.clone())
        .unwrap_or_else(gigaspot_server::auth::generate_key);
    let (stop, stopped) = watch::channel(false);
    let replicas = if options.database_url.is_some() { 2 } else { 1 };
    let (mut urls, mut states, mut servers, mut clearing) = (vec![], vec![], vec![], vec![]);
    for n in 0..replicas {
        let bind = if n == 0 {
            options.bind
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let (url, state, server, clears) =
            replica(server_config(&options, &operator, n), bind, &stopped).await?;
        urls.push(url);
        states.push(state);
        servers.push(server);
        clearing.push(clears);
    }
    let url = urls[0].clone();
    let api = Api::new(&url);
    let keys = match saved {
        Some(keys) => keys,
        None => {
            if let Some(dir) = &options.plugins {
                install_plugins(&api, &operator, dir).await?;
            }
            let keys = population::create(&api, &operator).await?;
            keys.save(&keys_path)?;
            keys
        }
    };
    let mut tasks = Vec::new();
    for (n, machine) in keys.machines.iter().enumerate() {
        let config = AgentConfig {
            // Spread over the replicas.
            server: urls[n % urls.len()].clone(),
            token: machine.token.clone(),
            gpu: format!("simulated:{}", machine.gpus),
            containers: ContainerBackend::None,
            grace_s: 1,
            heartbeat_s: 2,
            ..AgentConfig::default()
        };
        let stop = stopped.clone();
        let id = machine.id;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = gigaspot_agent::run(config, stop).await {
                tracing::error!("agent of machine {id}: {e:#}");
            }
        }));
    }
    if options.clients {
        for (seed, client) in keys.clients.iter().enumerate() {
            let api = Api::new(&urls[seed % urls.len()]);
            if client.name == clients::ORDER_CLIENT {
                // Placed on the first start; later starts find it stored.
                let order = clients::ensure_order(&api, client).await?;
                tasks.push(tokio::spawn(clients::watch_order(
                    api,
                    client.clone(),
                    order,
                    stopped.clone(),
                )));
                continue;
            }
            tasks.push(tokio::spawn(clients::run(
                api,
                client.clone(),
                seed as u64 + 1,
                stopped.clone(),
            )));
        }
    }
    Ok(Demo {
        url,
        urls,
        keys,
        stop,
        tasks,
        servers,
        clearing,
        states,
    })
}

impl Demo {
    /// Stops the clients and agents, then the server, and returns once the store is
    /// closed (flushed, its lock released), so that the same folder can be opened again.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            // Each stops within one heartbeat or client step.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for clearing in self.clearing {
            clearing.abort();
            let _ = clearing.await;
        }
        // The served time confirmed since the last write is kept for the next start.
        for state in &self.states {
            let flushing = state.clone();
            match tokio::task::spawn_blocking(move || {
                gigaspot_server::clearing_loop::flush_served_time(&flushing)
            })
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("writing the served time at shutdown failed: {e}"),
                Err(e) => tracing::warn!("writing the served time at shutdown failed: {e}"),
            }
        }
        for server in self.servers {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(15), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // Requests still finishing (a clearing or a store call on the blocking pool) hold
        // the store a moment longer.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let in_use = |states: &[AppState]| states.iter().any(|s| Arc::strong_count(&s.store) > 1);
        while in_use(&self.states) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if in_use(&self.states) {
            tracing::warn!("the store is still in use; it closes when the last request ends");
        }
    }
}
