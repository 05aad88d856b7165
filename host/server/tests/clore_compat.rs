//! Every rule of shared/docs/clore-compat.md, over real HTTP.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Market;

impl Market {
    async fn v1(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, Option<String>) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.header("auth", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap_or(Value::Null), retry)
    }
}

fn order(machine: u64, price: f64, pl: u32) -> Value {
    json!({"currency": "CLORE-Blockchain", "image": "registry.example/app:1", "renting_server": machine, "price": price, "oc": [{"pl": pl}, {"pl": pl}, {"pl": pl}, {"pl": pl}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_header_is_required_and_checked() {
    let m = Market::start(|_| {}).await;
    let (_, key) = m.funded_client("c", 10.0).await;
    for path in ["/v1/get_gigaspot", "/v1/my_orders", "/v1/wallets"] {
        let (status, body, _) = m.v1("GET", path, None, None).await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, json!({"code": 3})),
            "{path}"
        );
        let (status, body, _) = m.v1("GET", path, Some("gs_unknown"), None).await;
        assert_eq!(
            (status, body),
            (StatusCode::UNAUTHORIZED, json!({"code": 3})),
            "{path}"
        );
    }
    // `Authorization` is the native API's header, not this surface's.
    let resp = m
        .http
        .get(format!("{}/v1/get_gigaspot", m.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, body, _) = m.v1("GET", "/v1/wallets", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["code"], json!(0));
    assert_eq!(body["wallets"][0]["balance"], json!(10.0));
    let (status, body, _) = m.v1("GET", "/v1/no_such_call", Some(&key), None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!(4))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_gigaspot_has_every_field_and_snapshot_urls_are_immutable() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine().await;
    let (me, key) = m.funded_client("c", 100.0).await;
    let (status, body, _) = m.v1("GET", "/v1/get_gigaspot", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], json!(0));
    assert_eq!(body["my_user_id"], json!(me));
    assert_eq!(body["clore_price"], json!(0.02));
    assert!(body["creation_fees"]["CLORE-Blockchain"].is_number());
    let first_url = body["v1_snapshot_url"].as_str().unwrap().to_owned();
    let ts: u64 = first_url
        .rsplit_once('_')
        .unwrap()
        .1
        .strip_suffix(".json")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ts, support::T0);
    assert!(
        first_url.starts_with("http://127.0.0.1:"),
        "absolute: {first_url}"
    );

    // Served without authentication; the machine is there with every field.
    let snapshot: Value = m
        .http
        .get(&first_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &snapshot[machine.to_string()];
    for field in [
        "bids",
        "on_demand_rented",
        "online",
        "working_properly",
        "cpu",
        "cores",
        "threads",
        "ram",
        "cuda",
        "max_rental_length",
        "cc",
        "host",
        "reliability",
        "min_bid",
        "energy_price",
        "gpus",
    ] {
        assert!(!entry[field].is_null(), "{field} missing in {entry}");
    }
    assert_eq!(entry["gpus"][0]["pl"], json!([150, 400]));
    assert_eq!(entry["gpus"][0]["core_lock"], json!([210, 3105]));

    // A new bid in the next second gives a new URL; the old one keeps its content.
    let (_, created, _) = m
        .v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(&key),
            Some(json!([order(machine, 50.0, 200)])),
        )
        .await;
    assert_eq!(created["failed_to_rent_servers"], json!([]), "{created}");
    let (_, same, _) = m.v1("GET", "/v1/get_gigaspot", Some(&key), None).await;
    assert_eq!(
        same["v1_snapshot_url"].as_str().unwrap(),
        first_url,
        "at most one snapshot per second"
    );
    m.clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (_, next, _) = m.v1("GET", "/v1/get_gigaspot", Some(&key), None).await;
    let next_url = next["v1_snapshot_url"].as_str().unwrap().to_owned();
    assert_ne!(next_url, first_url);
    let newer: Value = m
        .http
        .get(&next_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bids = newer[machine.to_string()]["bids"].as_array().unwrap();
    assert_eq!(bids.len(), 1);
    let bid = &bids[0];
    assert_eq!(
        (
            bid["owner"].clone(),
            bid["price"].clone(),
            bid["pl"].clone()
        ),
        (json!(me), json!(50.0), json!(800))
    );
    assert_eq!(
        (bid["active"].clone(), bid["currency"].clone()),
        (json!(true), json!("CLORE-Blockchain"))
    );
    assert!(bid["id"].is_u64() && bid["cached"].is_boolean() && bid["to_cache"].is_boolean());
    assert!(
        bid.get("image").is_none(),
        "private parts stay out of the snapshot"
    );
    let again: Value = m
        .http
        .get(&first_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, snapshot, "an old URL never changes content");
    // Unchanged market: the URL stays.
    m.clock.fetch_add(5, std::sync::atomic::Ordering::SeqCst);
    let (_, later, _) = m.v1("GET", "/v1/get_gigaspot", Some(&key), None).await;
    assert_eq!(later["v1_snapshot_url"].as_str().unwrap(), next_url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_creation_sorts_each_failure_into_its_lists() {
    let m = Market::start(|_| {}).await;
    let (host, machine, _) = m.machine().await;
    let (_, poor) = m.funded_client("poor", 0.0).await;
    let (_, key) = m.funded_client("c", 100.0).await;
    // A second machine whose agent never reported: offline.
    let gpus = json!([{"model": "NVIDIA GeForce RTX 4090", "uuid": "x", "card_min_w": 150, "card_max_w": 450}]);
    let (_, offline) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({"gpus": gpus, "energy_price": 0.0})),
        )
        .await;
    let offline = offline["machine"]["id"].as_u64().unwrap();
    // A reserve price of 20 CLORE/day makes 10 too low.
    let (status, _) = m
        .call(
            "PATCH",
            &format!("/api/v1/machines/{machine}"),
            Some(&host),
            Some(json!({"reserve_price": 20.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let orders = json!([
        order(machine, 50.0, 200),                                     // ok
        order(machine, 50.0, 999),                                     // out of range
        {"image": "registry.example/app:1", "renting_server": machine, "price": 50.0, "oc": [{"pl": 200}]}, // wrong count
        {"image": "registry.example/app:1", "renting_server": machine, "price": 50.0},                     // no oc
        order(machine, 10.0, 200),                                     // below min_bid
        order(machine, 0.00001, 200),                                  // below the market minimum
        order(offline, 50.0, 200),                                     // offline
        order(99_999, 50.0, 200),                                      // unknown
        {"currency": "BTC", "image": "a", "renting_server": machine, "price": 50.0, "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]},
        {"image": "Not An Image", "renting_server": machine, "price": 50.0, "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]},
    ]);
    let (status, body, _) = m
        .v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(&key),
            Some(orders),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["code"], json!(0));
    assert_eq!(body["status"], json!("ok"));
    let list = |name: &str| {
        body[name]
            .as_array()
            .unwrap_or_else(|| panic!("{name} missing: {body}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list("failed_to_oc_servers"),
        vec![machine, machine, machine]
    );
    assert_eq!(list("too_low_bids_servers"), vec![machine, machine]);
    assert_eq!(
        list("failed_to_rent_servers"),
        vec![
            machine, machine, machine, machine, machine, offline, 99_999, machine, machine
        ]
    );

    // Insufficient funds and own machine fail to rent; every list is present even when empty.
    let (_, body, _) = m
        .v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(&poor),
            Some(json!([order(machine, 50.0, 200)])),
        )
        .await;
    assert_eq!(body["failed_to_rent_servers"], json!([machine]));
    assert_eq!(body["failed_to_oc_servers"], json!([]));
    assert_eq!(body["too_low_bids_servers"], json!([]));
    let (_, body, _) = m
        .v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(&host),
            Some(json!([order(machine, 50.0, 200)])),
        )
        .await;
    assert_eq!(body["failed_to_rent_servers"], json!([machine]));
    let (_, body, _) = m
        .v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(&key),
            Some(json!([])),
        )
        .await;
    assert_eq!(
        body,
        json!({"status": "ok", "failed_to_oc_servers": [], "failed_to_rent_servers": [], "too_low_bids_servers": [], "code": 0})
    );

    // Not an array of objects: code 2.
    for bad in [
        json!({"renting_server": machine}),
        json!([1, 2]),
        json!("x"),
    ] {
        let (status, body, _) = m
            .v1("POST", "/v1/create_gigaspot_orders", Some(&key), Some(bad))
            .await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(2))
        );
    }
    // Only the one good order exists.
    let (_, mine, _) = m.v1("GET", "/v1/my_orders", Some(&key), None).await;
    assert_eq!(mine["my_orders"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_cancels_report_per_id() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine().await;
    let (_, alice) = m.funded_client("alice", 100.0).await;
    let (_, bob) = m.funded_client("bob", 100.0).await;
    for key in [&alice, &bob] {
        m.v1(
            "POST",
            "/v1/create_gigaspot_orders",
            Some(key),
            Some(json!([order(machine, 50.0, 200)])),
        )
        .await;
    }
    let (_, mine, _) = m.v1("GET", "/v1/my_orders", Some(&alice), None).await;
    let alice_order = mine["my_orders"][0]["id"].as_u64().unwrap();
    let (_, theirs, _) = m.v1("GET", "/v1/my_orders", Some(&bob), None).await;
    let bob_order = theirs["my_orders"][0]["id"].as_u64().unwrap();

    let edits = json!([
        {"order_id": alice_order, "price": 70.0},
        {"order_id": bob_order, "price": 70.0},
        {"order_id": alice_order, "price": 0.00001},
        {"order_id": 424_242, "price": 70.0},
    ]);
    let (status, body, _) = m
        .v1(
            "POST",
            "/v1/edit_gigaspot_orders",
            Some(&alice),
            Some(edits),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success_to_update_ids"], json!([alice_order]));
    assert_eq!(
        body["failed_to_update_ids"],
        json!([bob_order, alice_order, 424_242])
    );
    assert_eq!(body["too_low_bid_ids"], json!([alice_order]));
    assert_eq!(body["code"], json!(0));

    let (_, body, _) = m
        .v1(
            "POST",
            "/v1/cancel_orders",
            Some(&alice),
            Some(json!({"order_ids": [alice_order, bob_order, 77]})),
        )
        .await;
    assert_eq!(
        body,
        json!({"failed_to_cancel": [bob_order, 77], "code": 0})
    );
    let (_, body, _) = m
        .v1(
            "POST",
            "/v1/cancel_orders",
            Some(&alice),
            Some(json!({"order_ids": [alice_order]})),
        )
        .await;
    assert_eq!(
        body["failed_to_cancel"],
        json!([alice_order]),
        "already ended"
    );
    let ids: Vec<u64> = (1..=65).collect();
    for bad in [
        json!({"order_ids": ids}),
        json!({"order_ids": []}),
        json!({"ids": [1]}),
        json!([1]),
    ] {
        let (status, body, _) = m
            .v1("POST", "/v1/cancel_orders", Some(&alice), Some(bad))
            .await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(2))
        );
    }
    let ids: Vec<u64> = (1..=64).collect();
    let (status, body, _) = m
        .v1(
            "POST",
            "/v1/cancel_orders",
            Some(&alice),
            Some(json!({"order_ids": ids})),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::OK, json!(0)),
        "64 ids are allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_an_integer_retry_after() {
    let m = Market::start(|c| c.rate_limit_per_minute = 5).await;
    let (_, key) = m.funded_client("c", 1.0).await;
    let mut limited = None;
    for _ in 0..10 {
        let (status, body, retry) = m.v1("GET", "/v1/wallets", Some(&key), None).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((body, retry));
            break;
        }
    }
    let (body, retry) = limited.expect("the sixth request is limited");
    assert_eq!(body, json!({"code": 5}));
    let seconds: u64 = retry
        .expect("Retry-After is present")
        .parse()
        .expect("an integer");
    assert!((1..=60).contains(&seconds));
}
