//! The deployment files in `deploy/` are usable as shipped: the systemd units pass
//! `systemd-analyze verify` (with no warning), the sample configuration loads, and every
//! metric the Grafana dashboard and the scrape config rely on is one `/metrics` exports.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use gigaspot_server::config::Config;
use serde_json::{Value, json};
use support::Market;

fn deploy(file: &str) -> std::path::PathBuf {
    gigaspot_tests::repo_root().join("deploy").join(file)
}

#[test]
fn the_systemd_units_verify_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for (unit, binary) in [
        ("gigaspot.service", env!("CARGO_BIN_EXE_gigaspot")),
        // The agent's binary is not built by this crate; any executable stands in for the
        // path check, every other line is verified as shipped.
        ("gigaspot-agent.service", env!("CARGO_BIN_EXE_gigaspot")),
    ] {
        let text = std::fs::read_to_string(deploy(unit)).unwrap();
        let installed = text
            .replace("/usr/local/bin/gigaspot-agent", binary)
            .replace("/usr/local/bin/gigaspot", binary);
        assert_ne!(text, installed, "{unit} runs a binary from /usr/local/bin");
        let path = dir.path().join(unit);
        std::fs::write(&path, installed).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (Debian's systemd package) must be installed: scripts/test does");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "systemd-analyze warns:\n{stderr}");
    let service = std::fs::read_to_string(deploy("gigaspot.service")).unwrap();
    for hardening in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=gigaspot",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
    ] {
        assert!(
            service.contains(hardening),
            "gigaspot.service lacks {hardening}"
        );
    }
}

#[test]
fn the_sample_configuration_loads_with_every_key_known() {
    let config = Config::load(Some(&deploy("gigaspot.toml")), |_| None).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.data_dir,
        std::path::PathBuf::from("/var/lib/gigaspot")
    );
    assert_eq!(config.log_format, gigaspot_server::logging::LogFormat::Json);
}

/// Metric names in a PromQL expression (identifiers starting with `gigaspot_`), with the
/// histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("gigaspot_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_plots_only_metrics_the_service_exports() {
    let m = Market::start(|_| {}).await;
    // A WASM strategy ranks the boundary, so the plugin families have series.
    m.install_and_activate("price-per-watt", "").await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    m.call(
        "POST",
        "/api/v1/bids",
        Some(&key),
        Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]})),
    )
    .await;
    m.tick(60).await;
    let scrape = m.scrape().await;
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "panel {:?} plots {name}, which /metrics does not export:\n{scrape}",
                    panel["title"]
                );
            }
        }
    }
    let scrape_config = std::fs::read_to_string(deploy("prometheus.yml")).unwrap();
    assert!(scrape_config.contains("metrics_path: /metrics"));
}
