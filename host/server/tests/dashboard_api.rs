//! The dashboard's public views over real HTTP: the order book ranked as the strategy
//! ranked it, a machine's switch history, prices and host revenue per interval, and the
//! bundled assets.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Market;

fn oc(pl: u32) -> Value {
    json!([{"pl": pl}, {"pl": pl}, {"pl": pl}, {"pl": pl}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_book_history_and_market_history_follow_the_clearing() {
    let m = Market::start(|_| {}).await;
    let (host, machine, agent) = m.machine().await;
    let (_, alice) = m.funded_client("alice", 1000.0).await;
    let (_, bob) = m.funded_client("bob", 1000.0).await;
    let place = |key: String, price: f64, pl: u32| {
        let m = &m;
        async move {
            let (status, bid) = m
                .call("POST", "/api/v1/bids", Some(&key), Some(json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": oc(pl)})))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{bid}");
            bid["id"].as_u64().unwrap()
        }
    };
    // Alice: 100 CLORE for 1,200 W; Bob: 60 CLORE for 600 W — better per watt.
    let alice_bid = place(alice.clone(), 100.0, 300).await;
    let bob_bid = place(bob.clone(), 60.0, 150).await;

    // Before any clearing both are pending, best price per kW first.
    let (status, book) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/book"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{book}");
    let statuses: Vec<(u64, &str)> = book["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["bid"].as_u64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, vec![(bob_bid, "pending"), (alice_bid, "pending")]);

    m.tick(60).await;
    let (_, book) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/book"),
            None,
            None,
        )
        .await;
    let entries = book["entries"].as_array().unwrap();
    assert_eq!(entries[0]["bid"], json!(bob_bid));
    assert_eq!(entries[0]["status"], json!("winner"));
    assert_eq!(entries[0]["rank"], json!(1));
    assert_eq!(entries[0]["power_w"], json!(600));
    assert_eq!(entries[0]["price_per_kw"], json!(100.0));
    assert_eq!(entries[1]["status"], json!("scored"));
    assert_eq!(entries[1]["rank"], json!(2));
    assert!(entries[0]["score"].as_f64().unwrap() > entries[1]["score"].as_f64().unwrap());
    assert_eq!(book["strategy"]["digest"], json!("native:price-per-watt"));

    // The agent serves Bob's interval; Alice outbids him per watt and the machine switches.
    m.serve(&agent, bob_bid).await;
    let (status, _) = m
        .call(
            "PATCH",
            &format!("/api/v1/bids/{alice_bid}"),
            Some(&alice),
            Some(json!({"price": 300.0, "oc": oc(300)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    m.tick(60).await;

    let (status, history) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/history?limit=10"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["winner"], json!(alice_bid));
    assert_eq!(history[0]["previous"], json!(bob_bid));
    assert_eq!(history[0]["switched"], json!(true));
    assert_eq!(history[0]["price"], json!(300.0));
    assert_eq!(history[0]["price_per_kw"], json!(250.0));
    assert_eq!(history[1]["winner"], json!(bob_bid));
    assert!(history[0]["interval"].as_u64().unwrap() > history[1]["interval"].as_u64().unwrap());

    let (status, market) = m
        .call("GET", "/api/v1/market/history?limit=3", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{market}");
    assert_eq!(market["interval_s"], json!(60));
    let intervals = market["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 3);
    let first = &intervals[1];
    assert_eq!(first["running"], json!(1));
    assert_eq!(first["avg_price"], json!(60.0));
    // Bob's served interval: 60 CLORE/day for 60 s, less the 2.5 % fee, to the host.
    let host_id = m
        .call("GET", "/api/v1/accounts/me", Some(&host), None)
        .await
        .1["id"]
        .as_u64()
        .unwrap();
    let cost = 6_000_000_000u64 * 60 / 86_400;
    let net = cost - cost * 250 / 10_000;
    assert_eq!(
        first["revenue_by_host"][host_id.to_string()],
        json!(net as f64 / 1e8)
    );
    assert_eq!(market["hosts"][host_id.to_string()], json!("host"));
    assert_eq!(intervals[2]["avg_price"], json!(300.0));
    // Computed once per boundary: the same answer until the next one moves the window.
    let (_, again) = m
        .call("GET", "/api/v1/market/history?limit=3", None, None)
        .await;
    assert_eq!(again, market);
    m.tick(60).await;
    let (_, moved) = m
        .call("GET", "/api/v1/market/history?limit=3", None, None)
        .await;
    assert_eq!(
        moved["intervals"][2]["interval"].as_u64().unwrap(),
        intervals[2]["interval"].as_u64().unwrap() + 1
    );
    assert_eq!(moved["intervals"][1], intervals[2], "{moved}");

    // Bad input is a 4xx naming the field; an unknown machine is a 404.
    let (status, body) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/history?limit=0"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], json!("limit"));
    let (status, _) = m
        .call("GET", "/api/v1/market/history?limit=abc", None, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = m.call("GET", "/api/v1/machines/999/book", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_from_the_binary() {
    let m = Market::start(|_| {}).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(format!("{}/", m.base)).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(root.headers()["location"], "/dashboard/");
    for (path, kind) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
    ] {
        let resp = client
            .get(format!("{}{path}", m.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let text = resp.text().await.unwrap();
        for external in ["src=\"http", "href=\"http", "url(http", "import(\"http"] {
            assert!(
                !text.contains(external),
                "{path} loads from elsewhere: {external}"
            );
        }
    }
    let (status, _) = m.call("GET", "/dashboard/secret.txt", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_decisions_stay_in_the_history_and_the_latest_stays_whole() {
    // A one-interval window: everything but the two newest intervals is compacted after
    // each boundary.
    let m = Market::start(|c| c.decision_retention_s = 60).await;
    let (_, machine, _agent) = m.machine().await;
    let (_, alice) = m.funded_client("alice", 1000.0).await;
    let (_, bob) = m.funded_client("bob", 1000.0).await;
    let mut winners = Vec::new();
    for (key, price) in [(&alice, 100.0), (&bob, 200.0)] {
        let (status, bid) = m
            .call("POST", "/api/v1/bids", Some(key), Some(json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": oc(300)})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bid}");
        winners.push(bid["id"].as_u64().unwrap());
    }
    for _ in 0..6 {
        m.tick(60).await;
    }
    let (status, history) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/history?limit=50"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 6, "{history:?}");
    for entry in history {
        assert_eq!(entry["winner"], json!(winners[1]), "{entry}");
        assert_eq!(entry["price"], json!(200.0));
        assert_eq!(entry["candidates"], json!(2));
    }
    // Only the two newest intervals keep their full records...
    let full: Vec<bool> = {
        let state = m.state.clone();
        let intervals: Vec<u64> = history
            .iter()
            .map(|e| e["interval"].as_u64().unwrap())
            .collect();
        intervals
            .iter()
            .map(|k| {
                gigaspot_store::Store::decision(state.store.as_ref(), machine, *k)
                    .unwrap()
                    .is_some()
            })
            .collect()
    };
    assert_eq!(full, [true, true, false, false, false, false]);
    // ...and the latest decision and the order book's reasons read them as before.
    let (status, decision) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["verdicts"].as_array().unwrap().len(), 2);
    let (status, book) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/book"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{book}");
    assert_eq!(book["entries"][1]["status"], json!("scored"));
}
