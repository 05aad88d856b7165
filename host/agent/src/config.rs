//! The agent's configuration: a TOML file, then `GIGASPOT_AGENT_*` environment variables,
//! then command-line flags.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Every setting of `gigaspot-agent run`, with its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Base URL of the GigaSPOT server. Default `http://127.0.0.1:8080`.
    /// Env `GIGASPOT_AGENT_SERVER`.
    pub server: String,
    /// The machine's agent token, shown once when the machine was registered. Required.
    /// Env `GIGASPOT_AGENT_TOKEN` (preferred: keeps it out of files and process lists).
    pub token: String,
    /// GPU backend: `nvml`, or `simulated:<count>x<model>[,...]` (e.g.
    /// `simulated:4xRTX4090`). Default `nvml`. Env `GIGASPOT_AGENT_GPU`.
    pub gpu: String,
    /// Container backend: `docker`, or `none` (settings applied, no process started).
    /// Default `docker`. Env `GIGASPOT_AGENT_CONTAINERS`.
    pub containers: ContainerBackend,
    /// Docker socket. Default `unix:///var/run/docker.sock`. Env `GIGASPOT_AGENT_DOCKER_SOCKET`.
    pub docker_socket: String,
    /// Network mode of workload containers. Default `bridge`. Env `GIGASPOT_AGENT_NETWORK`.
    pub network: String,
    /// Seconds between SIGTERM and SIGKILL when a workload stops. Default 30.
    /// Env `GIGASPOT_AGENT_GRACE_S`.
    pub grace_s: u64,
    /// Seconds between heartbeats, 1 to 300. Default 5. Env `GIGASPOT_AGENT_HEARTBEAT_S`.
    pub heartbeat_s: u64,
    /// A PEM file of certificate authorities trusted for an `https://` server, besides the
    /// public web roots (for a server with a private CA). Env `GIGASPOT_AGENT_CA_CERT`.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Allow a plain `http://` server that is not on this host (the token then travels in
    /// cleartext). Default false. Flag `--allow-insecure-http`,
    /// env `GIGASPOT_AGENT_ALLOW_INSECURE_HTTP`.
    pub allow_insecure_http: bool,
}

/// Which container runtime runs workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerBackend {
    /// Docker through its API socket.
    Docker,
    /// No containers: the settings are applied and the workload reported as running.
    None,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server: "http://127.0.0.1:8080".into(),
            token: String::new(),
            gpu: "nvml".into(),
            containers: ContainerBackend::Docker,
            docker_socket: "unix:///var/run/docker.sock".into(),
            network: "bridge".into(),
            grace_s: 30,
            heartbeat_s: 5,
            ca_cert: None,
            allow_insecure_http: false,
        }
    }
}

impl AgentConfig {
    /// Loads `file` (if any) over the defaults, then the environment.
    pub fn load(file: Option<&Path>) -> Result<AgentConfig> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => AgentConfig::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Overrides settings from `GIGASPOT_AGENT_*` variables read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        let text = |name: &str, field: &mut String| {
            if let Some(v) = var(name) {
                *field = v;
            }
        };
        text("GIGASPOT_AGENT_SERVER", &mut self.server);
        text("GIGASPOT_AGENT_TOKEN", &mut self.token);
        text("GIGASPOT_AGENT_GPU", &mut self.gpu);
        text("GIGASPOT_AGENT_DOCKER_SOCKET", &mut self.docker_socket);
        text("GIGASPOT_AGENT_NETWORK", &mut self.network);
        if let Some(v) = var("GIGASPOT_AGENT_CA_CERT") {
            self.ca_cert = Some(v.into());
        }
        if let Some(v) = var("GIGASPOT_AGENT_ALLOW_INSECURE_HTTP") {
            self.allow_insecure_http = v.parse().with_context(|| {
                format!("GIGASPOT_AGENT_ALLOW_INSECURE_HTTP: {v:?} is neither true nor false")
            })?;
        }
        if let Some(v) = var("GIGASPOT_AGENT_CONTAINERS") {
            self.containers = parse_backend(&v)?;
        }
        for (name, field) in [
            ("GIGASPOT_AGENT_GRACE_S", &mut self.grace_s),
            ("GIGASPOT_AGENT_HEARTBEAT_S", &mut self.heartbeat_s),
        ] {
            if let Some(v) = var(name) {
                *field = v
                    .parse()
                    .with_context(|| format!("{name}: {v:?} is not a whole number of seconds"))?;
            }
        }
        Ok(())
    }

    /// Refuses settings the agent cannot run with, naming the key.
    pub fn check(&self) -> Result<()> {
        if self.token.trim().is_empty() {
            bail!("token: required (the machine's agent token; set GIGASPOT_AGENT_TOKEN)");
        }
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            bail!(
                "server: {:?} is not an http:// or https:// URL",
                self.server
            );
        }
        if let Some(host) = self.server.strip_prefix("http://")
            && !self.allow_insecure_http
            && !is_loopback_host(host)
        {
            bail!(
                "server: {:?} is plain http:// to another host, so the agent token would travel \
                 in cleartext; use https:// (ca_cert for a private CA) or pass \
                 --allow-insecure-http",
                self.server
            );
        }
        if !(1..=300).contains(&self.heartbeat_s) {
            bail!("heartbeat_s: {} is outside 1..=300", self.heartbeat_s);
        }
        if self.grace_s > 3600 {
            bail!("grace_s: {} is above one hour", self.grace_s);
        }
        Ok(())
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_s)
    }
}

/// Whether the authority part of a URL (`host[:port][/...]`) names this host: `localhost`,
/// `127.0.0.0/8` or `[::1]`.
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses a container backend name.
pub fn parse_backend(v: &str) -> Result<ContainerBackend> {
    match v {
        "docker" => Ok(ContainerBackend::Docker),
        "none" => Ok(ContainerBackend::None),
        other => bail!("containers: {other:?} is neither `docker` nor `none`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        let mut config: AgentConfig = toml::from_str(
            "server = \"https://10.0.0.1:8443\"\ngrace_s = 5\ncontainers = \"none\"",
        )
        .unwrap();
        assert_eq!(config.grace_s, 5);
        assert_eq!(config.containers, ContainerBackend::None);
        config
            .apply_env(|k| match k {
                "GIGASPOT_AGENT_TOKEN" => Some("tok".into()),
                "GIGASPOT_AGENT_GRACE_S" => Some("7".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.token, "tok");
        assert_eq!(config.grace_s, 7);
        assert_eq!(config.server, "https://10.0.0.1:8443");
        config.check().unwrap();
    }

    #[test]
    fn plain_http_to_another_host_needs_an_explicit_yes() {
        let with = |server: &str, allow: bool| AgentConfig {
            token: "t".into(),
            server: server.into(),
            allow_insecure_http: allow,
            ..AgentConfig::default()
        };
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:80/x",
            "http://127.9.9.9",
            "https://market.example.com",
        ] {
            with(local, false).check().unwrap();
        }
        for remote in [
            "http://10.0.0.1:8080",
            "http://market.example.com",
            "http://[2001:db8::1]",
        ] {
            let err = with(remote, false).check().unwrap_err().to_string();
            assert!(
                err.starts_with("server:") && err.contains("--allow-insecure-http"),
                "{err}"
            );
            with(remote, true).check().unwrap();
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        assert!(toml::from_str::<AgentConfig>("grace = 5").is_err());
        let err = AgentConfig::default().check().unwrap_err().to_string();
        assert!(err.starts_with("token:"), "{err}");
        let config = AgentConfig {
            token: "t".into(),
            heartbeat_s: 0,
            ..AgentConfig::default()
        };
        assert!(
            config
                .check()
                .unwrap_err()
                .to_string()
                .starts_with("heartbeat_s:")
        );
        let err = AgentConfig::default()
            .apply_env(|k| (k == "GIGASPOT_AGENT_CONTAINERS").then(|| "podman".into()))
            .unwrap_err();
        assert!(err.to_string().starts_with("containers:"), "{err}");
    }
}
