//! The demo market itself: within its first minute the simulated clients cause switches
//! and billing; a stop and a second start on the same folder continue the same market.

use std::time::{Duration, Instant};

use gigaspot_demo::api::Api;
use gigaspot_demo::{DemoOptions, start};
use gigaspot_store::Store;
use serde_json::Value;

fn options(dir: &std::path::Path) -> DemoOptions {
    DemoOptions {
        data_dir: dir.to_path_buf(),
        bind: "127.0.0.1:0".parse().unwrap(),
        interval_s: 10,
        plugins: Some(gigaspot_tests::guest_dir().to_path_buf()),
        clients: true,
        database_url: None,
    }
}

/// Switches with an earlier workload (interruptions) and the revenue charged so far.
async fn activity(api: &Api) -> (usize, f64) {
    let machines = api.get("/api/v1/machines", None).await.unwrap();
    let mut interruptions = 0;
    for m in machines.as_array().unwrap() {
        let history = api
            .get(
                &format!("/api/v1/machines/{}/history?limit=20", m["id"]),
                None,
            )
            .await
            .unwrap();
        interruptions += history
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["switched"] == true && !h["previous"].is_null())
            .count();
    }
    let market = api
        .get("/api/v1/market/history?limit=10", None)
        .await
        .unwrap();
    let revenue: f64 = market["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["revenue_by_host"]
                .as_object()
                .unwrap()
                .values()
                .map(Value::as_f64)
        })
        .map(Option::unwrap)
        .sum();
    (interruptions, revenue)
}

#[tokio::test(flavor = "multi_thread")]
async fn switches_and_billing_happen_in_the_first_minute_and_a_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start(options(dir.path())).await.unwrap();
    assert_eq!(demo.keys.machines.len(), 5);
    let api = Api::new(&demo.url);
    let started = Instant::now();
    let (interruptions, revenue) = loop {
        let (interruptions, revenue) = activity(&api).await;
        if interruptions > 0 && revenue > 0.0 {
            break (interruptions, revenue);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after a minute: {interruptions} interruptions, {revenue} CLORE charged"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "{interruptions} interruptions and {revenue} CLORE charged after {:?}",
        started.elapsed()
    );
    let models: std::collections::BTreeSet<String> = api
        .get("/api/v1/machines", None)
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["gpus"][0]["model"].as_str().unwrap().to_owned())
        .collect();
    assert!(models.len() >= 3, "mixed GPU models: {models:?}");
    let keys = demo.keys.clone();
    let operator = keys.operator.clone();
    let ledger_before = api
        .get("/api/v1/ledger", Some(&keys.clients[0].key))
        .await
        .unwrap();
    demo.shutdown().await;

    // A second start: the same keys, the same machines, the ledger kept and growing.
    let again = start(options(dir.path())).await.unwrap();
    assert_eq!(again.keys.operator, operator);
    assert_eq!(
        again.keys.machines.iter().map(|m| m.id).collect::<Vec<_>>(),
        keys.machines.iter().map(|m| m.id).collect::<Vec<_>>()
    );
    let api = Api::new(&again.url);
    let machines = api.get("/api/v1/machines", None).await.unwrap();
    assert_eq!(
        machines.as_array().unwrap().len(),
        5,
        "no machine registered twice"
    );
    let ledger_after = api
        .get("/api/v1/ledger", Some(&keys.clients[0].key))
        .await
        .unwrap();
    assert!(ledger_after.as_array().unwrap().len() >= ledger_before.as_array().unwrap().len());
    again.shutdown().await;

    // The market's history replays bit for bit: the recorded WebAssembly versions on the
    // recorded inputs give every recorded score, rejection and winner.
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(gigaspot_store::SledStore::open(dir.path().join("market")).unwrap());
    let runtime = std::sync::Arc::new(
        gigaspot_plugin_runtime::PluginRuntime::new(
            gigaspot_plugin_runtime::PluginLimits::default(),
            gigaspot_plugin_runtime::ArtifactCache::in_memory(),
        )
        .unwrap(),
    );
    let versions = gigaspot_server::plugin_versions::PluginVersions::new(runtime, store.clone());
    let (first, last) = store.recorded_intervals().unwrap().unwrap();
    let report =
        gigaspot_server::replay::replay(&*store, &versions, first, last, |_, _| true).unwrap();
    println!(
        "replayed {} clearings of {} intervals",
        report.replayed, report.intervals
    );
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert!(report.intervals >= 2 && report.replayed >= 10, "{report:?}");
    // What was replayed ran in the sandbox: the demo's WebAssembly strategy and validator.
    let decision = &store.recorded_clearings(last).unwrap()[0].decision;
    assert!(
        decision
            .strategy
            .as_ref()
            .unwrap()
            .digest
            .starts_with("sha256:")
    );
    assert!(!decision.validators.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgresql_two_replicas_run_the_demo_market_and_both_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = gigaspot_tests::postgres::Postgres::shared().fresh_database();
    let demo = start(DemoOptions {
        database_url: Some(url),
        ..options(dir.path())
    })
    .await
    .unwrap();
    assert_eq!(demo.urls.len(), 2);
    // Agents and clients use both replicas; the second shows what the market did.
    let api = Api::new(&demo.urls[1]);
    let started = Instant::now();
    loop {
        let (interruptions, revenue) = activity(&api).await;
        if interruptions > 0 && revenue > 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after a minute on PostgreSQL: {interruptions} interruptions, {revenue} CLORE charged"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let first = Api::new(&demo.urls[0])
        .get("/api/v1/machines", None)
        .await
        .unwrap();
    let second = api.get("/api/v1/machines", None).await.unwrap();
    assert_eq!(
        first.as_array().unwrap().len(),
        second.as_array().unwrap().len()
    );
    demo.shutdown().await;
}
