//! The service's configuration: one typed struct, loaded from a TOML file, then
//! overridden by environment variables, then by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gigaspot_market::params::MarketParams;
use serde::{Deserialize, Serialize};

/// Every setting of `gigaspot serve`, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`. Env `GIGASPOT_BIND`.
    pub bind: SocketAddr,
    /// Directory of the sled database. Default `./data`. Env `GIGASPOT_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Billing interval in seconds, 10 to 86,400. The market parameters live in the
    /// database: these three keys seed a new one (defaults 60 s, 250 bps, 0.02 USD); on an
    /// existing database a value that differs from the stored one is applied as an
    /// explicit change (logged; an interval length takes effect at the next boundary),
    /// and an unset key leaves the stored value (e.g. one set with `PUT /api/v1/params`)
    /// as it is. Env `GIGASPOT_BILLING_INTERVAL_S`.
    pub billing_interval_s: Option<u32>,
    /// Operator fee in basis points, 0 to 5,000 (see `billing_interval_s` for how it
    /// meets the stored value). Env `GIGASPOT_FEE_BPS`.
    pub fee_bps: Option<u32>,
    /// USD price of one CLORE (see `billing_interval_s` for how it meets the stored
    /// value). Env `GIGASPOT_CLORE_USD`.
    pub clore_usd: Option<f64>,
    /// Consecutive intervals a winning bid may go unserved by its own fault (image not
    /// pullable, container exiting early, settings refused by the card) before it is
    /// suspended and leaves clearing until its owner edits it; 0 = never. Default 2.
    /// Env `GIGASPOT_SUSPEND_AFTER_FAILED_INTERVALS`.
    pub suspend_after_failed_intervals: u32,
    /// How many seconds one heartbeat confirming the winner running vouches for: the
    /// interval is charged for the union of `[heartbeat, heartbeat + this)` spans within
    /// it. Keep it at least the agents' `heartbeat_s` (default 5 s). 1 to 3,600; default
    /// 15. Env `GIGASPOT_SERVED_HEARTBEAT_BOUND_S`.
    pub served_heartbeat_bound_s: u32,
    /// How long full decision records (every bid's verdict, for `GET .../decision` and the
    /// order book's reasons) are kept, in seconds; older ones are compacted to what
    /// history, audit and replay need (winner, previous bid, switch, counts, input digest,
    /// plugin versions). Ledger entries are never compacted. 0 keeps every full record;
    /// the two newest intervals are always kept whole. Default 604,800 (7 days).
    /// Env `GIGASPOT_DECISION_RETENTION_S`.
    pub decision_retention_s: u64,
    /// Whether anyone may create client and host accounts. Default true.
    /// Env `GIGASPOT_OPEN_REGISTRATION`.
    pub open_registration: bool,
    /// Largest request body accepted, in bytes. Default 65,536.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408. Default 10,000 ms.
    pub request_timeout_ms: u64,
    /// Requests per minute per API key (bursts up to the same number); 0 = unlimited.
    /// Default 600. Env `GIGASPOT_RATE_LIMIT_PER_MINUTE`.
    pub rate_limit_per_minute: u32,
    /// Requests per minute per client network (IPv4 address or IPv6 /64) that carry no
    /// valid API key or agent token (bursts up to the same number); 0 = unlimited.
    /// Default 1,200. Env `GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE`.
    pub anonymous_rate_limit_per_minute: u32,
    /// Addresses of reverse proxies in front of the service. A request from one of them is
    /// counted against the client address it names in `X-Forwarded-For` (the rightmost
    /// entry that is not itself a trusted proxy). Default: none, the peer address counts.
    /// Env `GIGASPOT_TRUSTED_PROXIES` (comma-separated).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Base URL clients reach the service at, for absolute URLs such as the snapshot's.
    /// Default: taken from each request's Host header.
    pub public_url: Option<String>,
    /// The Clore-compatible surface.
    pub clore: CloreConfig,
    /// The operator's API key. When unset, one is generated on the first start and printed
    /// once. Env `GIGASPOT_OPERATOR_KEY` (preferred: keeps it out of files).
    pub operator_key: Option<String>,
    /// Plugins to install at start.
    pub plugins: PluginsConfig,
    /// PEM certificate chain for serving HTTPS itself (with `tls_key`). Default: none,
    /// plain HTTP (put a TLS-terminating reverse proxy in front, listed in
    /// `trusted_proxies`). Env `GIGASPOT_TLS_CERT`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Env `GIGASPOT_TLS_KEY`.
    pub tls_key: Option<PathBuf>,
    /// Open connections at most, all clients together; more are closed at once.
    /// Default 10,000. Env `GIGASPOT_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// Open connections at most per client network (IPv4 address, IPv6 /64); trusted
    /// proxies count only against `max_connections`. Default 256.
    /// Env `GIGASPOT_MAX_CONNECTIONS_PER_CLIENT`.
    pub max_connections_per_client: usize,
    /// Time a client has to send a request's headers (and to finish the TLS handshake),
    /// counted from when the connection opens or the previous answer was sent: it also
    /// closes idle keep-alive connections. Default 10,000 ms.
    /// Env `GIGASPOT_HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout_ms: u64,
    /// Log lines: `text` (default) or `json` (one object per line, for log shippers).
    /// Which events are written is `RUST_LOG`'s filter (default `info`).
    /// Env `GIGASPOT_LOG_FORMAT`.
    pub log_format: crate::logging::LogFormat,
    /// On SIGTERM or Ctrl-C, how long requests in flight may take to finish before they
    /// are cut off, in seconds. Default 10. Env `GIGASPOT_SHUTDOWN_GRACE_S`.
    pub shutdown_grace_s: u32,
    /// A PostgreSQL database for the market (`postgres://user:password@host:port/db`),
    /// which several replicas may share; unset, the market lives in sled in `data_dir`.
    /// Env `GIGASPOT_DATABASE_URL` (preferred: keeps the password out of files).
    pub database_url: Option<String>,
    /// With `database_url`: how long the clearer's lease lasts, in seconds. The replica
    /// that clears renews it every third of this; when it dies another takes over within
    /// it. Default 15 (2 to 600). Env `GIGASPOT_LEASE_TTL_S`.
    pub lease_ttl_s: u32,
}

/// Settings of the Clore GigaSPOT-compatible `/v1` surface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloreConfig {
    /// Clore image ids (24 hex characters) and the image references they stand for.
    pub image_aliases: std::collections::BTreeMap<String, String>,
}

/// The plugins installed at start and the limits of every call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// The ranking strategy. Default: none (the built-in price-per-watt fallback ranks).
    pub strategy: Option<PluginSpec>,
    /// Validators, in the order they run. Default: none.
    pub validators: Vec<PluginSpec>,
    /// Fuel per call. Default 200,000,000.
    pub fuel: u64,
    /// Wall-clock deadline per call in ms. Default 1,000.
    pub timeout_ms: u64,
    /// Memory cap per instance in MiB. Default 64.
    pub memory_mib: u64,
    /// Consecutive faults after which a version is skipped. Default 5 (0 = never).
    pub quarantine_after: u32,
}

impl PluginsConfig {
    /// The limits every plugin call runs under.
    pub fn limits(&self) -> gigaspot_plugin_runtime::PluginLimits {
        gigaspot_plugin_runtime::PluginLimits {
            fuel: self.fuel,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            memory_bytes: self.memory_mib << 20,
            ..gigaspot_plugin_runtime::PluginLimits::default()
        }
    }
}

/// A plugin file and the configuration string handed to its `configure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// Configuration string. Default empty.
    #[serde(default)]
    pub config: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            billing_interval_s: None,
            fee_bps: None,
            clore_usd: None,
            suspend_after_failed_intervals: gigaspot_store::DEFAULT_SUSPEND_AFTER,
            served_heartbeat_bound_s: 15,
            decision_retention_s: 7 * 86_400,
            open_registration: true,
            max_body_bytes: 64 << 10,
            request_timeout_ms: 10_000,
            rate_limit_per_minute: 600,
            anonymous_rate_limit_per_minute: 1_200,
            trusted_proxies: Vec::new(),
            public_url: None,
            clore: CloreConfig::default(),
            operator_key: None,
            plugins: PluginsConfig::default(),
            shutdown_grace_s: 10,
            database_url: None,
            lease_ttl_s: 15,
            tls_cert: None,
            tls_key: None,
            max_connections: 10_000,
            max_connections_per_client: 256,
            header_read_timeout_ms: 10_000,
            log_format: crate::logging::LogFormat::Text,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            strategy: None,
            validators: Vec::new(),
            fuel: 200_000_000,
            timeout_ms: 1_000,
            memory_mib: 64,
            quarantine_after: 5,
        }
    }
}

impl Config {
    /// Defaults, overlaid by the TOML file `file` (if any), then by `GIGASPOT_*`
    /// variables from `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid configuration", path.display()))?
            }
            None => Config::default(),
        };
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            value
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={value:?}: {e}"))
        }
        if let Some(v) = env("GIGASPOT_BIND") {
            config.bind = parse("GIGASPOT_BIND", &v)?;
        }
        if let Some(v) = env("GIGASPOT_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("GIGASPOT_BILLING_INTERVAL_S") {
            config.billing_interval_s = Some(parse("GIGASPOT_BILLING_INTERVAL_S", &v)?);
        }
        if let Some(v) = env("GIGASPOT_FEE_BPS") {
            config.fee_bps = Some(parse("GIGASPOT_FEE_BPS", &v)?);
        }
        if let Some(v) = env("GIGASPOT_CLORE_USD") {
            config.clore_usd = Some(parse("GIGASPOT_CLORE_USD", &v)?);
        }
        if let Some(v) = env("GIGASPOT_DECISION_RETENTION_S") {
            config.decision_retention_s = parse("GIGASPOT_DECISION_RETENTION_S", &v)?;
        }
        if let Some(v) = env("GIGASPOT_SERVED_HEARTBEAT_BOUND_S") {
            config.served_heartbeat_bound_s = parse("GIGASPOT_SERVED_HEARTBEAT_BOUND_S", &v)?;
        }
        if let Some(v) = env("GIGASPOT_SUSPEND_AFTER_FAILED_INTERVALS") {
            config.suspend_after_failed_intervals =
                parse("GIGASPOT_SUSPEND_AFTER_FAILED_INTERVALS", &v)?;
        }
        if let Some(v) = env("GIGASPOT_OPEN_REGISTRATION") {
            config.open_registration = parse("GIGASPOT_OPEN_REGISTRATION", &v)?;
        }
        if let Some(v) = env("GIGASPOT_RATE_LIMIT_PER_MINUTE") {
            config.rate_limit_per_minute = parse("GIGASPOT_RATE_LIMIT_PER_MINUTE", &v)?;
        }
        if let Some(v) = env("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE") {
            config.anonymous_rate_limit_per_minute =
                parse("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE", &v)?;
        }
        if let Some(v) = env("GIGASPOT_TRUSTED_PROXIES") {
            config.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| parse("GIGASPOT_TRUSTED_PROXIES", a))
                .collect::<Result<_>>()?;
        }
        if let Some(v) = env("GIGASPOT_TLS_CERT") {
            config.tls_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = env("GIGASPOT_TLS_KEY") {
            config.tls_key = Some(PathBuf::from(v));
        }
        if let Some(v) = env("GIGASPOT_MAX_CONNECTIONS") {
            config.max_connections = parse("GIGASPOT_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = env("GIGASPOT_MAX_CONNECTIONS_PER_CLIENT") {
            config.max_connections_per_client = parse("GIGASPOT_MAX_CONNECTIONS_PER_CLIENT", &v)?;
        }
        if let Some(v) = env("GIGASPOT_HEADER_READ_TIMEOUT_MS") {
            config.header_read_timeout_ms = parse("GIGASPOT_HEADER_READ_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = env("GIGASPOT_LOG_FORMAT") {
            config.log_format = parse("GIGASPOT_LOG_FORMAT", &v)?;
        }
        if let Some(v) = env("GIGASPOT_SHUTDOWN_GRACE_S") {
            config.shutdown_grace_s = parse("GIGASPOT_SHUTDOWN_GRACE_S", &v)?;
        }
        if let Some(v) = env("GIGASPOT_OPERATOR_KEY") {
            config.operator_key = Some(v);
        }
        if let Some(v) = env("GIGASPOT_DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = env("GIGASPOT_LEASE_TTL_S") {
            config.lease_ttl_s = parse("GIGASPOT_LEASE_TTL_S", &v)?;
        }
        Ok(config)
    }

    /// The market parameters with this configuration's explicit values over `stored`.
    pub fn params_over(&self, stored: &MarketParams) -> MarketParams {
        MarketParams {
            billing_interval_s: self.billing_interval_s.unwrap_or(stored.billing_interval_s),
            fee_bps: self.fee_bps.unwrap_or(stored.fee_bps),
            clore_usd: self.clore_usd.unwrap_or(stored.clore_usd),
        }
    }

    /// Refuses values the service cannot run with, naming the key.
    pub fn validate(&self) -> Result<()> {
        if let Err(e) = self.params_over(&MarketParams::default()).check() {
            bail!("{}: {}", e.field, e.reason);
        }
        if !(1..=3_600).contains(&self.served_heartbeat_bound_s) {
            bail!(
                "served_heartbeat_bound_s = {}: must be 1 to 3600",
                self.served_heartbeat_bound_s
            );
        }
        if !(2..=600).contains(&self.lease_ttl_s) {
            bail!("lease_ttl_s = {}: must be 2 to 600", self.lease_ttl_s);
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("database_url: must start with postgres:// (a PostgreSQL database)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key: set both (HTTPS) or neither (plain HTTP)");
        }
        if self.max_connections == 0 || self.max_connections_per_client == 0 {
            bail!("max_connections and max_connections_per_client: must be at least 1");
        }
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            bail!(
                "header_read_timeout_ms = {}: must be 100 to 600000",
                self.header_read_timeout_ms
            );
        }
        if self.max_body_bytes < 1024 {
            bail!(
                "max_body_bytes = {}: must be at least 1024",
                self.max_body_bytes
            );
        }
        if let Some(key) = &self.operator_key
            && key.len() < 32
        {
            bail!("operator_key: must be at least 32 characters");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn file_then_environment_override_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gigaspot.toml");
        std::fs::write(
            &file,
            "billing_interval_s = 30\nfee_bps = 100\n[plugins]\nfuel = 5\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = HashMap::from([
            ("GIGASPOT_FEE_BPS", "300"),
            ("GIGASPOT_BIND", "127.0.0.1:9"),
            ("GIGASPOT_ANONYMOUS_RATE_LIMIT_PER_MINUTE", "0"),
            ("GIGASPOT_TRUSTED_PROXIES", "10.0.0.1, ::1"),
        ]);
        let config = Config::load(Some(&file), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.billing_interval_s, Some(30));
        assert_eq!(config.fee_bps, Some(300));
        assert_eq!(config.bind.port(), 9);
        assert_eq!(config.plugins.fuel, 5);
        assert_eq!(config.clore_usd, None, "unset: the stored value stays");
        assert_eq!(config.anonymous_rate_limit_per_minute, 0);
        assert_eq!(
            config.trusted_proxies,
            [
                "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(config.rate_limit_per_minute, 600);
    }

    #[test]
    fn the_database_and_the_lease_come_from_the_environment_and_are_checked() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("GIGASPOT_DATABASE_URL", "postgres://u:p@db:5432/market"),
            ("GIGASPOT_LEASE_TTL_S", "30"),
        ]);
        let config = Config::load(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(
            config.database_url.as_deref(),
            Some("postgres://u:p@db:5432/market")
        );
        assert_eq!(config.lease_ttl_s, 30);
        config.validate().unwrap();
        for (config, key) in [
            (
                Config {
                    database_url: Some("mysql://db/market".into()),
                    ..Config::default()
                },
                "database_url",
            ),
            (
                Config {
                    lease_ttl_s: 1,
                    ..Config::default()
                },
                "lease_ttl_s",
            ),
            (
                Config {
                    lease_ttl_s: 601,
                    ..Config::default()
                },
                "lease_ttl_s",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let err =
            Config::load(None, |k| (k == "GIGASPOT_LEASE_TTL_S").then(|| "x".into())).unwrap_err();
        assert!(err.to_string().contains("GIGASPOT_LEASE_TTL_S"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "colour = 1\n").unwrap();
        let err = Config::load(Some(&file), |_| None).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `colour`"),
            "{err:#}"
        );
        let err =
            Config::load(None, |k| (k == "GIGASPOT_FEE_BPS").then(|| "x".into())).unwrap_err();
        assert!(err.to_string().contains("GIGASPOT_FEE_BPS"), "{err}");
        for bad in ["7d", "-1", "99999999999999999999"] {
            let err = Config::load(None, |k| {
                (k == "GIGASPOT_DECISION_RETENTION_S").then(|| bad.into())
            })
            .unwrap_err();
            assert!(
                err.to_string().contains("GIGASPOT_DECISION_RETENTION_S"),
                "{err}"
            );
        }
        let env = |k: &str| (k == "GIGASPOT_DECISION_RETENTION_S").then(|| "3600".into());
        assert_eq!(Config::load(None, env).unwrap().decision_retention_s, 3600);
        assert_eq!(Config::default().decision_retention_s, 7 * 86_400);
        let config = Config {
            billing_interval_s: Some(5),
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("billing_interval_s")
        );
        assert!(Config::default().validate().is_ok());
    }
}
