//! Clore's own general Python client (PyPI `clore-ai` 0.1.1), pointed at our `/v1`, reads
//! the caller's wallets and orders. The client lives in a virtual environment under
//! `target/` (made on first use, like the browser test's npm install); the script that
//! drives it is `tests/clore_ai/check.py`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::json;
use support::Market;

/// The virtual environment with the pinned client, made once.
fn client_venv() -> PathBuf {
    let root = gigaspot_tests::repo_root();
    let venv = root.join("target").join("clore-ai-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".installed-0.1.1");
    if !marker.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (Debian's python3 with venv)");
        assert!(
            made.success(),
            "cannot make a virtual environment at {venv:?}"
        );
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(root.join("tests/clore_ai/requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(installed.success(), "cannot install clore-ai from PyPI");
        std::fs::write(&marker, b"").unwrap();
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clore_s_python_client_reads_wallets_and_my_orders() {
    let python = tokio::task::spawn_blocking(client_venv).await.unwrap();
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("bot", 12.5).await;
    let (_, body) = m
        .call_v1(
            "/v1/create_gigaspot_orders",
            &key,
            json!([
                {"renting_server": machine, "price": 2.5, "image": "registry.example/a:1", "oc": [{"pl": 200}]},
                {"renting_server": machine, "price": 3.25, "image": "registry.example/b:1", "oc": [{"pl": 300}]},
            ]),
        )
        .await;
    assert_eq!(body["failed_to_rent_servers"], json!([]), "{body}");
    let (_, mine) = m.call("GET", "/api/v1/bids", Some(&key), None).await;
    let ids: Vec<u64> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect();
    let expect = json!({
        "balance": 12.5,
        "order_ids": ids,
        "orders": {
            ids[0].to_string(): {"server_id": machine, "price": 2.5, "currency": "CLORE-Blockchain"},
            ids[1].to_string(): {"server_id": machine, "price": 3.25},
        },
    });
    let script = gigaspot_tests::repo_root().join("tests/clore_ai/check.py");
    let base = m.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("GIGASPOT_URL", base)
            .env("GIGASPOT_KEY", key)
            .env("EXPECT_JSON", expect.to_string())
            .output()
            .expect("the check script runs")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("clore-ai check passed"), "{text}");
}
