//! Backups with the real binary: `gigaspot backup --url` copies a running market while
//! clients write to it, `gigaspot backup --data-dir` copies a stopped one, and `gigaspot
//! restore` rebuilds a data folder that a new `gigaspot serve` runs with the same balances,
//! bids and plugin versions, and that passes `gigaspot ledger audit`. Damaged backups and
//! occupied folders are refused without creating anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gigaspot_tests::process::Served;
use reqwest::Client;
use serde_json::{Value, json};

const OPERATOR_KEY: &str = "gs_operator_key_for_backup_tests_0123456789";

fn serve(data: &Path) -> Served {
    Served::start(
        env!("CARGO_BIN_EXE_gigaspot"),
        data,
        &[("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY)],
    )
}

fn gigaspot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gigaspot"))
        .args(args)
        .env("GIGASPOT_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .unwrap()
}

fn succeeded(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

async fn call(
    http: &Client,
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Restores `backup` into `folder`, checks that its ledger audits, and serves it.
fn restore_audit_and_serve(backup: &Path, folder: &Path) -> Served {
    let (backup, folder) = (backup.to_str().unwrap(), folder.to_str().unwrap());
    succeeded(&gigaspot(&[
        "restore",
        "--from",
        backup,
        "--data-dir",
        folder,
    ]));
    let audit = succeeded(&gigaspot(&["ledger", "audit", "--data-dir", folder]));
    assert!(audit.contains("ledger audit passed"), "{audit}");
    serve(Path::new(folder))
}

/// What a restored market must reproduce: the client's balance, the bids' terms, the
/// installed plugin versions and the active strategy.
async fn market_view(
    http: &Client,
    base: &str,
    client: &str,
) -> (Value, BTreeMap<u64, Value>, Value) {
    let (_, balance) = call(http, base, "GET", "/api/v1/balance", Some(client), None).await;
    let (_, bids) = call(http, base, "GET", "/api/v1/bids", Some(client), None).await;
    let bids = bids
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let terms = json!([
                b["id"],
                b["machine"],
                b["price"],
                b["image"],
                b["oc"],
                b["created_at"],
                b["expires_at"]
            ]);
            (b["id"].as_u64().unwrap(), terms)
        })
        .collect();
    let (_, plugins) = call(
        http,
        base,
        "GET",
        "/api/v1/plugins",
        Some(OPERATOR_KEY),
        None,
    )
    .await;
    let versions: Vec<Value> = plugins["versions"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|p| json!([p["digest"], p["name"], p["config"]]))
                .collect()
        })
        .unwrap_or_default();
    (
        balance["balance"].clone(),
        bids,
        json!({"versions": versions, "active": plugins["active_strategy"]["digest"]}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_running_market_restores_to_the_same_market() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let base = served.base.clone();
    let http = Client::new();

    // A market with money, a machine, bids and an uploaded, active strategy.
    let (_, client) = call(
        &http,
        &base,
        "POST",
        "/api/v1/accounts",
        None,
        Some(json!({"name": "c", "roles": ["client"]})),
    )
    .await;
    let client_id = client["account"]["id"].as_u64().unwrap();
    let client = client["api_key"].as_str().unwrap().to_owned();
    let (_, host) = call(
        &http,
        &base,
        "POST",
        "/api/v1/accounts",
        None,
        Some(json!({"name": "h", "roles": ["host"]})),
    )
    .await;
    let host = host["api_key"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &http,
        &base,
        "POST",
        "/api/v1/deposits",
        Some(OPERATOR_KEY),
        Some(json!({"account": client_id, "amount": 500.12345678, "reference": "seed"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(&http, &base, "POST", "/api/v1/machines", Some(&host), Some(json!({"gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 450, "ceiling_w": 400}], "energy_price": 0.0}))).await;
    assert_eq!(status, 201, "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let agent = body["agent_token"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &http,
        &base,
        "POST",
        "/api/v1/agent/heartbeat",
        Some(&agent),
        Some(json!({"working": true, "running_bid": null})),
    )
    .await;
    assert_eq!(status, 200);
    let bid = |price: u64| json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}]});
    for price in 1..=5 {
        let (status, body) = call(
            &http,
            &base,
            "POST",
            "/api/v1/bids",
            Some(&client),
            Some(bid(price)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let resp = http
        .post(format!("{base}/api/v1/plugins"))
        .bearer_auth(OPERATOR_KEY)
        .header("content-type", "application/wasm")
        .body(gigaspot_tests::guest("price-per-watt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let plugin: Value = resp.json().await.unwrap();
    let (status, body) = call(
        &http,
        &base,
        "POST",
        &format!(
            "/api/v1/plugins/{}/activate",
            plugin["digest"].as_str().unwrap()
        ),
        Some(OPERATOR_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Only the operator may take a copy of the market.
    let (status, body) = call(&http, &base, "GET", "/api/v1/backup", Some(&client), None).await;
    assert_eq!(status, 403, "{body}");
    let before = market_view(&http, &base, &client).await;
    assert_eq!(before.1.len(), 5);

    // A client keeps placing bids while the backup is taken through the running service.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (http, base, client, writing) =
            (http.clone(), base.clone(), client.clone(), writing.clone());
        tokio::spawn(async move {
            let mut placed = 0;
            let mut price = 100;
            while writing.load(Ordering::SeqCst) {
                price += 1;
                let (status, body) = call(&http, &base, "POST", "/api/v1/bids", Some(&client), Some(json!({"machine": machine, "price": price, "image": "registry.example/app:1", "oc": [{"pl": 200}]}))).await;
                assert!(status == 201 || status == 429, "{status} {body}");
                placed += u64::from(status == 201);
            }
            placed
        })
    };
    let online = dir.path().join("online.backup");
    let out = {
        let (base, online) = (base.clone(), online.clone());
        tokio::task::spawn_blocking(move || {
            gigaspot(&["backup", "--url", &base, "--out", online.to_str().unwrap()])
        })
        .await
        .unwrap()
    };
    let text = succeeded(&out);
    assert!(text.contains("entries"), "{text}");
    writing.store(false, Ordering::SeqCst);
    let placed_during = writer.await.unwrap();
    eprintln!("{placed_during} bids were placed while the backup ran");
    assert!(served.log().contains("backup taken"), "{}", served.log());

    // While the service runs, its folder cannot be opened: --data-dir says to use --url.
    let offline = dir.path().join("offline.backup");
    let refused = gigaspot(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        offline.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--url"),
        "{refused:?}"
    );
    assert!(!offline.exists());

    let after = market_view(&http, &base, &client).await;
    let (status, log) = served.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");

    // Stopped: a backup of the folder itself holds exactly the final market.
    succeeded(&gigaspot(&[
        "backup",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        offline.to_str().unwrap(),
    ]));

    // Restoring into an occupied folder, or from a damaged file, is refused and creates
    // nothing.
    let refused = gigaspot(&[
        "restore",
        "--from",
        offline.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not empty"),
        "{refused:?}"
    );
    let mut damaged = std::fs::read(&offline).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let damaged_path = dir.path().join("damaged.backup");
    std::fs::write(&damaged_path, &damaged).unwrap();
    let nowhere = dir.path().join("from-damaged");
    let refused = gigaspot(&[
        "restore",
        "--from",
        damaged_path.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("damaged"),
        "{refused:?}"
    );
    assert!(!nowhere.exists());
    let truncated_path = dir.path().join("truncated.backup");
    std::fs::write(&truncated_path, &damaged[..middle]).unwrap();
    let refused = gigaspot(&[
        "restore",
        "--from",
        truncated_path.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(!nowhere.exists());

    // The offline copy restores to exactly the market as it stopped.
    let again = restore_audit_and_serve(&offline, &dir.path().join("restored-offline"));
    assert_eq!(market_view(&http, &again.base, &client).await, after);
    let (status, log) = again.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");

    // The online copy is the market at one moment during the writes: everything from
    // before it, nothing that was not in the market, and a ledger that audits.
    let again = restore_audit_and_serve(&online, &dir.path().join("restored-online"));
    let (balance, bids, plugins) = market_view(&http, &again.base, &client).await;
    assert_eq!(balance, after.0);
    assert_eq!(plugins, before.2);
    for (id, terms) in &before.1 {
        assert_eq!(bids.get(id), Some(terms), "bid {id} from before the backup");
    }
    for (id, terms) in &bids {
        assert_eq!(
            after.1.get(id),
            Some(terms),
            "bid {id} was never in the market"
        );
    }
    let (status, log) = again.terminate(Duration::from_secs(15));
    assert!(status.success(), "{log}");
}
