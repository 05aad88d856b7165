//! The product description's own example, with the numbers written out so that a reader
//! can check them by hand: an RTX 4090-class machine whose host allows up to 450 W, one
//! bid at 280 W and one at 450 W.
//!
//! Market: 1 GPU, card range 150–450 W, host ceiling 450 W, electricity 0.15 USD/kWh,
//! 1 CLORE = 0.02 USD, billing interval 60 s, operator fee 2.5 %.
//!
//! Energy floors (a day at the bid's own power limit):
//! - 280 W: 280 × 24 / 1000 = 6.72 kWh × 0.15 = 1.008 USD / 0.02 = 50.4 CLORE/day
//! - 450 W: 450 × 24 / 1000 = 10.8 kWh × 0.15 = 1.62 USD / 0.02 = 81 CLORE/day
//! - min_bid (card minimum, 150 W): 3.6 kWh × 0.15 = 0.54 USD / 0.02 = 27 CLORE/day
//!
//! Bids: A = 60 CLORE/day at 280 W, B = 95 CLORE/day at 450 W.
//! - price per watt: A 60 / 280 = 0.2142857, B 95 / 450 = 0.2111111 → A wins
//! - net profit (USD/day): A 60 × 0.02 − 1.008 = 0.192, B 95 × 0.02 − 1.62 = 0.28 → B wins
//!
//! Charges for one served 60 s interval (rounded down to 10^-8 CLORE):
//! - A: 60 × 60 / 86400 = 0.04166666 CLORE; fee 2.5 % = 0.00104166; host 0.04062500
//! - B: 95 × 60 / 86400 = 0.06597222 CLORE; fee 2.5 % = 0.00164930; host 0.06432292

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{Market, OPERATOR_KEY};

fn units(clore: f64) -> i64 {
    (clore * 1e8).round() as i64
}

async fn units_of(m: &Market, key: &str) -> i64 {
    units(m.balance(key).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_450_w_ceiling_with_bids_at_280_w_and_450_w() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({
                "gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0",
                          "card_min_w": 150, "card_max_w": 450, "ceiling_w": 450}],
                "energy_price": 0.15,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let agent = body["agent_token"].as_str().unwrap().to_owned();
    assert_eq!(body["machine"]["min_bid"], json!(27.0));
    let beat = |running: Option<u64>| json!({"working": true, "running_bid": running, "applied": running.is_some()});
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/agent/heartbeat",
            Some(&agent),
            Some(beat(None)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = m.funded_client("a", 100.0).await;
    let (_, b) = m.funded_client("b", 100.0).await;
    let bid = |price: f64, pl: u32| json!({"machine": machine, "price": price, "image": "registry.example/job:1", "oc": [{"pl": pl}]});

    // Admission: each bid must cover the energy of its own power limit.
    for (key, price, pl, floor) in [
        (&a, 50.39999999, 280, "50.40000000"),
        (&b, 80.99999999, 450, "81.00000000"),
    ] {
        let (status, body) = m
            .call("POST", "/api/v1/bids", Some(key), Some(bid(price, pl)))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], json!("price"));
        assert!(body.to_string().contains(floor), "{body}");
    }
    // Above the ceiling is refused too.
    let (status, _) = m
        .call("POST", "/api/v1/bids", Some(&a), Some(bid(200.0, 451)))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body_a) = m
        .call("POST", "/api/v1/bids", Some(&a), Some(bid(60.0, 280)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body_a}");
    let (status, body_b) = m
        .call("POST", "/api/v1/bids", Some(&b), Some(bid(95.0, 450)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body_b}");
    let (bid_a, bid_b) = (
        body_a["id"].as_u64().unwrap(),
        body_b["id"].as_u64().unwrap(),
    );

    // Price per watt (the default strategy, as a WebAssembly plugin): A wins.
    m.install_and_activate("price-per-watt", "").await;
    m.tick(60).await;
    let (_, decision) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{bid_b}/decision"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(decision["winner"], json!(bid_a), "{decision}");
    let score_a = decision["winning_score"].as_f64().unwrap();
    assert!((score_a - 60.0 / 280.0).abs() < 1e-12, "{score_a}");
    let score_b = decision["verdict"]["Scored"]["score"].as_f64().unwrap();
    assert!((score_b - 95.0 / 450.0).abs() < 1e-12, "{decision}");

    // The agent serves A the whole interval; the next boundary charges one interval.
    m.serve(&agent, bid_a).await;
    let operator_before = units_of(&m, OPERATOR_KEY).await;
    // Net profit from now on: B wins the next interval.
    m.install_and_activate("net-profit", "").await;
    m.tick(60).await;
    assert_eq!(units_of(&m, &a).await, 10_000_000_000 - 4_166_666);
    assert_eq!(units_of(&m, &host).await, 4_062_500);
    assert_eq!(units_of(&m, OPERATOR_KEY).await - operator_before, 104_166);
    let (_, decision) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{bid_a}/decision"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(decision["winner"], json!(bid_b), "{decision}");
    let score_b = decision["winning_score"].as_f64().unwrap();
    assert!((score_b - 0.28).abs() < 1e-9, "{decision}");
    let score_a = decision["verdict"]["Scored"]["score"].as_f64().unwrap();
    assert!((score_a - 0.192).abs() < 1e-9, "{decision}");

    // The agent serves B the whole interval; the next boundary charges one interval.
    m.serve(&agent, bid_b).await;
    m.tick(60).await;
    assert_eq!(units_of(&m, &b).await, 10_000_000_000 - 6_597_222);
    assert_eq!(units_of(&m, &host).await, 4_062_500 + 6_432_292);
    assert_eq!(
        units_of(&m, OPERATOR_KEY).await - operator_before,
        104_166 + 164_930
    );
}
