//! Money leaves the market: withdrawal requests, the operator's payout or rejection, the
//! money committed to winning bids, and the ledger audit over all of it.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY};

async fn withdraw(m: &Market, key: &str, body: Value, idem: Option<&str>) -> (StatusCode, Value) {
    let mut req = m
        .http
        .post(format!("{}/api/v1/withdrawals", m.base))
        .bearer_auth(key)
        .json(&body);
    if let Some(k) = idem {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_reserve_at_once_and_the_operator_pays_or_rejects() {
    let m = Market::start(|_| {}).await;
    let (host, machine, agent) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 100.0).await;
    // A winning bid at 1440 CLORE/day commits 1 CLORE for the 60 s interval in progress.
    let (status, bid) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 1440.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bid}");
    m.tick(60).await;
    // Bad input: named field, nothing moved.
    for (body, field, status) in [
        (
            json!({"amount": 99.5, "destination": "wallet-1"}),
            "amount",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"amount": 1.000000001, "destination": "wallet-1"}),
            "amount",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"amount": -1, "destination": "wallet-1"}),
            "amount",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"amount": 0, "destination": "wallet-1"}),
            "amount",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"amount": 1, "destination": " "}),
            "destination",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"amount": 1}),
            "destination",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, reply) = withdraw(&m, &key, body.clone(), None).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(
            reply.to_string().contains(field),
            "{body}: {reply} should name {field}"
        );
    }
    assert_eq!(m.balance(&key).await, 100.0);
    // 99 of the 100 are free: the committed 1 CLORE stays.
    let (status, first) = withdraw(
        &m,
        &key,
        json!({"amount": 50, "destination": "wallet-1"}),
        Some("w-1"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["state"], json!("pending"));
    let (status, again) = withdraw(
        &m,
        &key,
        json!({"amount": 50, "destination": "wallet-1"}),
        Some("w-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a repeat answers the first request");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(m.balance(&key).await, 50.0);
    let (status, reply) = withdraw(
        &m,
        &key,
        json!({"amount": 49.00000001, "destination": "w"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, second) = withdraw(
        &m,
        &key,
        json!({"amount": 49, "destination": "wallet-2"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(m.balance(&key).await, 1.0);

    // Only operators settle; they see every pending request.
    let (first_id, second_id) = (
        first["id"].as_u64().unwrap(),
        second["id"].as_u64().unwrap(),
    );
    let (status, _) = m
        .call(
            "POST",
            &format!("/api/v1/withdrawals/{first_id}/paid"),
            Some(&host),
            Some(json!({"reference": "tx-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, pending) = m
        .call(
            "GET",
            "/api/v1/withdrawals?state=pending",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 2, "{pending}");
    let (status, paid) = m
        .call(
            "POST",
            &format!("/api/v1/withdrawals/{first_id}/paid"),
            Some(OPERATOR_KEY),
            Some(json!({"reference": "tx-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(
        (paid["state"].clone(), paid["reference"].clone()),
        (json!("paid"), json!("tx-1"))
    );
    let (status, rejected) = m
        .call(
            "POST",
            &format!("/api/v1/withdrawals/{second_id}/rejected"),
            Some(OPERATOR_KEY),
            Some(json!({"reason": "unknown wallet"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(m.balance(&key).await, 50.0, "a rejected amount returns");
    // Settled once only; unknown ids are 404.
    let (status, _) = m
        .call(
            "POST",
            &format!("/api/v1/withdrawals/{first_id}/rejected"),
            Some(OPERATOR_KEY),
            Some(json!({"reason": "late"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/withdrawals/999999/paid",
            Some(OPERATOR_KEY),
            Some(json!({"reference": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The client sees its own, settled, withdrawals and the ledger lines.
    let (_, mine) = m.call("GET", "/api/v1/withdrawals", Some(&key), None).await;
    let states: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["paid", "rejected"]);
    let (_, ledger) = m.call("GET", "/api/v1/ledger", Some(&key), None).await;
    let kinds: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "withdrawal_return",
            "withdrawal_request",
            "withdrawal_request",
            "deposit"
        ]
    );
    // The interval is still served and charged from the committed money.
    m.serve(&agent, bid["id"].as_u64().unwrap()).await;
    m.tick(60).await;
    assert_eq!(m.balance(&key).await, 49.0);
    // Double entry holds: deposits − paid withdrawals = all balances, and the pending
    // account holds exactly the pending requests (none now).
    let report = m.state.store.audit().unwrap();
    assert_eq!(report.deposits.0, 100 * 100_000_000);
    assert_eq!(report.withdrawals.0, 50 * 100_000_000);
    assert_eq!(report.total_balance.0, 50 * 100_000_000);
}
