//! The demo market itself: within its first minute the simulated clients cause switches
//! and billing; a stop and a second start on the same folder continue the same market;
//! every machine has its host's background job; the order client's standing order holds
//! machines within its cap and survives the restart, not placed twice.

use std::time::{Duration, Instant};

use gigaspot_demo::api::Api;
use gigaspot_demo::clients::{ORDER_CLIENT, ORDER_MODEL};
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

/// Every machine has a background job: an image, a power limit per GPU within the card's
/// range; its bid ceilings follow those limits unless the host set its own; the minimum
/// bid names its floor. No bid is ineligible for its power limits.
async fn assert_background_jobs(api: &Api) {
    let machines = api.get("/api/v1/machines", None).await.unwrap();
    let machines = machines.as_array().unwrap();
    assert_eq!(machines.len(), 5);
    let mut declared = 0;
    for m in machines {
        let job = &m["background_job"];
        assert!(
            job["image"].as_str().is_some_and(|i| !i.is_empty()),
            "machine {} has no background job: {m}",
            m["id"]
        );
        assert!(!job["revision"].as_str().unwrap().is_empty(), "{m}");
        assert!(!job["env_keys"].as_array().unwrap().is_empty(), "{m}");
        let gpus = m["gpus"].as_array().unwrap();
        let oc = job["oc"].as_array().unwrap();
        assert_eq!(oc.len(), gpus.len(), "one setting per GPU: {m}");
        for (g, o) in gpus.iter().zip(oc) {
            let pl = o["power_limit_w"].as_u64().unwrap();
            let (min, max) = (
                g["card_min_w"].as_u64().unwrap(),
                g["card_max_w"].as_u64().unwrap(),
            );
            assert!(
                (min..=max).contains(&pl),
                "{pl} W outside the card's range: {m}"
            );
            if m["explicit_ceilings"] == false {
                assert_eq!(
                    g["ceiling_w"], o["power_limit_w"],
                    "the ceiling follows: {m}"
                );
            }
        }
        assert!(
            ["reserve_price", "energy_floor", "background_earnings"]
                .contains(&m["min_bid_from"].as_str().unwrap()),
            "{m}"
        );
        if m["background_earnings"].as_f64().unwrap() > 0.0 {
            declared += 1;
        }
        let book = api
            .get(&format!("/api/v1/machines/{}/book", m["id"]), None)
            .await
            .unwrap();
        for entry in book["entries"].as_array().unwrap() {
            let reason = entry["reason"].as_str().unwrap_or("");
            assert!(
                !reason.contains(".pl"),
                "a demo bid over the machine's power limits: {entry}"
            );
        }
    }
    assert!(declared > 0, "some hosts declare background earnings");
    assert!(
        machines
            .iter()
            .any(|m| m["min_bid_from"] == "background_earnings"),
        "declared earnings set some minimum bid"
    );
}

/// The order client's standing orders.
async fn orders(api: &Api, key: &str) -> Vec<Value> {
    api.get("/api/v1/orders", Some(key))
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits (at most a minute) for the order client's one standing order to hold a machine,
/// then checks that every held bid is the client's own, on an RTX 4090 machine, at the
/// order's power, and priced within its cap. Answers the order's id.
async fn order_holds_machines_within_its_cap(api: &Api, key: &str) -> u64 {
    let started = Instant::now();
    let order = loop {
        let orders = orders(api, key).await;
        assert_eq!(orders.len(), 1, "one standing order: {orders:#?}");
        let order = orders[0].clone();
        assert!(
            ["active", "paused"].contains(&order["state"].as_str().unwrap()),
            "{order}"
        );
        if !order["machines"].as_array().unwrap().is_empty() {
            break order;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after a minute the standing order holds no machine: {order}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "the standing order holds {} after {:?}",
        order["machines"],
        started.elapsed()
    );
    assert_eq!(order["models"], serde_json::json!([ORDER_MODEL]));
    let per_kw = order["max_price_per_kw"].as_f64().unwrap();
    let bids = api.get("/api/v1/bids", Some(key)).await.unwrap();
    let bids = bids.as_array().unwrap();
    let machines = api.get("/api/v1/machines", None).await.unwrap();
    for held in order["machines"].as_array().unwrap() {
        let bid = bids
            .iter()
            .find(|b| b["id"] == held["bid"])
            .unwrap_or_else(|| panic!("held bid {held} is not among the client's bids"));
        assert!(
            order["bids"].as_array().unwrap().contains(&held["bid"]),
            "{order}"
        );
        assert_eq!(bid["machine"], held["machine"], "{bid}");
        let machine = machines
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == held["machine"])
            .unwrap();
        assert!(
            machine["gpus"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["model"] == ORDER_MODEL),
            "the order holds a machine of another model: {machine}"
        );
        let watts: u64 = bid["oc"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["pl"].as_u64().unwrap())
            .sum();
        let cap = per_kw * watts as f64 / 1000.0;
        let price = held["price"].as_f64().unwrap();
        assert!(
            price > 0.0 && price <= cap + 1e-8,
            "bid {} at {price} CLORE/day over the cap {cap} ({per_kw} per kW × {watts} W)",
            held["bid"]
        );
    }
    order["id"].as_u64().unwrap()
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
    assert_background_jobs(&api).await;
    let keys = demo.keys.clone();
    let order_client = keys
        .clients
        .iter()
        .find(|c| c.name == ORDER_CLIENT)
        .unwrap()
        .key
        .clone();
    let order = order_holds_machines_within_its_cap(&api, &order_client).await;
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
    assert_background_jobs(&api).await;
    // The order was stored, not placed again: the same one, still bidding.
    let after = orders(&api, &order_client).await;
    assert_eq!(
        after.len(),
        1,
        "the standing order is not duplicated: {after:#?}"
    );
    assert_eq!(after[0]["id"].as_u64(), Some(order), "{after:#?}");
    assert_eq!(
        order_holds_machines_within_its_cap(&api, &order_client).await,
        order
    );
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

/// The agent's side of the background job (issue 17, the reconciler): it runs the host's
/// job while no bid is assigned and reports it in its heartbeat. Without clients no bid
/// ever wins, so within a minute some machine's activity is `background`, its agent
/// reporting the job's current revision.
#[tokio::test(flavor = "multi_thread")]
async fn idle_demo_machines_run_their_background_job() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start(DemoOptions {
        plugins: None,
        clients: false,
        ..options(dir.path())
    })
    .await
    .unwrap();
    let api = Api::new(&demo.url);
    let started = Instant::now();
    let machine = loop {
        let machines = api.get("/api/v1/machines", None).await.unwrap();
        let running = machines.as_array().unwrap().iter().find(|m| {
            m["activity"] == "background"
                && m["agent"]["background"]["revision"] == m["background_job"]["revision"]
        });
        if let Some(m) = running {
            break m.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after a minute no idle machine runs its background job: {machines:#}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "machine {} runs its background job after {:?}: {}",
        machine["id"],
        started.elapsed(),
        machine["agent"]["background"]
    );
    assert_eq!(machine["agent"]["background"]["state"], "running");
    assert!(machine["current_bid"].is_null());
    demo.shutdown().await;
}
