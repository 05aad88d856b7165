//! The market over real HTTP on loopback: registration, a machine and its agent, two
//! bidders, clearing, exact billing, decisions, cancellation and bad input.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY, send_tolerating_reset};

fn oc(pl: u32) -> Value {
    json!([{"pl": pl}, {"pl": pl}, {"pl": pl}, {"pl": pl}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_market_round_over_http() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let gpus: Vec<Value> = (0..4)
        .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 450, "ceiling_w": 400}))
        .collect();
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({"gpus": gpus, "energy_price": 0.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let agent = body["agent_token"].as_str().unwrap().to_owned();

    // The simulated agent reports in: the machine comes online.
    let (status, desired) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(json!({"working": true, "running_bid": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{desired}");
    assert!(desired["workload"].is_null());
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(shown["online"], json!(true));

    let (alice_id, alice) = m.register("alice", &["client"]).await;
    let (bob_id, bob) = m.register("bob", &["client"]).await;
    for (id, reference) in [(alice_id, "a-1"), (bob_id, "b-1")] {
        let (status, body) = m
            .call(
                "POST",
                "/api/v1/deposits",
                Some(OPERATOR_KEY),
                Some(json!({"account": id, "amount": 1000.0, "reference": reference})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Alice: 100 CLORE for 1200 W (0.083/W); Bob: 60 CLORE for 600 W (0.1/W).
    let (status, alice_bid) = m.call("POST", "/api/v1/bids", Some(&alice), Some(json!({"machine": machine, "price": 100.0, "image": "registry.example/app:1", "oc": oc(300)}))).await;
    assert_eq!(status, StatusCode::CREATED, "{alice_bid}");
    let (status, bob_bid) = m.call("POST", "/api/v1/bids", Some(&bob), Some(json!({"machine": machine, "price": 60.0, "image": "registry.example/app:2", "oc": oc(150), "env": {"MODE": "x"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{bob_bid}");
    let (alice_bid, bob_bid) = (
        alice_bid["id"].as_u64().unwrap(),
        bob_bid["id"].as_u64().unwrap(),
    );

    // The Clore-style snapshot shows both bids.
    let gigaspot: Value = m
        .http
        .get(format!("{}/v1/get_gigaspot", m.base))
        .header("auth", &alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snapshot: Value = m
        .http
        .get(gigaspot["v1_snapshot_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<u64> = snapshot[machine.to_string()]["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![alice_bid, bob_bid]);

    m.tick(0).await;
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(
        shown["current_bid"],
        json!(bob_bid),
        "the better price per watt wins"
    );

    // The loser reads why.
    let (status, decision) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["winner"]["bid"], json!(bob_bid));
    let verdicts = decision["verdicts"].as_array().unwrap();
    let alice_score = verdicts
        .iter()
        .find(|v| v["bid"] == json!(alice_bid))
        .unwrap()["verdict"]["Scored"]["score"]
        .as_f64()
        .unwrap();
    let bob_score = verdicts
        .iter()
        .find(|v| v["bid"] == json!(bob_bid))
        .unwrap()["verdict"]["Scored"]["score"]
        .as_f64()
        .unwrap();
    assert!(alice_score < bob_score);
    let (status, why) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{alice_bid}/decision"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{why}");
    assert_eq!(
        (why["won"].clone(), why["winner"].clone()),
        (json!(false), json!(bob_bid))
    );
    assert_eq!(
        why["verdict"]["Scored"]["score"].as_f64().unwrap(),
        alice_score
    );
    assert_eq!(why["winning_score"].as_f64().unwrap(), bob_score);
    let (status, _) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{alice_bid}/decision"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another client cannot read it"
    );

    // The agent runs Bob's workload with its settings applied: the interval is served.
    let inventory: Vec<Value> = (0..4)
        .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 420}))
        .collect();
    let (_, desired) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(json!({"working": true, "running_bid": bob_bid, "applied": true, "gpus": inventory})),
        )
        .await;
    assert_eq!(desired["workload"]["bid"], json!(bob_bid));
    // The inventory corrected the cards' limits; the host's 400 W ceiling stayed in range.
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(shown["gpus"][0]["card_max_w"], json!(420));
    assert_eq!(shown["gpus"][0]["ceiling_w"], json!(400));
    assert_eq!(desired["workload"]["env"]["MODE"], json!("x"));
    // It keeps confirming through the interval: served whole.
    m.serve(&agent, bob_bid).await;
    m.tick(60).await;

    // Balances move by exactly price × interval / day, with the 2.5 % fee to the operator.
    let cost = 60.0 * 60.0 / 86_400.0; // 0.04166666 CLORE, rounded down to a unit
    let cost_units = (6_000_000_000u64 * 60) / 86_400; // 4_166_666
    let fee_units = cost_units * 250 / 10_000; // 104_166
    assert!((cost - cost_units as f64 / 1e8).abs() < 1e-8);
    assert_eq!(
        m.balance(&bob).await,
        (100_000_000_000 - cost_units) as f64 / 1e8
    );
    assert_eq!(
        m.balance(&host).await,
        (cost_units - fee_units) as f64 / 1e8
    );
    assert_eq!(m.balance(OPERATOR_KEY).await, fee_units as f64 / 1e8);
    assert_eq!(m.balance(&alice).await, 1000.0);
    let (_, ledger) = m.call("GET", "/api/v1/ledger", Some(&bob), None).await;
    let kinds: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "deposit, charge, fee: {ledger}");
    assert_eq!(kinds[2], "deposit", "newest first: {ledger}");
    // Pages of two, then the rest after the last entry's `seq`.
    let (_, first) = m
        .call("GET", "/api/v1/ledger?limit=2", Some(&bob), None)
        .await;
    assert_eq!(first.as_array().unwrap().len(), 2);
    assert_eq!(first[0], ledger[0]);
    let cursor = first[1]["seq"].as_u64().unwrap();
    let (_, rest) = m
        .call(
            "GET",
            &format!("/api/v1/ledger?limit=2&before={cursor}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(rest, json!([ledger[2]]));
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("before=x", "before"),
    ] {
        let (status, body) = m
            .call("GET", &format!("/api/v1/ledger?{query}"), Some(&bob), None)
            .await;
        assert_eq!(
            (status, body["error"]["field"].clone()),
            (StatusCode::BAD_REQUEST, json!(field)),
            "{query}"
        );
    }

    // Alice cancels; the bid is cancelled and stays readable by its owner.
    let (status, cancelled) = m
        .call(
            "DELETE",
            &format!("/api/v1/bids/{alice_bid}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], json!("cancelled"));
    // Bob may not see Alice's bid at all.
    let (status, _) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{alice_bid}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let m = Market::start(|_| {}).await;
    let (host, machine, _) = m.machine_with_gpus(1).await;
    let (_, client) = m.register("c", &["client"]).await;

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"machine": machine, "price": "ten", "image": "a", "oc": [{"pl": 200}]}),
            "price",
        ),
        (
            json!({"machine": machine, "price": 1e300, "image": "a", "oc": [{"pl": 200}]}),
            "price",
        ),
        (
            json!({"machine": machine, "price": -1.0, "image": "a", "oc": [{"pl": 200}]}),
            "price",
        ),
        (
            json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 999}]}),
            "oc[0].pl",
        ),
        (
            json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{}]}),
            "oc[0].pl",
        ),
        (
            json!({"machine": machine, "price": 10.0, "image": "", "oc": [{"pl": 200}]}),
            "image",
        ),
        (
            json!({"machine": 999, "price": 10.0, "image": "a", "oc": [{"pl": 200}]}),
            "machine",
        ),
        (
            json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}], "colour": 1}),
            "",
        ),
        (json!([1, 2, 3]), ""),
    ];
    for (body, field) in cases {
        let (status, answer) = m
            .call("POST", "/api/v1/bids", Some(&client), Some(body.clone()))
            .await;
        assert!(status.is_client_error(), "{body} gave {status} {answer}");
        let error = &answer["error"];
        assert!(error["reason"].is_string(), "{answer}");
        if !field.is_empty() {
            assert_eq!(error["field"], json!(field), "{body} gave {answer}");
        }
    }
    // Malformed JSON and a huge body.
    let resp = m
        .http
        .post(format!("{}/api/v1/bids", m.base))
        .bearer_auth(&client)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let huge = json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}], "env": {"K": "v".repeat(200_000)}});
    let resp = send_tolerating_reset(|| {
        m.http
            .post(format!("{}/api/v1/bids", m.base))
            .bearer_auth(&client)
            .json(&huge)
    })
    .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was stored.
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&client), None).await;
    assert_eq!(mine, json!([]));
    // Without a key, with a wrong key, with the wrong role.
    assert_eq!(
        m.call("GET", "/api/v1/balance", None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        m.call("GET", "/api/v1/balance", Some("gs_nope"), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/deposits",
            Some(&client),
            Some(json!({"account": 1, "amount": 5.0, "reference": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&host),
            Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        m.call("GET", "/api/v1/nope", None, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_creates_one_bid() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, client) = m.funded_client("c", 10.0).await;
    let bid = json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]});
    let mut ids = Vec::new();
    // A repeat answers 200 with the first bid, also within the same second (the clock
    // does not move between the first two requests).
    for expected in [StatusCode::CREATED, StatusCode::OK, StatusCode::OK] {
        let resp = m
            .http
            .post(format!("{}/api/v1/bids", m.base))
            .bearer_auth(&client)
            .header("Idempotency-Key", "once")
            .json(&bid)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected);
        ids.push(resp.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&client), None).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
}

/// A 429 with a whole-seconds `Retry-After` of at least 1 and a reason mentioning `reason`.
async fn assert_rate_limited(resp: reqwest::Response, reason: &str) {
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["reason"].as_str().unwrap().contains(reason),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_rate_limited_with_an_integer_retry_after() {
    let m = Market::start(|c| c.rate_limit_per_minute = 3).await;
    let (_, key) = m.register("c", &["client"]).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = m
            .http
            .get(format!("{}/api/v1/balance", m.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(resp, "too many requests").await;
        }
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_limited_per_network() {
    let m = Market::start(|c| c.anonymous_rate_limit_per_minute = 3).await;
    // Registration is anonymous: it takes the first of the network's three tokens.
    let (_, key) = m.register("c", &["client"]).await;
    for _ in 0..2 {
        let (status, _) = m.call("GET", "/api/v1/machines", None, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let resp = m
        .http
        .get(format!("{}/api/v1/machines", m.base))
        .send()
        .await
        .unwrap();
    assert_rate_limited(resp, "without an API key").await;
    // Neither is a forged X-Forwarded-For from a peer that is not a trusted proxy, nor a
    // made-up key, on the native or the Clore-compatible surface; registration is refused too.
    let resp = m
        .http
        .get(format!("{}/api/v1/machines", m.base))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let bogus = "gs_0000000000000000000000000000000000000000000000000000000000000000";
    let (status, _) = m.call("GET", "/api/v1/machines", Some(bogus), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let resp = m
        .http
        .get(format!("{}/v1/get_gigaspot", m.base))
        .header("auth", bogus)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": 5}));
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/accounts",
            None,
            Some(json!({"name": "spam", "roles": ["client"]})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // A valid key is served on its own budget, on both surfaces.
    let (status, _) = m.call("GET", "/api/v1/machines", Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);
    let resp = m
        .http
        .get(format!("{}/v1/get_gigaspot", m.base))
        .header("auth", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let m = Market::start(|c| {
        c.anonymous_rate_limit_per_minute = 2;
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let get = |client: &'static str| {
        m.http
            .get(format!("{}/api/v1/machines", m.base))
            .header("x-forwarded-for", client)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(get("198.51.100.7").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        get("198.51.100.7").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client's own claim to the left of the proxy's entry changes nothing.
    assert_eq!(
        get("203.0.113.1, 198.51.100.7").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(get("198.51.100.8").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_route_refuses_malformed_input_with_a_4xx_and_keeps_state() {
    let m = Market::start(|_| {}).await;
    let (host, machine, agent) = m.machine().await;
    let (_, client) = m.funded_client("c", 10.0).await;
    let (_, created) = m.call("POST", "/api/v1/bids", Some(&client), Some(json!({"machine": machine, "price": 5.0, "image": "a", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]}))).await;
    let bid = created["id"].as_u64().unwrap();
    let routes: Vec<(&str, String, &str)> = vec![
        ("POST", "/api/v1/accounts".into(), ""),
        ("POST", "/api/v1/deposits".into(), OPERATOR_KEY),
        ("POST", "/api/v1/machines".into(), &host),
        ("PATCH", format!("/api/v1/machines/{machine}"), &host),
        ("POST", "/api/v1/bids".into(), &client),
        ("PATCH", format!("/api/v1/bids/{bid}"), &client),
        ("POST", "/api/v1/agent/heartbeat".into(), &agent),
        ("PUT", "/api/v1/params".into(), OPERATOR_KEY),
        ("PUT", "/api/v1/gpu-table".into(), OPERATOR_KEY),
        (
            "PUT",
            "/api/v1/plugins/validators/order".into(),
            OPERATOR_KEY,
        ),
    ];
    let before = (
        m.balance(&client).await,
        m.call("GET", &format!("/api/v1/bids/{bid}"), Some(&client), None)
            .await
            .1,
        m.call("GET", &format!("/api/v1/machines/{machine}"), None, None)
            .await
            .1,
    );
    let bodies: Vec<(String, &str)> = vec![
        ("{not json".into(), "malformed JSON"),
        ("[1, 2, 3]".into(), "wrong type"),
        (r#"{"price": "x", "amount": "x", "gpus": 1, "working": "yes", "names": 1, "billing_interval_s": -5, "models": 3, "name": 7, "energy_price": "hot", "account": -1}"#.into(), "wrong types"),
        (r#"{"price": 1e400, "amount": 1e400, "energy_price": 1e400, "reserve_price": -3}"#.into(), "out of range"),
        (format!(r#"{{"name": "{}"}}"#, "x".repeat(100_000)), "huge"),
    ];
    for (method, path, key) in &routes {
        for (body, what) in &bodies {
            let resp = send_tolerating_reset(|| {
                let req = m
                    .http
                    .request(method.parse().unwrap(), format!("{}{path}", m.base))
                    .header("content-type", "application/json")
                    .body(body.clone());
                if key.is_empty() {
                    req
                } else {
                    req.bearer_auth(key)
                }
            })
            .await;
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert!(
                status.is_client_error(),
                "{method} {path} with {what}: {status} {text}"
            );
            let answer: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path} with {what}: not JSON: {text}"));
            assert!(
                answer["error"]["reason"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} with {what}: {answer}"
            );
        }
    }
    let after = (
        m.balance(&client).await,
        m.call("GET", &format!("/api/v1/bids/{bid}"), Some(&client), None)
            .await
            .1,
        m.call("GET", &format!("/api/v1/machines/{machine}"), None, None)
            .await
            .1,
    );
    assert_eq!(before, after, "nothing already stored changed");
    let (_, params) = m.call("GET", "/api/v1/params", Some(&client), None).await;
    assert_eq!(params["billing_interval_s"], json!(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_and_the_operator_key_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let config = |key: Option<&str>| gigaspot_server::config::Config {
        data_dir: dir.path().join("data"),
        operator_key: key.map(str::to_owned),
        open_registration: false,
        ..Default::default()
    };
    let (state, generated) = gigaspot_server::serve::prepare(config(None)).unwrap();
    let key = generated.expect("a key is generated on the first start");
    assert!(key.starts_with("gs_") && key.len() == 67);
    drop(state);
    let (_, again) = gigaspot_server::serve::prepare(config(None)).unwrap();
    assert!(again.is_none(), "shown once: not generated again");

    let m = Market::start(|c| c.open_registration = false).await;
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/accounts",
            None,
            Some(json!({"name": "x", "roles": ["client"]})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/accounts",
            Some(OPERATOR_KEY),
            Some(json!({"name": "x", "roles": ["client"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_told_to_pre_pull_the_best_losers_images_and_its_telemetry_is_shown() {
    let m = Market::start(|_| {}).await;
    let (_, machine, agent) = m.machine().await;
    let mut bids = Vec::new();
    for (name, price, image) in [
        ("winner", 100.0, "registry.example/win:1"),
        ("second", 90.0, "registry.example/second:1"),
        ("third", 80.0, "registry.example/third:1"),
        ("fourth", 70.0, "registry.example/fourth:1"),
        ("fifth", 60.0, "registry.example/fifth:1"),
    ] {
        let (_, key) = m.funded_client(name, 1000.0).await;
        let (status, bid) = m
            .call(
                "POST",
                "/api/v1/bids",
                Some(&key),
                Some(json!({"machine": machine, "price": price, "image": image, "oc": oc(300)})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bid}");
        bids.push(bid["id"].as_u64().unwrap());
    }
    m.tick(60).await;
    let heartbeat = |cached: Value| {
        json!({
            "working": true,
            "running_bid": bids[0],
            "applied": true,
            "cached_images": cached,
            "measured_power_w": [290, 291, 292, 293],
            "applied_settings": [{"power_limit_w": 300, "core_lock_mhz": null, "mem_lock_mhz": null, "core_offset_mhz": null, "mem_offset_mhz": null}],
            "workload": {"bid": bids[0], "state": "running", "exit_code": null},
            "last_error": null,
        })
    };
    let (status, desired) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(heartbeat(json!(["registry.example/win:1"]))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{desired}");
    assert_eq!(desired["workload"]["bid"], json!(bids[0]));
    // The three best-scored losers, best first.
    assert_eq!(
        desired["prepull"],
        json!([
            "registry.example/second:1",
            "registry.example/third:1",
            "registry.example/fourth:1"
        ])
    );
    // Images already cached are not asked for again.
    let (_, desired) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(heartbeat(json!(["registry.example/second:1"]))),
        )
        .await;
    assert_eq!(
        desired["prepull"],
        json!([
            "registry.example/third:1",
            "registry.example/fourth:1",
            "registry.example/fifth:1"
        ])
    );
    // A heartbeat that repeats the last one writes nothing, so the published snapshot stays
    // current; the new measured power is still shown.
    let generation = m.state.store.generation();
    let mut same = heartbeat(json!(["registry.example/second:1"]));
    same["measured_power_w"] = json!([280, 281, 282, 283]);
    let (status, _) = m
        .call("POST", "/api/v1/agent/heartbeat", Some(&agent), Some(same))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        m.state.store.generation(),
        generation,
        "an unchanged heartbeat writes nothing"
    );
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    let reported = &shown["agent"];
    assert_eq!(reported["running_bid"], json!(bids[0]));
    assert_eq!(reported["workload"]["state"], json!("running"));
    assert_eq!(reported["measured_power_w"], json!([280, 281, 282, 283]));
    assert_eq!(reported["applied_settings"][0]["power_limit_w"], json!(300));
    assert_eq!(
        reported["cached_images"],
        json!(["registry.example/second:1"])
    );
    assert!(reported["last_error"].is_null());

    // An error the agent reports is visible to everyone looking at the machine.
    let (status, _) = m
        .call("POST", "/api/v1/agent/heartbeat", Some(&agent), Some(json!({"working": true, "running_bid": null, "last_error": "bid 1 not started: gpu 0: set power limit failed"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, shown) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(
        shown["agent"]["last_error"],
        json!("bid 1 not started: gpu 0: set power limit failed")
    );
    m.stop().await;
}
