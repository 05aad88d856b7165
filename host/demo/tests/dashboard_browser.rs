//! The dashboard in headless Chromium, driven by Playwright (`tests/browser`), against the
//! real demo market: its machines are shown, the machine panel shows the host's background
//! job (image, power limits), what sets the minimum bid and the machine's activity, a bid
//! placed through the API appears with its score, the switch to it becomes visible, a
//! client's key shows its balance and bids, the demo's order client's key its standing
//! order and the bids it placed, the operator's key the plugin versions. The screenshot is
//! kept as a test artefact in `target/test-artifacts/dashboard.png`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gigaspot_demo::{DemoOptions, api::Api, start};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_demo_market_live() {
    let browser_dir = gigaspot_tests::repo_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "Chromium is missing: install Debian's chromium (scripts/test does) or set CHROMIUM"
    );
    let data = tempfile::tempdir().unwrap();
    let demo = start(DemoOptions {
        data_dir: data.path().to_path_buf(),
        bind: "127.0.0.1:0".parse().unwrap(),
        interval_s: 10,
        plugins: Some(gigaspot_tests::guest_dir().to_path_buf()),
        clients: true,
        database_url: None,
    })
    .await
    .unwrap();
    // Wait for the agents' first heartbeats: every machine online.
    let api = Api::new(&demo.url);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let machines = api.get("/api/v1/machines", None).await.unwrap();
        let machines = machines.as_array().unwrap();
        if machines.len() == demo.keys.machines.len()
            && machines.iter().all(|m| m["online"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "machines did not come online: {machines:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let artefacts = gigaspot_tests::repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let screenshot = artefacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    // A client of the test's own: the demo's clients cancel their bids at random.
    let created = api
        .post(
            "/api/v1/accounts",
            None,
            &json!({"name": "browser-test", "roles": ["client"]}),
        )
        .await
        .unwrap();
    let client = created["api_key"].as_str().unwrap().to_owned();
    api.post(
        "/api/v1/deposits",
        Some(&demo.keys.operator),
        &json!({"account": created["account"]["id"], "amount": 1000.0, "reference": "browser-test"}),
    )
    .await
    .unwrap();
    let machine = demo.keys.machines.last().unwrap().id.to_string();
    let url = demo.url.clone();
    let operator = demo.keys.operator.clone();
    let order_client = demo
        .keys
        .clients
        .iter()
        .find(|c| c.name == gigaspot_demo::clients::ORDER_CLIENT)
        .expect("the demo's order client")
        .key
        .clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("dashboard.mjs")
            .args([url.as_str(), client.as_str(), machine.as_str()])
            .arg(&screenshot)
            .arg(&operator)
            .arg(&order_client)
            .current_dir(&browser_dir)
            .output()
            .expect("node (Node.js 20) to run the browser test")
    })
    .await
    .unwrap();
    demo.shutdown().await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("dashboard test passed"), "{stdout}");
    let png = std::fs::read(artefacts.join("dashboard.png")).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
}
