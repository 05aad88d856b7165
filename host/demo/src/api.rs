//! A small client of the market's HTTP API, as the simulated participants use it.

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Calls the API at one base URL.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client of the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Sends a request; answers the JSON body of a 2xx, an error naming the status and
    /// the server's reason otherwise.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }

    /// GET.
    pub async fn get(&self, path: &str, key: Option<&str>) -> Result<Value> {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    /// Uploads a plugin component as the operator; answers its digest.
    pub async fn upload_plugin(&self, key: &str, wasm: Vec<u8>, config: &str) -> Result<String> {
        let resp = self
            .http
            .post(format!("{}/api/v1/plugins", self.base))
            .query(&[("config", config)])
            .bearer_auth(key)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .context("uploading a plugin")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("uploading a plugin: {status} {body}");
        }
        body["digest"]
            .as_str()
            .map(str::to_owned)
            .context("the upload's digest")
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }
}
