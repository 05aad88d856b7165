//! The agent's main loop: observe → heartbeat → converge to the answer, every
//! `heartbeat_s` seconds, until asked to stop.

use std::time::Duration;

use anyhow::{Context, Result};
use gigaspot_market::agent_protocol::{DesiredState, Heartbeat};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::container_runtime::ContainerRuntime;
use crate::reconciler::Reconciler;

/// Talks to the server's agent endpoint.
pub struct ServerClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl ServerClient {
    /// A client of the server at `base` authenticating with the machine's `token`.
    pub fn new(base: &str, token: &str) -> Result<ServerClient> {
        ServerClient::with_ca(base, token, None)
    }

    /// A client that also trusts the certificate authorities in the PEM `ca` (for a server
    /// whose certificate a private CA signed). TLS is rustls with the public web roots.
    pub fn with_ca(base: &str, token: &str, ca: Option<&[u8]>) -> Result<ServerClient> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(10));
        if let Some(pem) = ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .context("ca_cert: not a PEM certificate bundle")?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(ServerClient {
            http: builder.build().context("building the HTTP client")?,
            url: format!("{}/api/v1/agent/heartbeat", base.trim_end_matches('/')),
            token: token.trim().to_owned(),
        })
    }

    /// Sends `report`; answers the desired state.
    pub async fn heartbeat(&self, report: &Heartbeat) -> Result<DesiredState> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(report)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("reaching {}: {}", self.url, error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("the server answered {status}: {body}");
        }
        response
            .json()
            .await
            .context("reading the server's desired state")
    }
}

/// An error with its causes, e.g. `error sending request: … invalid peer certificate:
/// UnknownIssuer`: the TLS reason sits at the end of reqwest's chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The label value marking one machine's containers: derived from its agent token, so a
/// restarted agent finds them without extra configuration and two machines sharing a
/// Docker daemon never touch each other's.
pub fn owner_label(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    format!("m{}", &hex::encode(digest)[..12])
}

/// Runs the loop until `stop` turns true. Converging is followed at once by another
/// heartbeat, so that the server learns about a started workload without waiting.
pub async fn run<R: ContainerRuntime>(
    reconciler: &mut Reconciler<R>,
    server: &ServerClient,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut report_again = false;
    loop {
        if *stop.borrow() {
            return;
        }
        reconciler.observe().await;
        let report = reconciler.heartbeat();
        let changed = match server.heartbeat(&report).await {
            Ok(desired) => {
                reconciler.converge(&desired).await;
                reconciler.heartbeat() != report
            }
            Err(e) => {
                // The workload keeps running as last told: the state is level-triggered and
                // the next answer corrects anything missed.
                tracing::warn!("heartbeat: {e:#}");
                false
            }
        };
        if changed && !report_again {
            report_again = true;
            continue;
        }
        report_again = false;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}
