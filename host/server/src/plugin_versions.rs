//! Plugin versions by version id, loaded from the market's stored records (WebAssembly)
//! or the built-in code: what a replay, a backtest and a "what would win" search run, so
//! that they answer as the recorded versions did without touching the live registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gigaspot_market::plugin_traits::FixedPlugins;
use gigaspot_market::verdict::PluginRef;
use gigaspot_market::{CandidateBid, PluginFault, Score};
use gigaspot_market::{MachineContext, PricePerWatt, Strategy, Validator};
use gigaspot_plugin_runtime::PluginRuntime;
use gigaspot_store::{PluginVersionRecord, Store, StoreError};

/// Loads and caches plugin versions by version id.
pub struct PluginVersions {
    runtime: Arc<PluginRuntime>,
    /// Weak: the market's state owns the store, and a shutdown waits for the last strong
    /// reference to close it.
    store: std::sync::Weak<dyn Store>,
    records: Mutex<HashMap<String, Arc<PluginVersionRecord>>>,
    strategies: Mutex<HashMap<String, Arc<dyn Strategy>>>,
    validators: Mutex<HashMap<String, Arc<dyn Validator>>>,
}

/// Why a version cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The version is not stored (removed by the operator, or never recorded).
    #[error("plugin version {0} is not stored in this market")]
    Missing(String),
    /// It is stored as the other kind.
    #[error("plugin version {id} is a {kind}, not a {wanted}")]
    WrongKind {
        /// The version id.
        id: String,
        /// What it is.
        kind: String,
        /// What was asked for.
        wanted: &'static str,
    },
    /// The runtime refused it.
    #[error("plugin version {id} does not load: {reason}")]
    Load {
        /// The version id.
        id: String,
        /// The loader's reason.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The market's store was closed (the service is shutting down).
    #[error("the market is shutting down")]
    Closed,
}

impl PluginVersions {
    /// Versions loaded by `runtime` from `store`'s records, read when first asked for.
    pub fn new(runtime: Arc<PluginRuntime>, store: Arc<dyn Store>) -> Self {
        PluginVersions {
            runtime,
            store: Arc::downgrade(&store),
            records: Mutex::default(),
            strategies: Mutex::default(),
            validators: Mutex::default(),
        }
    }

    /// The stored record of version `id`, read again from the store when not known yet
    /// (a version installed since).
    fn record(
        &self,
        id: &str,
        wanted: &'static str,
    ) -> Result<Arc<PluginVersionRecord>, VersionError> {
        let known = |records: &HashMap<String, Arc<PluginVersionRecord>>| records.get(id).cloned();
        let mut record = known(&self.records.lock().unwrap_or_else(|p| p.into_inner()));
        if record.is_none() {
            let store = self.store.upgrade().ok_or(VersionError::Closed)?;
            let records: HashMap<_, _> = store
                .plugin_versions()?
                .into_iter()
                .map(|r| (r.digest.clone(), Arc::new(r)))
                .collect();
            record = known(&records);
            *self.records.lock().unwrap_or_else(|p| p.into_inner()) = records;
        }
        let record = record.ok_or_else(|| VersionError::Missing(id.to_owned()))?;
        if record.kind != wanted {
            return Err(VersionError::WrongKind {
                id: id.to_owned(),
                kind: record.kind.clone(),
                wanted,
            });
        }
        Ok(record)
    }

    /// The strategy version `id` (`native:price-per-watt` is the built-in one).
    pub fn strategy(&self, id: &str) -> Result<Arc<dyn Strategy>, VersionError> {
        if let Some(s) = self
            .strategies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(s.clone());
        }
        let builtin = PricePerWatt::new();
        let strategy: Arc<dyn Strategy> = if builtin.plugin_ref().digest == id {
            Arc::new(builtin)
        } else {
            let record = self.record(id, "strategy")?;
            Arc::new(
                self.runtime
                    .load_strategy(&record.wasm, &record.config)
                    .map_err(|e| VersionError::Load {
                        id: id.to_owned(),
                        reason: e.to_string(),
                    })?,
            )
        };
        self.strategies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), strategy.clone());
        Ok(strategy)
    }

    /// The validator version `id`.
    pub fn validator(&self, id: &str) -> Result<Arc<dyn Validator>, VersionError> {
        if let Some(v) = self
            .validators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Ok(v.clone());
        }
        let record = self.record(id, "validator")?;
        let validator: Arc<dyn Validator> = Arc::new(
            self.runtime
                .load_validator(&record.wasm, &record.config)
                .map_err(|e| VersionError::Load {
                    id: id.to_owned(),
                    reason: e.to_string(),
                })?,
        );
        self.validators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), validator.clone());
        Ok(validator)
    }

    /// The versions a decision names: its validators in order and its strategy (`None`:
    /// no strategy answered, so every bid scores zero).
    pub fn fixed(
        &self,
        strategy: Option<&PluginRef>,
        validators: &[PluginRef],
    ) -> Result<FixedPlugins, VersionError> {
        Ok(FixedPlugins {
            validators: validators
                .iter()
                .map(|v| self.validator(&v.digest))
                .collect::<Result<_, _>>()?,
            strategy: match strategy {
                Some(s) => self.strategy(&s.digest)?,
                None => Arc::new(NoStrategy),
            },
        })
    }
}

/// What ranks when no strategy version answered: every call faults, so every bid scores
/// zero (the machine idles), as in the live clearing.
struct NoStrategy;

impl Strategy for NoStrategy {
    fn plugin_ref(&self) -> &PluginRef {
        static NONE: std::sync::OnceLock<PluginRef> = std::sync::OnceLock::new();
        NONE.get_or_init(|| PluginRef {
            name: "none".into(),
            version: "0".into(),
            digest: "none".into(),
        })
    }

    fn rank(&self, _: &MachineContext, _: &[CandidateBid]) -> Result<Vec<Score>, PluginFault> {
        Err(PluginFault::Trap("no strategy version answered".into()))
    }
}
