//! `gigaspot serve`: open the store, install the plugins, audit the ledger, then serve
//! HTTP and clear every interval until Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use gigaspot_market::{PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::{ArtifactCache, PluginRegistry, PluginRuntime};
use gigaspot_store::{PgStore, SledStore, Store};

use crate::app::{AppState, router};
use crate::auth::{generate_key, key_hash};
use crate::config::Config;

/// The operator's account, created with the database (it also holds the fees).
const OPERATOR_ACCOUNT: u64 = 1;

/// Everything `serve` sets up before listening, and the operator key when one was
/// generated (shown once).
pub fn prepare(config: Config) -> Result<(AppState, Option<String>)> {
    config.validate()?;
    let store = open_store(&config)?;
    // The database holds the market parameters; the configuration's explicit values seed
    // a new database and otherwise count as an explicit change, said in the log.
    let stored = store.params()?;
    let wanted = config.params_over(&stored);
    if wanted != stored {
        if store.cleared_through()?.is_some() {
            tracing::warn!(
                ?stored,
                configured = ?wanted,
                "the configuration differs from the stored market parameters: applying it as a \
                 change (a new billing interval starts at the next boundary)"
            );
        }
        store.set_params(&wanted)?;
    }
    let clock = store.interval_clock()?;
    tracing::info!(
        billing_interval_s = wanted.billing_interval_s,
        interval_in_force_s = clock.length_s(),
        fee_bps = wanted.fee_bps,
        clore_usd = wanted.clore_usd,
        "market parameters"
    );
    let report = store
        .audit()
        .context("the ledger audit failed; billing is stopped")?;
    tracing::info!(transfers = report.transfers, "ledger audit passed");
    let generated = match &config.operator_key {
        Some(key) => {
            store.add_api_key(OPERATOR_ACCOUNT, key_hash(key))?;
            None
        }
        None if store.has_api_key(OPERATOR_ACCOUNT)? => None,
        None => {
            let key = generate_key();
            store.add_api_key(OPERATOR_ACCOUNT, key_hash(&key))?;
            Some(key)
        }
    };
    let plugins = &config.plugins;
    let limits = plugins.limits();
    let cache = ArtifactCache::on_disk(config.data_dir.join("plugin-cache"));
    let runtime = Arc::new(PluginRuntime::new(limits, cache)?);
    let registry = Arc::new(PluginRegistry::new(
        Arc::new(PricePerWatt::new()),
        plugins.quarantine_after,
    ));
    upgrade_plugin_ids(&*store)?;
    if plugins.strategy.is_none() && plugins.validators.is_empty() {
        restore_active(&*store, &runtime, &registry)?;
    } else {
        install_configured(&*store, plugins, &runtime, &registry)?;
        store.set_active_plugins(&crate::api_operator::active_plugins(&registry))?;
        store.set_plugin_state(&crate::api_operator::plugin_state(&registry))?;
    }
    Ok((AppState::new(store, registry, runtime, config), generated))
}

/// The market's store: the PostgreSQL database of `database_url` (shared with any other
/// replicas), or else sled in `data_dir`.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => {
            let store = PgStore::open(url).context("cannot open the PostgreSQL database")?;
            tracing::info!("market in PostgreSQL (replicas may share it)");
            Arc::new(store)
        }
        None => Arc::new(SledStore::open(&config.data_dir).with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?),
    })
}

/// Stores plugin versions kept before a version's id included its configuration under
/// their full id (component digest + configuration digest), and the active set with them.
fn upgrade_plugin_ids(store: &dyn Store) -> Result<()> {
    let mut renamed = std::collections::HashMap::new();
    for record in store.plugin_versions()? {
        if !record.digest.starts_with("sha256:") || record.digest.contains("+config:") {
            continue;
        }
        let id = gigaspot_market::verdict::version_id(&record.digest, &record.config);
        store.put_plugin_version(&gigaspot_store::PluginVersionRecord {
            digest: id.clone(),
            ..record.clone()
        })?;
        store.remove_plugin_version(&record.digest)?;
        tracing::info!(old = %record.digest, new = %id, "plugin version id now names its configuration");
        renamed.insert(record.digest, id);
    }
    if !renamed.is_empty() {
        let mut active = store.active_plugins()?;
        let rename = |d: &mut String| {
            if let Some(new) = renamed.get(d.as_str()) {
                d.clone_from(new);
            }
        };
        active.strategy.iter_mut().for_each(rename);
        active.validators.iter_mut().for_each(rename);
        store.set_active_plugins(&active)?;
    }
    Ok(())
}

/// Installs the plugins named in the configuration.
///
/// Each configured version is also stored (as one installed through the API is), so that
/// the decisions it makes can be replayed and explained later.
fn install_configured(
    store: &dyn Store,
    plugins: &crate::config::PluginsConfig,
    runtime: &PluginRuntime,
    registry: &PluginRegistry,
) -> Result<()> {
    let stored: std::collections::HashSet<String> = store
        .plugin_versions()?
        .into_iter()
        .map(|r| r.digest)
        .collect();
    let keep = |plugin: &gigaspot_market::verdict::PluginRef, kind: &str, wasm, config: &str| {
        if stored.contains(&plugin.digest) {
            return Ok(());
        }
        store.put_plugin_version(&gigaspot_store::PluginVersionRecord {
            digest: plugin.digest.clone(),
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            kind: kind.into(),
            config: config.into(),
            installed_at: crate::app::wall_clock(),
            wasm,
        })
    };
    if let Some(spec) = &plugins.strategy {
        let wasm = PluginRuntime::read(&spec.path)?;
        let strategy = runtime
            .load_strategy(&wasm, &spec.config)
            .with_context(|| format!("strategy {}", spec.path.display()))?;
        tracing::info!(digest = %strategy.plugin_ref().digest, "strategy installed");
        keep(strategy.plugin_ref(), "strategy", wasm, &spec.config)?;
        registry.activate_strategy(Arc::new(strategy));
    }
    for spec in &plugins.validators {
        let wasm = PluginRuntime::read(&spec.path)?;
        let validator = runtime
            .load_validator(&wasm, &spec.config)
            .with_context(|| format!("validator {}", spec.path.display()))?;
        tracing::info!(digest = %validator.plugin_ref().digest, "validator installed");
        keep(validator.plugin_ref(), "validator", wasm, &spec.config)?;
        registry.install_validator(Arc::new(validator));
    }
    Ok(())
}

/// Re-installs the versions an operator activated through the API before the restart:
/// the whole registry state (active, previous, quarantined) where it was recorded.
fn restore_active(
    store: &dyn Store,
    runtime: &PluginRuntime,
    registry: &PluginRegistry,
) -> Result<()> {
    if let Some(state) = store.plugin_state()? {
        return resume(store, runtime, registry, &state);
    }
    let active = store.active_plugins()?;
    let versions = store.plugin_versions()?;
    let stored = |digest: &str| {
        versions
            .iter()
            .find(|v| v.digest == digest)
            .with_context(|| format!("the active plugin {digest} is not stored"))
    };
    if let Some(digest) = &active.strategy {
        let record = stored(digest)?;
        registry.activate_strategy(Arc::new(
            runtime.load_strategy(&record.wasm, &record.config)?,
        ));
    }
    for digest in &active.validators {
        let record = stored(digest)?;
        registry.install_validator(Arc::new(
            runtime.load_validator(&record.wasm, &record.config)?,
        ));
    }
    Ok(())
}

/// Resumes the registry state recorded before the restart, and says so in the log.
fn resume(
    store: &dyn Store,
    runtime: &PluginRuntime,
    registry: &PluginRegistry,
    state: &gigaspot_store::PluginState,
) -> Result<()> {
    let versions = store.plugin_versions()?;
    let builtin = registry.builtin().digest;
    let record = |digest: &str| {
        versions
            .iter()
            .find(|v| v.digest == digest)
            .with_context(|| format!("the plugin version {digest} is not stored"))
    };
    let strategy = |digest: &Option<String>| -> Result<Option<Arc<dyn Strategy>>> {
        match digest {
            None => Ok(None),
            Some(d) if *d == builtin => Ok(Some(registry.builtin_strategy())),
            Some(d) => {
                let r = record(d)?;
                Ok(Some(Arc::new(runtime.load_strategy(&r.wasm, &r.config)?)))
            }
        }
    };
    let validator = |digest: &str| -> Result<Arc<dyn Validator>> {
        let r = record(digest)?;
        Ok(Arc::new(runtime.load_validator(&r.wasm, &r.config)?))
    };
    let mut validators = Vec::new();
    for (active, previous) in &state.validators {
        let previous = previous.as_deref().map(validator).transpose()?;
        validators.push((validator(active)?, previous));
    }
    registry.restore(
        strategy(&state.strategy)?,
        strategy(&state.previous_strategy)?,
        validators,
        &state.quarantined,
    );
    tracing::info!(
        strategy = ?state.strategy,
        previous = ?state.previous_strategy,
        validators = ?state.validators,
        quarantined = ?state.quarantined,
        "plugin state resumed as it was before the restart"
    );
    Ok(())
}

/// Serves until Ctrl-C or SIGTERM, then stops gracefully: no new connections, requests in
/// flight finish (for at most `shutdown_grace_s`), the clock stops, the served time
/// confirmed so far is written and the store is closed.
pub async fn run(config: Config) -> Result<()> {
    let (state, generated) = tokio::task::spawn_blocking(move || prepare(config)).await??;
    if let Some(key) = generated {
        println!("operator API key (shown once, store it now): {key}");
    }
    let options = crate::listener::ListenOptions::from_config(&state.config)?;
    if let Some(limit) = crate::listener::raise_open_files_limit() {
        tracing::info!(open_files = limit, "open-files limit");
    }
    let listener = tokio::net::TcpListener::bind(state.config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", state.config.bind))?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{}", listener.local_addr()?);
    let clearing = tokio::spawn(crate::clearing_loop::run(state.clone()));
    let grace = Duration::from_secs(u64::from(state.config.shutdown_grace_s));
    let signal = async {
        let signal = shutdown_signal().await;
        tracing::info!(
            signal,
            grace_s = grace.as_secs(),
            "stopping: no new connections, finishing the requests in flight"
        );
    };
    let drained =
        crate::listener::serve(listener, router(state.clone()), options, signal, grace).await;
    if drained {
        tracing::info!("every request in flight finished");
    } else {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "requests still running after the grace period are cut off"
        );
    }
    clearing.abort();
    close(&state).await
}

/// Writes what was confirmed since the last write (nothing is lost on a clean stop) and
/// closes the store: a tick or write in progress completes first.
async fn close(state: &AppState) -> Result<()> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        crate::clearing_loop::flush_served_time(&state)?;
        state.store.close()?;
        Ok(())
    })
    .await??;
    Ok(())
}

/// Resolves at Ctrl-C (SIGINT) or SIGTERM (what systemd and Docker send), naming it.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C stops the service.
            Err(_) => std::future::pending::<()>().await,
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        name = interrupt => name,
        name = terminate => name,
    }
}
