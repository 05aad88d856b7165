//! The agent talks to the service over TLS: a certificate authority and a server
//! certificate made here (rcgen), the real server terminating TLS on loopback, the real
//! `gigaspot-agent` binary heartbeating over https with the CA; a wrong CA fails with a
//! clear error, and a plain http:// server on another host is refused before any token is
//! sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gigaspot_tests::process::Collected;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::{Value, json};

#[path = "../../server/tests/support/mod.rs"]
mod support;
use support::Market;

/// A CA's PEM, and a server certificate and key for 127.0.0.1 and localhost signed by it,
/// written into `dir`: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// The agent binary with simulated GPUs and no containers; its stderr is collected.
fn agent(server: &str, token: &str, extra: &[&str]) -> Collected {
    Collected::spawn(
        Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
            .args(["run", "--server", server, "--gpu", "simulated:1xRTX4090"])
            .args(["--containers", "none", "--heartbeat-s", "1"])
            .args(extra)
            .env("GIGASPOT_AGENT_TOKEN", token),
    )
}

async fn machine_view(m: &Market, machine: u64) -> Value {
    let (status, view) = m
        .call("GET", &format!("/api/v1/machines/{machine}"), None, None)
        .await;
    assert!(status.is_success(), "{view}");
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_heartbeats_over_tls_and_a_wrong_ca_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "market");
    let (other_ca, _, _) = certificates(dir.path(), "other");
    let mut m = Market::start(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    assert!(m.base.starts_with("https://127.0.0.1:"), "{}", m.base);
    // The test's own client trusts the CA too.
    let pem = std::fs::read(&ca).unwrap();
    m.http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let (_, host) = m.register("host", &["host"]).await;
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/machines",
            Some(&host),
            Some(json!({"gpus": [{"model": "NVIDIA GeForce RTX 4090", "uuid": "GPU-0", "card_min_w": 150, "card_max_w": 600, "ceiling_w": 600}], "energy_price": 0.0})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let machine = body["machine"]["id"].as_u64().unwrap();
    let token = body["agent_token"].as_str().unwrap().to_owned();

    // A wrong CA: the handshake fails, the agent says why, the machine stays offline.
    let mut wrong = agent(&m.base, &token, &["--ca-cert", other_ca.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = wrong.log();
        if text.contains("heartbeat:") {
            assert!(
                text.contains("UnknownIssuer") || text.contains("certificate"),
                "the error names the certificate problem:\n{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no heartbeat error:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = wrong.child.kill();
    let _ = wrong.child.wait();
    assert_eq!(machine_view(&m, machine).await["online"], json!(false));

    // The right CA: the agent's heartbeats arrive over TLS.
    let mut right = agent(&m.base, &token, &["--ca-cert", ca.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = machine_view(&m, machine).await;
        if view["online"] == json!(true) {
            assert_eq!(view["gpus"].as_array().map(Vec::len), Some(1), "{view}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never got through:\n{}",
            right.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = right.child.kill();
    let _ = right.child.wait();

    // Plain HTTP to a service without TLS is refused at the TLS listener.
    let plain = reqwest::Client::new()
        .get(m.base.replace("https://", "http://") + "/api/v1/health")
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP must not be answered by the TLS listener"
    );
}

#[test]
fn plain_http_to_another_host_is_refused_before_any_token_is_sent() {
    let out = Command::new(env!("CARGO_BIN_EXE_gigaspot-agent"))
        .args([
            "run",
            "--server",
            "http://192.0.2.10:8080",
            "--gpu",
            "simulated:1xRTX4090",
        ])
        .args(["--containers", "none"])
        .env("GIGASPOT_AGENT_TOKEN", "secret")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cleartext") && stderr.contains("--allow-insecure-http"),
        "{stderr}"
    );
}
