//! Durable bid intake over HTTP on PostgreSQL, through one replica and through two on the
//! same database, beside sled in the same run (numbers recorded in docs/http-service.md).
//! A private PostgreSQL server is started as the tests start it (Debian's `postgresql`).
//!
//! `cargo bench -p gigaspot-server --bench replicas` (add `-- --machines N`, default 300).

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{OPERATOR_KEY, clients, percentile, post_load_spread, spec};
use gigaspot_market::account::Role;
use gigaspot_server::app::AppState;
use gigaspot_server::config::Config;
use gigaspot_server::serve::prepare;
use gigaspot_store::Store;
use serde_json::json;

/// The allocator the service runs with (`gigaspot serve`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bids each of the 64 clients places.
const PER_CLIENT: usize = 100;

/// Starts a service (sled in a folder of its own, or the database at `url`) on a loopback
/// port: its base URL and state.
async fn serve(data: &std::path::Path, url: Option<String>) -> (String, AppState) {
    let config = Config {
        data_dir: data.to_path_buf(),
        operator_key: Some(OPERATOR_KEY.into()),
        rate_limit_per_minute: 0,
        anonymous_rate_limit_per_minute: 0,
        database_url: url,
        ..Config::default()
    };
    let (state, _) = tokio::task::spawn_blocking(move || prepare(config))
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    tokio::spawn(async move {
        gigaspot_server::listener::serve_state(listener, serving, std::future::pending())
            .await
            .unwrap()
    });
    (base, state)
}

/// `machines` online machines in `store`.
async fn machines(store: Arc<dyn Store>, machines: usize) -> Vec<u64> {
    tokio::task::spawn_blocking(move || {
        let host = store.create_account("host", &[Role::Host]).unwrap().id;
        (0..machines)
            .map(|_| {
                let m = store.register_machine(spec(host)).unwrap();
                gigaspot_store::testing::bring_online(store.as_ref(), m.id).unwrap();
                m.id
            })
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: usize = args
        .iter()
        .position(|a| a == "--machines")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let server = gigaspot_tests::postgres::Postgres::start();
    let url = server.fresh_database();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (sled_base, sled) = serve(dirs[0].path(), None).await;
    let (pg_a, pg) = serve(dirs[1].path(), Some(url.clone())).await;
    let (pg_b, _) = serve(dirs[2].path(), Some(url)).await;
    let setup = Instant::now();
    let sled_machines = machines(sled.store.clone(), count).await;
    let pg_machines = machines(pg.store.clone(), count).await;
    eprintln!(
        "set up {count} machines on sled and on PostgreSQL in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .unwrap();
    let sled_keys = clients(&http, &sled_base).await;
    let pg_keys = clients(&http, &pg_a).await;

    println!("| benchmark | result |");
    println!("|---|---|");
    // (what, the replicas' base URLs, the clients' keys, the machines bid on)
    type Run<'a> = (&'a str, Vec<String>, &'a [String], &'a [u64]);
    let runs: [Run; 3] = [
        (
            "sled, one service",
            vec![sled_base],
            &sled_keys,
            &sled_machines,
        ),
        (
            "PostgreSQL, one replica",
            vec![pg_a.clone()],
            &pg_keys,
            &pg_machines,
        ),
        (
            "PostgreSQL, two replicas (clients alternate)",
            vec![pg_a, pg_b],
            &pg_keys,
            &pg_machines,
        ),
    ];
    for (name, bases, keys, ids) in runs {
        let urls: Vec<String> = bases.iter().map(|b| format!("{b}/api/v1/bids")).collect();
        let ids = ids.to_vec();
        let (rate, latencies) = post_load_spread(&http, &urls, keys, PER_CLIENT, move |i, n| {
            let machine = ids[(i * PER_CLIENT + n) % ids.len()];
            json!({"machine": machine, "price": 20.0, "image": "registry.example/app:1", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]})
        })
        .await;
        println!(
            "| bids created over HTTP, 64 concurrent clients, {name} | {rate:.0} bids/s (p50 {:.1} ms, p99 {:.1} ms) |",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    let audit = tokio::task::spawn_blocking(move || pg.store.audit())
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "PostgreSQL ledger audit passed ({} transfers)",
        audit.transfers
    );
}
