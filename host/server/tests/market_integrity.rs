//! Market integrity over real HTTP: exact money at the door, floors at a bid's own power
//! limit, lifetimes and expiry, the same rules on `/v1` and the native API, bounded input,
//! JSON errors everywhere, no lost updates, and interval length changes on a live market.

mod support;

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY, T0};

/// Registers a machine of `host` with the given GPUs and settings, and brings its agent
/// online: (machine id, agent token).
async fn machine_with(m: &Market, host: &str, gpus: Value, settings: Value) -> (u64, String) {
    let mut body = json!({"gpus": gpus});
    for (k, v) in settings.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, reply) = m
        .call("POST", "/api/v1/machines", Some(host), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let id = reply["machine"]["id"].as_u64().unwrap();
    let agent = reply["agent_token"].as_str().unwrap().to_owned();
    heartbeat(m, &agent, json!({"working": true, "running_bid": null})).await;
    (id, agent)
}

async fn heartbeat(m: &Market, agent: &str, report: Value) -> Value {
    let (status, body) = m
        .call("POST", "/api/v1/agent/heartbeat", Some(agent), Some(report))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn rtx4090(ceiling: u32) -> Value {
    json!([{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 450, "ceiling_w": ceiling}])
}

/// Sends `body` as raw JSON text (so the numbers are exactly as written).
async fn raw(m: &Market, method: &str, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
    let mut req = m
        .http
        .request(method.parse().unwrap(), format!("{}{path}", m.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    req = if path.starts_with("/v1/") {
        req.header("auth", key)
    } else {
        req.bearer_auth(key)
    };
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_read_exactly_from_the_json_text_on_both_apis() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 10_000.0).await;
    let bid = |price: &str| {
        format!(
            r#"{{"machine": {machine}, "price": {price}, "image": "a", "oc": [{{"pl": 200}}]}}"#
        )
    };
    // Nine decimals: refused naming the field, never rounded (it used to become 10.12345679).
    for price in ["10.123456789", "1e-9", "0.000000015"] {
        let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid(price)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{price}: {body}");
        assert_eq!(field(&body), "price", "{price}: {body}");
        assert!(body.to_string().contains("8 decimal"), "{body}");
    }
    // Exactly 8 decimals, and exponent forms, are taken as written.
    let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid("10.12345678")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["price"], json!(10.12345678));
    let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid("1.5e1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["price"], json!(15.0));
    // Both ends of the price range, inclusive.
    for (price, ok) in [
        ("0.0001", true),
        ("0.00009999", false),
        ("5000", true),
        ("5000.00000001", false),
    ] {
        let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid(price)).await;
        if ok {
            assert_eq!(status, StatusCode::CREATED, "{price}: {body}");
        } else {
            assert_eq!(
                (status, field(&body)),
                (StatusCode::UNPROCESSABLE_ENTITY, "price"),
                "{price}: {body}"
            );
        }
    }
    // The same rule on /v1: nine decimals fail the item; the market minimum is "too low".
    let order = |price: &str| {
        format!(
            r#"[{{"renting_server": {machine}, "price": {price}, "image": "a", "oc": [{{"pl": 200}}]}}]"#
        )
    };
    let (_, body) = raw(
        &m,
        "POST",
        "/v1/create_gigaspot_orders",
        &key,
        &order("10.123456789"),
    )
    .await;
    assert_eq!(body["failed_to_rent_servers"], json!([machine]), "{body}");
    assert_eq!(body["too_low_bids_servers"], json!([]));
    let (_, body) = raw(
        &m,
        "POST",
        "/v1/create_gigaspot_orders",
        &key,
        &order("0.00009999"),
    )
    .await;
    assert_eq!(body["too_low_bids_servers"], json!([machine]), "{body}");
    let (_, body) = raw(
        &m,
        "POST",
        "/v1/create_gigaspot_orders",
        &key,
        &order("5000"),
    )
    .await;
    assert_eq!(body["failed_to_rent_servers"], json!([]), "{body}");
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&key), None).await;
    let id = mine.as_array().unwrap()[0]["id"].as_u64().unwrap();
    let (_, body) = raw(
        &m,
        "POST",
        "/v1/edit_gigaspot_orders",
        &key,
        &format!(r#"[{{"order_id": {id}, "price": 11.000000001}}]"#),
    )
    .await;
    assert_eq!(body["failed_to_update_ids"], json!([id]), "{body}");
    // Deposits: exact, and refused with the field past 8 decimals or past the ledger's range.
    let (_, client) = m.register("d", &["client"]).await;
    let (_, me) = m
        .call("GET", "/api/v1/accounts/me", Some(&client), None)
        .await;
    let account = me["id"].as_u64().unwrap();
    for (amount, status) in [
        ("0.000000001", StatusCode::UNPROCESSABLE_ENTITY),
        ("184467440737.09551616", StatusCode::UNPROCESSABLE_ENTITY),
        ("-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("0.00000001", StatusCode::CREATED),
    ] {
        let (got, body) = raw(
            &m,
            "POST",
            "/api/v1/deposits",
            OPERATOR_KEY,
            &format!(r#"{{"account": {account}, "amount": {amount}, "reference": "r{amount}"}}"#),
        )
        .await;
        assert_eq!(got, status, "{amount}: {body}");
        if !status.is_success() {
            assert_eq!(field(&body), "amount", "{body}");
        }
    }
    assert_eq!(m.balance(&client).await, 0.00000001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bid_must_cover_the_energy_of_its_own_power_limit() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    // 0.17 USD/kWh at 0.02 USD/CLORE: 0.204 CLORE/day per W, exactly.
    let (machine, _) = machine_with(&m, &host, rtx4090(450), json!({"energy_price": 0.17})).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let (_, view) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    // min_bid at the card minimum: 150 W × 0.204 = 30.6 (floats gave 30.600000000000001).
    assert_eq!(view["min_bid"], json!(30.6), "{view}");
    assert_eq!(view["floor_per_watt"], json!(0.204));
    assert_eq!(view["clore_price"], json!(0.02));
    // At 200 W the floor is 40.8: between min_bid and that, a bid is refused as too low
    // (it used to be admitted and score 0 for ever).
    let bid = |price: &str| {
        format!(
            r#"{{"machine": {machine}, "price": {price}, "image": "a", "oc": [{{"pl": 200}}]}}"#
        )
    };
    let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid("40.79999999")).await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "price"),
        "{body}"
    );
    assert!(body.to_string().contains("40.80000000"), "{body}");
    let (_, body) = raw(
        &m,
        "POST",
        "/v1/create_gigaspot_orders",
        &key,
        &format!(r#"[{{"renting_server": {machine}, "price": 40.79999999, "image": "a", "oc": [{{"pl": 200}}]}}]"#),
    )
    .await;
    assert_eq!(body["too_low_bids_servers"], json!([machine]), "{body}");
    let (status, body) = raw(&m, "POST", "/api/v1/bids", &key, &bid("40.8")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Raising the power limit in an edit re-runs the floor.
    let id = body["id"].as_u64().unwrap();
    let (status, body) = m
        .call(
            "PATCH",
            &format!("/api/v1/bids/{id}"),
            Some(&key),
            Some(json!({"price": 40.8, "oc": [{"pl": 300}]})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "price"),
        "{body}"
    );
    // The snapshot publishes what a client needs to compute its own floor.
    m.tick(60).await;
    let (_, gs) = raw(&m, "GET", "/v1/get_gigaspot", &key, "").await;
    let url = gs["v1_snapshot_url"].as_str().unwrap();
    let snapshot: Value = m.http.get(url).send().await.unwrap().json().await.unwrap();
    let entry = &snapshot[machine.to_string()];
    assert_eq!(entry["floor_per_watt"], json!(0.204), "{entry}");
    assert_eq!(entry["energy_price"], json!(0.17));
    assert_eq!(entry["clore_price"], json!(0.02));
    assert_eq!(entry["reserve_price"], json!(0.0));
    assert_eq!(entry["min_bid"], json!(30.6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetimes_clamp_to_the_machine_and_expired_bids_are_final() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (machine, _) = machine_with(
        &m,
        &host,
        rtx4090(450),
        json!({"energy_price": 0.0, "max_rental_length": 3600}),
    )
    .await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let new_bid = |lifetime: Option<u64>| {
        let mut b = json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]});
        if let Some(l) = lifetime {
            b["lifetime_s"] = json!(l);
        }
        b
    };
    // No lifetime: the 7-day default is clamped to the machine's hour.
    let (status, body) = m
        .call("POST", "/api/v1/bids", Some(&key), Some(new_bid(None)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["expires_at"], json!(T0 + 3600));
    // /v1 orders (20 days by default) are clamped too instead of refused.
    let (_, body) = m
        .call_v1(
            "/v1/create_gigaspot_orders",
            &key,
            json!([{"renting_server": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]}]),
        )
        .await;
    assert_eq!(body["failed_to_rent_servers"], json!([]), "{body}");
    // An explicit lifetime is checked: 0 and longer than the machine allows are refused.
    for (lifetime, ok) in [(0, false), (3601, false), (3600, true), (60, true)] {
        let (status, body) = m
            .call(
                "POST",
                "/api/v1/bids",
                Some(&key),
                Some(new_bid(Some(lifetime))),
            )
            .await;
        if ok {
            assert_eq!(status, StatusCode::CREATED, "{lifetime}: {body}");
        } else {
            assert_eq!(
                (status, field(&body)),
                (StatusCode::UNPROCESSABLE_ENTITY, "lifetime_s"),
                "{lifetime}: {body}"
            );
        }
    }
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&key), None).await;
    let short = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["expires_at"] == json!(T0 + 60))
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    // Past its lifetime the bid is expired: no edit, no cancel, on either API.
    m.clock.fetch_add(61, Ordering::SeqCst);
    let (status, body) = m
        .call(
            "PATCH",
            &format!("/api/v1/bids/{short}"),
            Some(&key),
            Some(json!({"price": 20.0, "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::BAD_REQUEST, "bid"),
        "{body}"
    );
    assert!(body.to_string().contains("expired"), "{body}");
    let (status, _) = m
        .call("DELETE", &format!("/api/v1/bids/{short}"), Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = m
        .call_v1(
            "/v1/edit_gigaspot_orders",
            &key,
            json!([{"order_id": short, "price": 20.0}]),
        )
        .await;
    assert_eq!(body["failed_to_update_ids"], json!([short]), "{body}");
    let (_, body) = m
        .call_v1("/v1/cancel_orders", &key, json!({"order_ids": [short]}))
        .await;
    assert_eq!(body["failed_to_cancel"], json!([short]), "{body}");
    let (_, body) = m
        .call("GET", &format!("/api/v1/bids/{short}"), Some(&key), None)
        .await;
    assert_eq!(body["state"], json!("expired"));
    // The next boundary writes the state into the store.
    m.tick(60).await;
    let stored = m.state.store.clone();
    let bid = tokio::task::spawn_blocking(move || {
        gigaspot_store::Store::bid(stored.as_ref(), short)
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(bid.state, gigaspot_market::bid::BidState::Expired);
    let (_, orders) = m.call_v1_get("/v1/my_orders", &key).await;
    let order = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == json!(short))
        .unwrap()
        .clone();
    assert_eq!(order["status"], json!("expired"));
    assert_eq!(order["expired"], json!(true));
    assert_eq!(order["si"], json!(machine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_items_without_a_usable_id_refuse_the_request_and_place_nothing() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let good = json!({"renting_server": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]});
    for bad in [json!("5"), json!(-1), json!({}), json!(1.5), Value::Null] {
        let mut item = good.clone();
        item["renting_server"] = bad.clone();
        let (status, body) = m
            .call_v1("/v1/create_gigaspot_orders", &key, json!([good, item]))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], json!(2), "{body}");
        assert!(body["error"].as_str().unwrap().contains("item 1"), "{body}");
    }
    let (status, body) = raw(
        &m,
        "POST",
        "/v1/create_gigaspot_orders",
        &key,
        r#"[{"renting_server": 18446744073709551616, "price": 10, "image": "a", "oc": [{"pl": 200}]}]"#,
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(2)),
        "{body}"
    );
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("renting_server");
    let (_, body) = m
        .call_v1("/v1/create_gigaspot_orders", &key, json!([missing]))
        .await;
    assert_eq!(body["code"], json!(2), "{body}");
    // Nothing was placed by any of those requests.
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&key), None).await;
    assert_eq!(mine, json!([]));
    // Edits: the same for order_id.
    let (_, body) = m
        .call_v1(
            "/v1/edit_gigaspot_orders",
            &key,
            json!([{"order_id": "7", "price": 1.0}]),
        )
        .await;
    assert_eq!(body["code"], json!(2), "{body}");
    let (_, body) = m
        .call_v1("/v1/edit_gigaspot_orders", &key, json!([{"price": 1.0}]))
        .await;
    assert_eq!(body["code"], json!(2), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_answer_json_with_a_code() {
    let m = Market::start(|c| c.request_timeout_ms = 500).await;
    let (_, key) = m.funded_client("c", 1.0).await;
    let big = format!("[{}]", vec!["{}"; 40_000].join(","));
    let send = |path: &'static str| {
        let big = big.clone();
        let url = format!("{}{path}", m.base);
        let http = m.http.clone();
        let key = key.clone();
        move || {
            http.post(url.clone())
                .header("auth", key.clone())
                .bearer_auth(key.clone())
                .header("content-type", "application/json")
                .body(big.clone())
        }
    };
    let resp = support::send_tolerating_reset(send("/v1/create_gigaspot_orders")).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], json!(2), "{body}");
    let resp = support::send_tolerating_reset(send("/api/v1/bids")).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], json!("body"), "{body}");
    // A known route with the wrong method: 405 in JSON too.
    let (status, body) = m.call_v1("/v1/wallets", &key, json!({})).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::METHOD_NOT_ALLOWED, json!(4))
    );
    let (status, body) = m.call("PUT", "/api/v1/balance", Some(&key), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body["error"]["reason"].is_string(), "{body}");
    // A body that never arrives: 408 after request_timeout_ms, with a JSON body.
    for (path, check) in [
        ("/v1/create_gigaspot_orders", "\"code\":6"),
        ("/api/v1/bids", "\"error\""),
    ] {
        let answer = slow_request(&m, path, &key).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/json"), "{answer}");
        assert!(answer.contains(check), "{answer}");
    }
}

/// Sends the headers of a POST whose body never comes, and returns what the server says.
async fn slow_request(m: &Market, path: &str, key: &str) -> String {
    use std::io::{Read, Write};
    let addr = m.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nauth: {key}\r\nAuthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n["
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Complete when the server closes, or once its JSON body ends.
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Err(e) => panic!("no answer to a stalled body: {e}"),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_hosts_agents_and_registrants_write_is_bounded() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    // Energy prices: a sane documented range (1e308 used to saturate min_bid).
    for price in [json!(1e308), json!(10.5), json!(-0.1)] {
        let (status, body) = m
            .call(
                "POST",
                "/api/v1/machines",
                Some(&host),
                Some(json!({"gpus": rtx4090(450), "energy_price": price})),
            )
            .await;
        assert_eq!(
            (status, field(&body)),
            (StatusCode::BAD_REQUEST, "energy_price"),
            "{body}"
        );
    }
    let (machine, agent) =
        machine_with(&m, &host, rtx4090(450), json!({"energy_price": 0.1})).await;
    let (status, body) = m
        .call(
            "PATCH",
            &format!("/api/v1/machines/{machine}"),
            Some(&host),
            Some(json!({"energy_price": 1e308})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::BAD_REQUEST, "energy_price"),
        "{body}"
    );
    // Agents: lists are bounded, and a refused heartbeat changes nothing.
    let images: Vec<String> = (0..5_000).map(|i| format!("img{i}:1")).collect();
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(json!({"working": true, "running_bid": null, "cached_images": images})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "cached_images"),
        "{body}"
    );
    let (_, view) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(view["agent"]["cached_images"], json!([]));
    // Names that pass for the market's staff are refused.
    for name in ["Operator", "GigaSPOT support", "site admin"] {
        let (status, body) = m
            .call(
                "POST",
                "/api/v1/accounts",
                None,
                Some(json!({"name": name, "roles": ["client"]})),
            )
            .await;
        assert_eq!(
            (status, field(&body)),
            (StatusCode::BAD_REQUEST, "name"),
            "{name}: {body}"
        );
    }
    // Path ids that are not numbers: a JSON error naming the field.
    for path in [
        "/api/v1/bids/abc",
        "/api/v1/machines/-1",
        "/api/v1/machines/1e3/book",
    ] {
        let (status, body) = m.call("GET", path, Some(&host), None).await;
        assert_eq!(
            (status, field(&body)),
            (StatusCode::BAD_REQUEST, "id"),
            "{path}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_refuse_unavailable_machines_and_bidders_who_cannot_pay() {
    let m = Market::start(|_| {}).await;
    let (host, machine, _) = m.machine_with_gpus(1).await;
    // A machine whose agent never reported is offline.
    let (_, body) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({"gpus": rtx4090(450), "energy_price": 0.0})),
        )
        .await;
    let offline = body["machine"]["id"].as_u64().unwrap();
    let (_, rich) = m.funded_client("rich", 1000.0).await;
    let (_, poor) = m.funded_client("poor", 0.0).await;
    let bid = |machine: u64| json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]});
    let (status, body) = m
        .call("POST", "/api/v1/bids", Some(&rich), Some(bid(offline)))
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "machine"),
        "{body}"
    );
    let (status, body) = m
        .call("POST", "/api/v1/bids", Some(&poor), Some(bid(machine)))
        .await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "price"),
        "{body}"
    );
    assert!(body.to_string().contains("balance"), "{body}");
    for (key, server) in [(&rich, offline), (&poor, machine)] {
        let (_, body) = m
            .call_v1(
                "/v1/create_gigaspot_orders",
                key,
                json!([{"renting_server": server, "price": 10.0, "image": "a", "oc": [{"pl": 200}]}]),
            )
            .await;
        assert_eq!(body["failed_to_rent_servers"], json!([server]), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_heartbeats_never_undo_a_host_change() {
    let m = Market::start(|c| c.rate_limit_per_minute = 0).await;
    let (_, host) = m.register("host", &["host"]).await;
    let gpus = json!([
        {"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 450},
        {"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-1", "card_min_w": 150, "card_max_w": 450}
    ]);
    let (machine, agent) = machine_with(&m, &host, gpus, json!({"energy_price": 0.1})).await;
    const AGENT_TASKS: usize = 4;
    const BEATS: usize = 500;
    const PATCHES: u32 = 200;
    let mut agents = Vec::new();
    for t in 0..AGENT_TASKS {
        let (http, url, agent) = (
            m.http.clone(),
            format!("{}/api/v1/agent/heartbeat", m.base),
            agent.clone(),
        );
        agents.push(tokio::spawn(async move {
            for i in 0..BEATS {
                // Each heartbeat changes the agent's part of the record, so each writes.
                let report = json!({"working": true, "running_bid": null,
                    "cached_images": [format!("img{t}-{i}:1")]});
                let resp = http
                    .post(&url)
                    .bearer_auth(&agent)
                    .json(&report)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
            }
        }));
    }
    for i in 1..=PATCHES {
        let (status, body) = m
            .call(
                "PATCH",
                &format!("/api/v1/machines/{machine}"),
                Some(&host),
                Some(json!({"reserve_price": i, "ceilings_w": [200 + i, 400 - i]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for a in agents {
        a.await.unwrap();
    }
    let (_, view) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(view["reserve_price"], json!(f64::from(PATCHES)), "{view}");
    assert_eq!(view["gpus"][0]["ceiling_w"], json!(200 + PATCHES));
    assert_eq!(view["gpus"][1]["ceiling_w"], json!(400 - PATCHES));
}

/// The sum of charges to `key`'s account per interval, from its ledger.
async fn charges(m: &Market, key: &str) -> std::collections::BTreeMap<u64, f64> {
    let (_, ledger) = m
        .call("GET", "/api/v1/ledger?limit=1000", Some(key), None)
        .await;
    let mut by_interval = std::collections::BTreeMap::new();
    for t in ledger.as_array().unwrap() {
        if t["kind"] == json!("charge") || t["kind"] == json!("fee") {
            *by_interval
                .entry(t["interval"].as_u64().unwrap())
                .or_insert(0.0) += t["amount"].as_f64().unwrap();
        }
    }
    by_interval
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interval_length_changes_at_the_next_boundary_on_a_live_market() {
    let m = Market::start(|c| c.billing_interval_s = Some(10)).await;
    let (_, machine, agent) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    // 8640 CLORE/day = 0.1 CLORE per second: each charge shows its interval's length.
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 8640.0 / 2.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bid = body["id"].as_u64().unwrap();
    let clock = |m: &Market| m.state.store.interval_clock().unwrap();
    let mut lengths = Vec::new();
    // Boundaries of 10, 10 (asks for 20), 20, 20 (asks for 10), 10, 10 seconds.
    for change in [None, Some(20), None, Some(10), None, None] {
        let now = m.clock.load(Ordering::SeqCst);
        let next = clock(&m).next_boundary(now);
        m.tick(next - now).await;
        let interval = clock(&m).interval_at(next);
        assert_eq!(clock(&m).start_of(interval), next, "no gap, no overlap");
        lengths.push(clock(&m).length_of(interval));
        // The agent runs the winner with its settings applied through the interval.
        let desired = heartbeat(
            &m,
            &agent,
            json!({"working": true, "running_bid": bid, "applied": true}),
        )
        .await;
        assert_eq!(desired["interval"], json!(interval));
        m.serve(&agent, bid).await;
        if let Some(seconds) = change {
            let (status, body) = m
                .call(
                    "PUT",
                    "/api/v1/params",
                    Some(OPERATOR_KEY),
                    Some(json!({"billing_interval_s": seconds, "fee_bps": 250, "clore_usd": 0.02})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // This interval keeps its length; the change comes at the next boundary.
            assert_eq!(clock(&m).length_of(interval), *lengths.last().unwrap());
        }
    }
    assert_eq!(lengths, [10, 10, 20, 20, 10, 10]);
    // One more boundary settles the last interval.
    let now = m.clock.load(Ordering::SeqCst);
    m.tick(clock(&m).next_boundary(now) - now).await;
    let charged = charges(&m, &key).await;
    assert_eq!(
        charged.len(),
        6,
        "every served interval charged exactly once: {charged:?}"
    );
    let units: Vec<u64> = charged.values().map(|a| (a * 1e8).round() as u64).collect();
    // 4320 CLORE/day = 0.05 CLORE per second: 0.5 CLORE for 10 s, 1 CLORE for 20 s.
    assert_eq!(
        units,
        [
            50_000_000,
            50_000_000,
            100_000_000,
            100_000_000,
            50_000_000,
            50_000_000
        ]
    );
    // The market history follows the clock.
    let (_, history) = m
        .call("GET", "/api/v1/market/history?limit=3", None, None)
        .await;
    assert_eq!(history["interval_s"], json!(10));

    // A restart keeps the stored value when the configuration does not set it, and says
    // the clock in force.
    let (status, _) = m
        .call(
            "PUT",
            "/api/v1/params",
            Some(OPERATOR_KEY),
            Some(json!({"billing_interval_s": 30, "fee_bps": 250, "clore_usd": 0.02})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let at = m.clock.load(Ordering::SeqCst);
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |c| c.billing_interval_s = None).await;
    m.clock.store(at, Ordering::SeqCst);
    let (_, params) = m
        .call("GET", "/api/v1/params", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(params["billing_interval_s"], json!(30));
    assert_eq!(clock(&m).length_s(), 10, "30 s starts at the next boundary");
    let next = clock(&m).next_boundary(at);
    m.tick(next - at).await;
    assert_eq!(clock(&m).length_of(clock(&m).interval_at(next)), 30);
    // A configuration that sets the key explicitly is applied as a change.
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |c| c.billing_interval_s = Some(60)).await;
    let (_, params) = m
        .call("GET", "/api/v1/params", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(params["billing_interval_s"], json!(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clore_ai_reads_orders_and_wallets() {
    // The shapes Clore's own general client reads are checked in `clore_ai_client.rs`;
    // here: `orders` beside `my_orders`, Clore's fields, and an RFC 3339 `created_at`.
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 10.0).await;
    let (_, body) = m
        .call_v1(
            "/v1/create_gigaspot_orders",
            &key,
            json!([{"renting_server": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]}]),
        )
        .await;
    assert_eq!(body["failed_to_rent_servers"], json!([]), "{body}");
    let (_, body) = m.call_v1_get("/v1/my_orders", &key).await;
    let order = &body["orders"][0];
    assert_eq!(body["my_orders"], body["orders"]);
    assert_eq!(order["si"], json!(machine));
    assert_eq!(order["renting_server"], json!(machine));
    assert_eq!(order["status"], json!("active"));
    assert_eq!(order["spend"], json!(0.0));
    assert_eq!(order["created_at"], json!("2027-01-15T08:00:00Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_is_charged_for_the_time_the_workload_was_confirmed_running() {
    let m = Market::start(|c| c.served_heartbeat_bound_s = 15).await;
    let (_, machine, agent) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    // 4320 CLORE/day = 0.05 CLORE per second.
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 4320, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bid = body["id"].as_u64().unwrap();
    m.tick(60).await;
    // The workload is confirmed running only 45 s into the interval (after the previous
    // one's grace period and an image pull): one heartbeat vouches for 15 s.
    m.clock.fetch_add(45, Ordering::SeqCst);
    heartbeat(
        &m,
        &agent,
        json!({"working": true, "running_bid": bid, "applied": true}),
    )
    .await;
    m.tick(15).await;
    assert_eq!(m.balance(&key).await, 1000.0 - 0.75, "15 s × 0.05 CLORE");
    // The next interval it keeps confirming: served whole, 3 CLORE.
    m.serve(&agent, bid).await;
    m.tick(60).await;
    assert_eq!(m.balance(&key).await, 1000.0 - 0.75 - 3.0);
    // The ledger shows what each charge paid for.
    let (_, ledger) = m.call("GET", "/api/v1/ledger", Some(&key), None).await;
    let served: Vec<(u64, u64)> = ledger
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == json!("charge"))
        .map(|t| {
            (
                t["served_s"].as_u64().unwrap(),
                t["interval_s"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(served, [(60, 60), (15, 60)], "newest first: {ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_marks_images_queued_for_pre_pull_and_cached() {
    let m = Market::start(|_| {}).await;
    let (_, machine, agent) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let mut bids = Vec::new();
    for (price, image) in [
        (20.0, "registry.example/win:1"),
        (10.0, "registry.example/next:1"),
    ] {
        let (status, body) = m
            .call(
                "POST",
                "/api/v1/bids",
                Some(&key),
                Some(json!({"machine": machine, "price": price, "image": image, "oc": [{"pl": 200}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        bids.push(body["id"].as_u64().unwrap());
    }
    m.tick(60).await;
    let flags = |bids_json: &Value, id: u64| {
        let b = bids_json
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == json!(id))
            .unwrap()
            .clone();
        (b["to_cache"].clone(), b["cached"].clone())
    };
    // The agent caches only the winner's image: the loser's is queued for pre-pull.
    let desired = heartbeat(
        &m,
        &agent,
        json!({"working": true, "running_bid": null, "cached_images": ["registry.example/win:1"]}),
    )
    .await;
    assert_eq!(desired["prepull"], json!(["registry.example/next:1"]));
    m.clock.fetch_add(1, Ordering::SeqCst);
    let entry = snapshot_bids(&m, &key, machine).await;
    assert_eq!(
        flags(&entry, bids[0]),
        (json!(false), json!(true)),
        "{entry}"
    );
    assert_eq!(
        flags(&entry, bids[1]),
        (json!(true), json!(false)),
        "{entry}"
    );
    // Once pulled, it is cached and no longer queued.
    heartbeat(
        &m,
        &agent,
        json!({"working": true, "running_bid": null,
               "cached_images": ["registry.example/win:1", "registry.example/next:1"]}),
    )
    .await;
    m.clock.fetch_add(1, Ordering::SeqCst);
    let entry = snapshot_bids(&m, &key, machine).await;
    assert_eq!(
        flags(&entry, bids[1]),
        (json!(false), json!(true)),
        "{entry}"
    );
}

/// The bids of `machine` in the current snapshot.
async fn snapshot_bids(m: &Market, key: &str, machine: u64) -> Value {
    let (_, gs) = m.call_v1_get("/v1/get_gigaspot", key).await;
    let s: Value = m
        .http
        .get(gs["v1_snapshot_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s[machine.to_string()]["bids"].clone()
}
