//! What `gigaspot replay` and `gigaspot backtest` share: the stopped market they read,
//! its plugin limits, and the recorded intervals between `--from` and `--to`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_plugin_runtime::{ArtifactCache, PluginRuntime};
use gigaspot_server::config::Config;
use gigaspot_server::plugin_versions::PluginVersions;
use gigaspot_store::Store;

/// Where the recorded history is and which part of it to read.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The data folder of the stopped service (sled).
    #[arg(
        long,
        conflicts_with = "database_url",
        required_unless_present = "database_url"
    )]
    pub data_dir: Option<PathBuf>,
    /// The market's PostgreSQL database instead (env `GIGASPOT_DATABASE_URL`).
    #[arg(long, env = "GIGASPOT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The service's configuration file, for its plugin limits (fuel, memory, time).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// From this time on: unix seconds or RFC 3339 (default: the oldest recorded).
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this time (default: the newest recorded).
    #[arg(long)]
    pub to: Option<String>,
}

/// The opened history.
pub struct History {
    /// The market's store.
    pub store: Arc<dyn Store>,
    /// Its name to show.
    pub shown: String,
    /// Its interval clock.
    pub clock: IntervalClock,
    /// The first and last interval to read.
    pub first: u64,
    /// The last.
    pub last: u64,
    /// A runtime with the service's plugin limits.
    pub runtime: Arc<PluginRuntime>,
    /// The market's stored plugin versions.
    pub versions: PluginVersions,
}

impl HistoryArgs {
    /// Opens the market and finds the recorded intervals asked for.
    pub fn open(&self) -> Result<History> {
        let config = Config::load(self.config.as_deref(), |k| std::env::var(k).ok())?;
        let (store, shown) =
            crate::ledger_audit::open(self.data_dir.as_deref(), self.database_url.as_deref())?;
        let Some((oldest, newest)) = store.recorded_intervals()? else {
            bail!("{shown} holds no recorded clearings");
        };
        let clock = store.interval_clock()?;
        let first = match &self.from {
            Some(t) => clock.interval_at(parse_time("--from", t)?).max(oldest),
            None => oldest,
        };
        let last = match &self.to {
            Some(t) => clock.interval_at(parse_time("--to", t)?).min(newest),
            None => newest,
        };
        if first > last {
            bail!(
                "nothing recorded between --from and --to (recorded: {} to {})",
                rfc3339(clock.start_of(oldest)),
                rfc3339(clock.start_of(newest))
            );
        }
        let runtime = Arc::new(PluginRuntime::new(
            config.plugins.limits(),
            ArtifactCache::in_memory(),
        )?);
        let store: Arc<dyn Store> = Arc::from(store);
        let versions = PluginVersions::new(runtime.clone(), store.clone());
        Ok(History {
            store,
            shown,
            clock,
            first,
            last,
            runtime,
            versions,
        })
    }
}

/// Unix seconds or an RFC 3339 time.
fn parse_time(field: &str, text: &str) -> Result<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    let at = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("{field}: {text:?} is neither unix seconds nor an RFC 3339 time")
    })?;
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .with_context(|| format!("{field}: {text:?} is before 1970"))?
        .as_secs())
}

/// Unix seconds as RFC 3339.
pub fn rfc3339(unix: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
}
