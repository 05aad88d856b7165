//! Standing orders on a live server: several machines of different models and prices,
//! manual bidders beside the order; the order holds the cheapest machines it can win,
//! moves when outbid, says why it holds fewer, pauses on its budget and cancels its bids.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Market;

const RTX4090: &str = "NVIDIA GeForce RTX 4090";
const RTX3090: &str = "NVIDIA GeForce RTX 3090";

/// A one-GPU machine of `model` (150–450 W) at `reserve` CLORE/day, free energy, online.
async fn machine(m: &Market, host: &str, model: &str, reserve: u64) -> (u64, String) {
    let body = json!({
        "gpus": [{"model": model, "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 450}],
        "energy_price": 0.0,
        "reserve_price": reserve,
    });
    let (status, created) = m
        .call("POST", "/api/v1/machines", Some(host), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["machine"]["id"].as_u64().unwrap();
    let agent = created["agent_token"].as_str().unwrap().to_owned();
    heartbeat(m, &agent).await;
    (id, agent)
}

async fn heartbeat(m: &Market, agent: &str) {
    m.idle_heartbeat(agent).await;
}

async fn order(m: &Market, key: &str, id: u64) -> Value {
    let (status, body) = m
        .call("GET", &format!("/api/v1/orders/{id}"), Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The machines the order holds, with the bid prices, sorted by machine.
fn held(order: &Value) -> Vec<(u64, f64, bool)> {
    let mut out: Vec<(u64, f64, bool)> = order["machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["machine"].as_u64().unwrap(),
                h["price"].as_f64().unwrap(),
                h["winning"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort_by_key(|h| h.0);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_holds_the_cheapest_winnable_machines_moves_when_outbid_and_says_why() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (m1, _) = machine(&m, &host, RTX4090, 10).await;
    let (m2, _) = machine(&m, &host, RTX4090, 20).await;
    let (m3, _) = machine(&m, &host, RTX4090, 30).await;
    // The cheapest machine of all is not a model the order accepts.
    let (m4, _) = machine(&m, &host, RTX3090, 5).await;
    let (_, alice) = m.funded_client("alice", 1000.0).await;
    let (_, bob) = m.funded_client("bob", 1000.0).await;

    // 2 × RTX 4090 at 300 W, at most 200 CLORE/day per kW: 60 CLORE/day per machine.
    let (status, created) = m
        .call(
            "POST",
            "/api/v1/orders",
            Some(&alice),
            Some(json!({"count": 2, "models": [RTX4090], "pl_w": 300, "image": "registry.example/train:1", "max_price_per_kw": 200, "lifetime_s": 86400})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["state"], json!("active"));
    assert!(created["machines"].as_array().unwrap().is_empty());

    // At the boundary it bids on the two cheapest 4090s at exactly their floors, and wins.
    m.tick(0).await;
    let o = order(&m, &alice, id).await;
    assert_eq!(held(&o), vec![(m1, 10.0, true), (m2, 20.0, true)], "{o}");
    assert_eq!(o["note"], Value::Null, "{o}");
    // Its bids are ordinary bids of the client.
    let (_, bids) = m.call("GET", "/api/v1/bids", Some(&alice), None).await;
    let bids = bids.as_array().unwrap();
    assert_eq!(bids.len(), 2);
    assert!(
        bids.iter().all(|b| b["oc"][0]["pl"] == json!(300)),
        "{bids:?}"
    );
    assert!(
        bids.iter()
            .all(|b| b["image"] == json!("registry.example/train:1"))
    );
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{m4}"), None, None)
        .await;
    assert_eq!(shown["current_bid"], Value::Null, "a 3090 is not asked for");

    // Bob outbids it on m1 by a wide margin: winning m1 back would cost more than m3.
    let (status, bob_bid) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&bob),
            Some(json!({"machine": m1, "price": 50, "image": "registry.example/app:1", "oc": [{"pl": 300}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob_bid}");
    m.tick(60).await;
    let o = order(&m, &alice, id).await;
    assert_eq!(held(&o), vec![(m2, 20.0, true), (m3, 30.0, true)], "{o}");
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{m1}"), None, None)
        .await;
    assert_eq!(shown["current_bid"], bob_bid["id"]);
    // The bid it left is cancelled, not left to lose.
    let (_, bids) = m.call("GET", "/api/v1/bids", Some(&alice), None).await;
    let cancelled = bids
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == json!("cancelled"))
        .count();
    assert_eq!(cancelled, 1, "{bids}");

    // Bob raises m2 just above the order: the order beats him by the least it takes (one
    // base unit over his price per watt at the same watts), still within its cap.
    let (status, bob2) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&bob),
            Some(json!({"machine": m2, "price": 25, "image": "registry.example/app:1", "oc": [{"pl": 300}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob2}");
    m.tick(60).await;
    let o = order(&m, &alice, id).await;
    let h = held(&o);
    assert_eq!(h.len(), 2, "{o}");
    assert_eq!(h[0].0, m2);
    assert!(
        (h[0].1 - 25.00000001).abs() < 1e-9,
        "the minimum over Bob's 25: {o}"
    );
    assert!(h.iter().all(|x| x.2), "{o}");
    assert!(h.iter().all(|x| x.1 <= 60.0), "never above the cap: {o}");

    // Counting GPUs: Dave wants 1 GPU and gets the cheapest machine left (the 3090 is
    // not excluded: any model), and none more.
    let (_, dave) = m.funded_client("dave", 1000.0).await;
    let (status, by_gpus) = m
        .call(
            "POST",
            "/api/v1/orders",
            Some(&dave),
            Some(json!({"gpus": 1, "pl_w": 300, "image": "registry.example/x:1", "max_price_per_day": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_gpus}");
    assert_eq!(by_gpus["unit"], json!("gpus"));
    m.tick(60).await;
    let o = order(&m, &dave, by_gpus["id"].as_u64().unwrap()).await;
    assert_eq!(held(&o), vec![(m4, 5.0, true)], "{o}");
    let (status, cancelled) = m
        .call(
            "DELETE",
            &format!("/api/v1/orders/{}", o["id"]),
            Some(&dave),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    m.tick(60).await;

    // A second client's limits are below every machine's winning price: it holds none
    // and says what the cheapest one needs.
    let (_, carol) = m.funded_client("carol", 1000.0).await;
    let (status, low) = m
        .call(
            "POST",
            "/api/v1/orders",
            Some(&carol),
            Some(json!({"count": 1, "pl_fraction": 0.5, "image": "registry.example/x:1", "max_price_per_day": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{low}");
    let low_id = low["id"].as_u64().unwrap();
    m.tick(60).await;
    let o = order(&m, &carol, low_id).await;
    assert!(o["machines"].as_array().unwrap().is_empty(), "{o}");
    let note = o["note"].as_str().unwrap();
    assert!(
        note.contains("holds 0 of 1") && note.contains("needs 5 CLORE/day"),
        "the 3090's floor is the cheapest: {note}"
    );
    // Others cannot read it.
    let (status, _) = m
        .call(
            "GET",
            &format!("/api/v1/orders/{low_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Cancelling the order cancels its bids.
    let (status, cancelled) = m
        .call(
            "DELETE",
            &format!("/api/v1/orders/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], json!("cancelled"));
    let (_, bids) = m.call("GET", "/api/v1/bids", Some(&alice), None).await;
    assert!(
        bids.as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == json!("cancelled")),
        "{bids}"
    );
    m.tick(60).await;
    let (_, bids) = m.call("GET", "/api/v1/bids", Some(&alice), None).await;
    assert!(
        bids.as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == json!("cancelled")),
        "a cancelled order places nothing: {bids}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_orders_are_refused_naming_the_field_and_a_spent_budget_pauses_the_order() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (machine_id, agent) = machine(&m, &host, RTX4090, 10).await;
    let (_, alice) = m.funded_client("alice", 1000.0).await;
    let base = json!({"count": 1, "pl_w": 300, "image": "registry.example/train:1", "max_price_per_kw": 200});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        if v.is_null() {
            b.as_object_mut().unwrap().remove(k);
        } else {
            b[k] = v;
        }
        b
    };
    for (body, field) in [
        (with("count", json!(0)), "count"),
        (with("count", json!(65)), "count"),
        (with("count", Value::Null), "count"),
        (with("gpus", json!(2)), "gpus"),
        (with("pl_w", Value::Null), "pl_w"),
        (with("pl_fraction", json!(0.5)), "pl_fraction"),
        (with("max_price_per_kw", Value::Null), "max_price_per_kw"),
        (
            with("max_price_per_kw", json!(0.000000001)),
            "max_price_per_kw",
        ),
        (with("image", json!("bad image")), "image"),
        (with("lifetime_s", json!(0)), "lifetime_s"),
        (with("min_gpus", json!(17)), "min_gpus"),
        (
            with("oc", json!({RTX4090: {"pl": 300}})),
            &format!("oc.{RTX4090}.pl"),
        ),
    ] {
        let (status, answer) = m
            .call("POST", "/api/v1/orders", Some(&alice), Some(body.clone()))
            .await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
        assert_eq!(answer["error"]["field"], json!(field), "{body}: {answer}");
    }
    let (status, _) = m
        .call("POST", "/api/v1/orders", Some(&host), Some(base.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "hosts do not place orders");
    let (_, mine) = m.call("GET", "/api/v1/orders", Some(&alice), None).await;
    assert_eq!(mine, json!([]), "nothing refused was stored");

    // A budget of one base unit: the first charged interval spends it.
    let (status, created) = m
        .call(
            "POST",
            "/api/v1/orders",
            Some(&alice),
            Some(with("budget", json!(0.00000001))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    m.tick(0).await;
    let o = order(&m, &alice, id).await;
    let bid = o["machines"][0]["bid"].as_u64().expect("a bid placed");
    // Served for the interval, then settled (charged) at the next boundary; the order
    // reads its charge at the boundary after.
    m.serve(&agent, bid).await;
    m.tick(60).await;
    m.tick(60).await;
    let o = order(&m, &alice, id).await;
    assert_eq!(o["state"], json!("paused"), "{o}");
    assert!(o["spent"].as_f64().unwrap() > 0.0, "{o}");
    assert!(o["note"].as_str().unwrap().contains("budget"), "{o}");
    let (_, shown) = m
        .call("GET", &format!("/api/v1/bids/{bid}"), Some(&alice), None)
        .await;
    assert_eq!(shown["state"], json!("cancelled"), "{shown}");
    // Raising the budget resumes it; a bad edit changes nothing.
    let (status, bad) = m
        .call(
            "PATCH",
            &format!("/api/v1/orders/{id}"),
            Some(&alice),
            Some(json!({"count": 0})),
        )
        .await;
    assert!(status.is_client_error(), "{bad}");
    assert_eq!(bad["error"]["field"], json!("count"));
    let (status, resumed) = m
        .call(
            "PATCH",
            &format!("/api/v1/orders/{id}"),
            Some(&alice),
            Some(json!({"budget": 100})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["state"], json!("active"));
    heartbeat(&m, &agent).await;
    m.tick(60).await;
    let o = order(&m, &alice, id).await;
    assert_eq!(o["machines"][0]["machine"], json!(machine_id), "{o}");

    // A client whose balance cannot pay one interval of the winning price: the order
    // pauses with the reason instead of bidding.
    let (_, poor) = m.funded_client("poor", 0.00001).await;
    let (status, created) = m
        .call("POST", "/api/v1/orders", Some(&poor), Some(base.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let poor_id = created["id"].as_u64().unwrap();
    heartbeat(&m, &agent).await;
    m.tick(60).await;
    let p = order(&m, &poor, poor_id).await;
    assert_eq!(p["state"], json!("paused"), "{p}");
    assert!(p["note"].as_str().unwrap().contains("balance"), "{p}");
    assert!(p["machines"].as_array().unwrap().is_empty(), "{p}");

    // The order and its holdings survive a restart.
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |_| {}).await;
    let after = order(&m, &alice, id).await;
    assert_eq!(after["machines"], o["machines"]);
    assert_eq!(after["spent"], o["spent"]);
    assert_eq!(after["state"], json!("active"));
    m.stop().await;
}
