//! The host's background job over HTTP: set at registration and with PATCH, checked like
//! a bid's settings, the ceiling that follows it (views, snapshot, clearing), the minimum
//! bid its earnings raise, the desired state an agent gets, and all of it across a restart.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::Market;

/// Two RTX 4090s (150–450 W) without explicit ceilings, with a background job at `pl` W.
fn registration(pl: u32) -> Value {
    let gpus: Vec<Value> = (0..2)
        .map(|i| json!({"model": "NVIDIA GeForce RTX 4090", "uuid": format!("GPU-{i}"), "card_min_w": 150, "card_max_w": 450}))
        .collect();
    json!({
        "gpus": gpus,
        "energy_price": 0.0,
        "background_job": {
            "image": "registry.example/miner:1",
            "env": {"WALLET": "secret-wallet-address"},
            "oc": [{"pl": pl, "core_offset": 100}, {"pl": pl}]
        }
    })
}

async fn view(m: &Market, machine: u64) -> Value {
    let (status, body) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn patch(m: &Market, host: &str, machine: u64, body: Value) -> (StatusCode, Value) {
    m.call(
        "PATCH",
        &format!("/api/v1/machines/{machine}"),
        Some(host),
        Some(body),
    )
    .await
}

/// The machine's entry in the published Clore-style snapshot.
async fn snapshot_entry(m: &Market, key: &str, machine: u64) -> Value {
    m.snapshot(key).await[machine.to_string()].clone()
}

async fn heartbeat(m: &Market, agent: &str) -> Value {
    m.idle_heartbeat(agent).await
}

fn ceilings(view: &Value) -> Vec<u64> {
    view["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["ceiling_w"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ceiling_follows_the_background_job_and_an_over_limit_bid_becomes_ineligible() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(registration(400)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let agent = body["agent_token"].as_str().unwrap().to_owned();
    let shown = &body["machine"];
    assert_eq!(ceilings(shown), vec![400, 400]);
    assert_eq!(shown["explicit_ceilings"], json!(false));
    let job = &shown["background_job"];
    assert_eq!(job["image"], json!("registry.example/miner:1"));
    assert_eq!(job["env_keys"], json!(["WALLET"]));
    assert!(
        !body.to_string().contains("secret-wallet-address"),
        "env values are never shown: {body}"
    );
    assert_eq!(job["oc"][0]["power_limit_w"], json!(400));
    assert_eq!(job["oc"][0]["core_offset_mhz"], json!(100));
    assert_eq!(job["revision"].as_str().unwrap().len(), 16);

    // The agent of an idle machine is told to run it.
    let desired = heartbeat(&m, &agent).await;
    assert_eq!(desired["workload"], Value::Null);
    assert_eq!(
        desired["background"]["image"],
        json!("registry.example/miner:1")
    );
    assert_eq!(
        desired["background"]["env"]["WALLET"],
        json!("secret-wallet-address")
    );
    assert_eq!(desired["background"]["oc"][1]["power_limit_w"], json!(400));

    // Bids may ask for up to the background job's limit, not more.
    let (_, client) = m.funded_client("client", 1000.0).await;
    let bid_at = |pl: u32| json!({"machine": machine, "price": 50.0, "image": "registry.example/app:1", "oc": [{"pl": pl}, {"pl": pl}]});
    let (status, refused) = m
        .call("POST", "/api/v1/bids", Some(&client), Some(bid_at(401)))
        .await;
    assert!(status.is_client_error(), "{refused}");
    assert_eq!(refused["error"]["field"], json!("oc[0].pl"), "{refused}");
    let (status, bid) = m
        .call("POST", "/api/v1/bids", Some(&client), Some(bid_at(380)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bid}");
    let bid = bid["id"].as_u64().unwrap();
    m.tick(0).await;
    assert_eq!(view(&m, machine).await["current_bid"], json!(bid));
    // A winner's machine runs the bid: no background job in the desired state.
    let desired = heartbeat(&m, &agent).await;
    assert_eq!(desired["workload"]["bid"], json!(bid));
    assert_eq!(desired["background"], Value::Null);

    // The host lowers its background job's limit: the ranges follow at once.
    let lowered = json!({"background_job": {"image": "registry.example/miner:1", "env": {"WALLET": "w"}, "oc": [{"pl": 300}, {"pl": 300}]}});
    let (status, changed) = patch(&m, &host, machine, lowered).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(ceilings(&changed), vec![300, 300]);
    assert_eq!(ceilings(&view(&m, machine).await), vec![300, 300]);
    m.tick(60).await;
    let entry = snapshot_entry(&m, &client, machine).await;
    assert_eq!(entry["gpus"][0]["pl"], json!([150, 300]), "{entry}");
    // The 380 W bid is not deleted: it is ineligible, with the reason.
    let (status, decision) = m
        .call(
            "GET",
            &format!("/api/v1/bids/{bid}/decision"),
            Some(&client),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    let verdict = &decision["verdict"];
    assert_eq!(verdict["Ineligible"]["code"], json!("no-longer-admissible"));
    let message = verdict["Ineligible"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("oc[0].pl") && message.contains("300"),
        "{verdict}"
    );
    assert_eq!(
        decision["state"],
        json!("active"),
        "not deleted: {decision}"
    );
    assert_eq!(view(&m, machine).await["current_bid"], Value::Null);
    // Idle again: the background job is wanted, with its new limits.
    let desired = heartbeat(&m, &agent).await;
    assert_eq!(desired["background"]["oc"][0]["power_limit_w"], json!(300));

    // Explicit ceilings win over the background job; `null` makes them follow it again.
    let (status, explicit) = patch(&m, &host, machine, json!({"ceilings_w": [420, 410]})).await;
    assert_eq!(status, StatusCode::OK, "{explicit}");
    assert_eq!(ceilings(&explicit), vec![420, 410]);
    assert_eq!(explicit["explicit_ceilings"], json!(true));
    let (status, follows) = patch(&m, &host, machine, json!({"ceilings_w": null})).await;
    assert_eq!(status, StatusCode::OK, "{follows}");
    assert_eq!(ceilings(&follows), vec![300, 300]);
    assert_eq!(follows["explicit_ceilings"], json!(false));

    // Removing the job: the card maximum, and the machine idles.
    let (status, removed) = patch(&m, &host, machine, json!({"background_job": null})).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["background_job"], Value::Null);
    assert_eq!(ceilings(&removed), vec![450, 450]);
    assert_eq!(heartbeat(&m, &agent).await["background"], Value::Null);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn background_earnings_raise_the_minimum_bid_and_say_so() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let mut body = registration(400);
    body["background_earnings"] = json!(12.5);
    body["reserve_price"] = json!(10);
    let (status, created) = m
        .call("POST", "/api/v1/machines", Some(&host), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let machine = created["machine"]["id"].as_u64().unwrap();
    heartbeat(&m, created["agent_token"].as_str().unwrap()).await;
    let shown = &created["machine"];
    assert_eq!(shown["min_bid"], json!(12.5));
    assert_eq!(shown["min_bid_from"], json!("background_earnings"));
    assert_eq!(shown["background_earnings"], json!(12.5));
    assert_eq!(shown["reserve_price"], json!(10.0));
    let (_, client) = m.funded_client("client", 1000.0).await;
    let bid_at = |price: f64| json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}, {"pl": 200}]});
    let (status, refused) = m
        .call("POST", "/api/v1/bids", Some(&client), Some(bid_at(12.0)))
        .await;
    assert!(status.is_client_error(), "{refused}");
    assert_eq!(refused["error"]["field"], json!("price"));
    assert!(
        refused["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("12.5"),
        "{refused}"
    );
    let (status, placed) = m
        .call("POST", "/api/v1/bids", Some(&client), Some(bid_at(12.5)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    m.tick(0).await;
    let entry = snapshot_entry(&m, &client, machine).await;
    assert_eq!(entry["min_bid"], json!(12.5), "{entry}");
    assert_eq!(entry["min_bid_from"], json!("background_earnings"));
    assert_eq!(entry["background_earnings"], json!(12.5));

    // The host declares more: the floor moves; the reserve sets it once earnings drop.
    let (status, raised) = patch(&m, &host, machine, json!({"background_earnings": 30})).await;
    assert_eq!(status, StatusCode::OK, "{raised}");
    assert_eq!(raised["min_bid"], json!(30.0));
    let (status, dropped) = patch(&m, &host, machine, json!({"background_earnings": 0})).await;
    assert_eq!(status, StatusCode::OK, "{dropped}");
    assert_eq!(dropped["min_bid"], json!(10.0));
    assert_eq!(dropped["min_bid_from"], json!("reserve_price"));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_background_job_is_refused_naming_the_field_and_changes_nothing() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let (_, other_host) = m.register("other", &["host"]).await;
    let (status, created) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(registration(400)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let machine = created["machine"]["id"].as_u64().unwrap();
    let before = view(&m, machine).await;
    let job = |oc: Value, image: &str| json!({"background_job": {"image": image, "oc": oc}});
    let cases = [
        (
            job(json!([{"pl": 451}, {"pl": 300}]), "miner:1"),
            "background_job.oc[0].pl",
        ),
        (
            job(json!([{"pl": 100}, {"pl": 300}]), "miner:1"),
            "background_job.oc[0].pl",
        ),
        (
            job(json!([{"pl": 300}, {}]), "miner:1"),
            "background_job.oc[1].pl",
        ),
        (job(json!([{"pl": 300}]), "miner:1"), "background_job.oc"),
        (
            job(
                json!([{"pl": 300}, {"pl": 300, "mem_offset": 99999}]),
                "miner:1",
            ),
            "background_job.oc[1].mem_offset",
        ),
        (
            job(json!([{"pl": 300}, {"pl": 300}]), "not an image"),
            "background_job.image",
        ),
        (
            json!({"background_earnings": 5000.00000001}),
            "background_earnings",
        ),
        (json!({"background_earnings": -1}), "background_earnings"),
        (
            json!({"background_job": {"image": "miner:1", "oc": [{"pl": 300}, {"pl": 300}], "env": {"K": "v".repeat(2000)}}}),
            "background_job.env.K",
        ),
        (
            json!({"background_job": {"image": "miner:1", "oc": [{"pl": 300}, {"pl": 300}], "cmd": "x"}}),
            "",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = patch(&m, &host, machine, body.clone()).await;
        assert!(status.is_client_error(), "{body}: {status} {answer}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], json!(field), "{body}: {answer}");
        }
        assert!(answer["error"]["reason"].is_string(), "{answer}");
        assert_eq!(
            view(&m, machine).await,
            before,
            "{body} changed the machine"
        );
    }
    // The same checks at registration: nothing is registered.
    let mut bad = registration(460);
    bad["gpus"][0]["card_max_w"] = json!(450);
    let (status, answer) = m
        .call("POST", "/api/v1/machines", Some(&host), Some(bad))
        .await;
    assert!(status.is_client_error(), "{answer}");
    assert_eq!(answer["error"]["field"], json!("background_job.oc[0].pl"));
    let (_, all) = m.call("GET", "/api/v1/machines", None, None).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    // Another host cannot touch it.
    let (status, _) = patch(&m, &other_host, machine, json!({"background_job": null})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(view(&m, machine).await, before);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_job_and_its_settings_survive_a_restart() {
    let m = Market::start(|_| {}).await;
    let (_, host) = m.register("host", &["host"]).await;
    let mut body = registration(350);
    body["background_earnings"] = json!(7.25);
    let (status, created) = m
        .call("POST", "/api/v1/machines", Some(&host), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let machine = created["machine"]["id"].as_u64().unwrap();
    let agent = created["agent_token"].as_str().unwrap().to_owned();
    let (status, _) = patch(&m, &host, machine, json!({"ceilings_w": [300, 320]})).await;
    assert_eq!(status, StatusCode::OK);
    let before = view(&m, machine).await;
    let dir = m.stop_keeping_data().await;

    let m = Market::start_in(dir, |_| {}).await;
    let after = view(&m, machine).await;
    for field in [
        "background_job",
        "background_earnings",
        "explicit_ceilings",
        "gpus",
        "min_bid",
        "min_bid_from",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(ceilings(&after), vec![300, 320]);
    // The new process hands the agent the same job.
    let desired = heartbeat(&m, &agent).await;
    assert_eq!(
        desired["background"]["env"]["WALLET"],
        json!("secret-wallet-address")
    );
    assert_eq!(desired["background"]["oc"][0]["power_limit_w"], json!(350));
    m.stop().await;
}
