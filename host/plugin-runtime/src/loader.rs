//! Loading plugins: hash, compile (cached), audit imports, link, pre-instantiate,
//! configure and describe.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use gigaspot_market::verdict::version_id;
use gigaspot_market::{PluginInfo, PluginRef};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use crate::artifact_cache::ArtifactCache;
use crate::contract::{ContractVersion, v0_1_0, v0_2_0, v0_3_0};
use crate::engine::{EpochTicker, build_engine};
use crate::error::LoadError;
use crate::guest_io;
use crate::import_audit::{forbidden_imports, import_names};
use crate::limits::PluginLimits;
use crate::sandbox::{Calls, HostState, RankCalls, Sandbox, StartError, ValidateCalls, World};
use crate::wasm_plugin::{WasmStrategy, WasmValidator};

/// Which plugin world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// The `strategy` world: exports `rank`.
    Strategy,
    /// The `validator` world: exports `validate`.
    Validator,
}

impl PluginKind {
    fn world(self) -> &'static str {
        match self {
            PluginKind::Strategy => "strategy",
            PluginKind::Validator => "validator",
        }
    }
}

/// Loads plugins into sandboxes sharing one engine, one set of limits and one artefact
/// cache. Dropping it stops the epoch ticker; loaded plugins then keep fuel and memory
/// limits but lose the wall-clock backstop, so keep the runtime alive as long as them.
pub struct PluginRuntime {
    engine: Engine,
    limits: PluginLimits,
    cache: ArtifactCache,
    refused_loads: AtomicU64,
    _ticker: EpochTicker,
}

/// The sandbox of the newest contract version (listed newest first) whose `$world` world
/// the linked component `$pre` type checks against; without one, returns the refusal that
/// names the supported versions and the newest one's mismatch.
macro_rules! newest_fitting {
    ($self:expr, $pre:expr, $config:expr, $world:ident :: $pre_type:ident as $calls:ident,
     $what:literal, [$($module:ident => $version:ident),+]) => {{
        let mut newest_mismatch = None;
        let mut fitting: Option<(ContractVersion, Box<dyn $calls>)> = None;
        $(
            if fitting.is_none() {
                match $module::$world::$pre_type::new($pre.clone()) {
                    Ok(world) => {
                        fitting = Some((ContractVersion::$version, Box::new($self.sandbox(world, $config))));
                    }
                    Err(e) => {
                        newest_mismatch.get_or_insert(e);
                    }
                }
            }
        )+
        match (fitting, newest_mismatch) {
            (Some(fitting), _) => fitting,
            (None, Some(mismatch)) => return Err(no_contract($what, mismatch)),
            (None, None) => unreachable!("a version either fits or mismatches"),
        }
    }};
}

impl PluginRuntime {
    /// A runtime enforcing `limits` and caching compiled components in `cache`.
    pub fn new(limits: PluginLimits, cache: ArtifactCache) -> Result<Self, LoadError> {
        let engine = build_engine(&limits)
            .map_err(|e| LoadError::Compile(format!("cannot configure wasmtime: {e:#}")))?;
        let ticker = EpochTicker::start(engine.clone()).map_err(|source| LoadError::Io {
            context: "cannot start the epoch ticker".into(),
            source,
        })?;
        Ok(PluginRuntime {
            engine,
            limits,
            cache,
            refused_loads: AtomicU64::new(0),
            _ticker: ticker,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// Reads a plugin file.
    pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
        std::fs::read(path).map_err(|source| LoadError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })
    }

    /// Compiles and audits `wasm` and tells which world it implements.
    pub fn kind_of(&self, wasm: &[u8]) -> Result<PluginKind, LoadError> {
        let (component, _) = self.compile_audited(wasm)?;
        self.detect_kind(&component)
    }

    /// Compiles `wasm` and lists every import of the component, allowed or not.
    pub fn imports(&self, wasm: &[u8]) -> Result<Vec<String>, LoadError> {
        let (component, _) = self.compile(wasm)?;
        Ok(import_names(&self.engine, &component))
    }

    /// Loads a strategy of any supported contract version (the newest it type checks
    /// against) and configures it with `config`.
    pub fn load_strategy(&self, wasm: &[u8], config: &str) -> Result<WasmStrategy, LoadError> {
        self.count_refusal(|| {
            let (pre, digest) = self.link(wasm, PluginKind::Strategy)?;
            let (contract, sandbox) = newest_fitting!(
                self, pre, config, strategy::StrategyPre as RankCalls, "strategy",
                [v0_3_0 => V0_3_0, v0_2_0 => V0_2_0, v0_1_0 => V0_1_0]
            );
            let info = started(sandbox.as_ref())?;
            Ok(WasmStrategy {
                plugin_ref: plugin_ref(&info, version_id(&digest, config)),
                info,
                contract,
                sandbox,
            })
        })
    }

    /// Loads a validator of any supported contract version (the newest it type checks
    /// against) and configures it with `config`.
    pub fn load_validator(&self, wasm: &[u8], config: &str) -> Result<WasmValidator, LoadError> {
        self.count_refusal(|| {
            let (pre, digest) = self.link(wasm, PluginKind::Validator)?;
            let (contract, sandbox) = newest_fitting!(
                self, pre, config, validator::ValidatorPre as ValidateCalls, "validator",
                [v0_3_0 => V0_3_0, v0_2_0 => V0_2_0, v0_1_0 => V0_1_0]
            );
            let info = started(sandbox.as_ref())?;
            Ok(WasmValidator {
                plugin_ref: plugin_ref(&info, version_id(&digest, config)),
                info,
                contract,
                sandbox,
            })
        })
    }

    /// Plugins refused by `load_strategy` or `load_validator` so far.
    pub fn refused_loads(&self) -> u64 {
        self.refused_loads.load(Ordering::Relaxed)
    }

    fn count_refusal<T>(
        &self,
        load: impl FnOnce() -> Result<T, LoadError>,
    ) -> Result<T, LoadError> {
        let result = load();
        if let Err(e) = &result {
            self.refused_loads.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("plugin refused at load: {e}");
        }
        result
    }

    /// The compiled component and its `sha256:<hex>` digest.
    fn compile(&self, wasm: &[u8]) -> Result<(Component, String), LoadError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let component = self.cache.component(&self.engine, wasm, &sha256)?;
        Ok((component, format!("sha256:{sha256}")))
    }

    fn compile_audited(&self, wasm: &[u8]) -> Result<(Component, String), LoadError> {
        let (component, digest) = self.compile(wasm)?;
        let forbidden = forbidden_imports(&import_names(&self.engine, &component));
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports(forbidden));
        }
        Ok((component, digest))
    }

    fn detect_kind(&self, component: &Component) -> Result<PluginKind, LoadError> {
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let has = |name: &str| exports.iter().any(|e| e == name);
        match (has("rank"), has("validate")) {
            (true, false) => Ok(PluginKind::Strategy),
            (false, true) => Ok(PluginKind::Validator),
            _ => Err(LoadError::WrongWorld {
                expected: "strategy or validator",
                reason: format!(
                    "a plugin exports exactly one of `rank` and `validate`; this one exports [{}]",
                    exports.join(", ")
                ),
            }),
        }
    }

    fn link(
        &self,
        wasm: &[u8],
        kind: PluginKind,
    ) -> Result<(InstancePre<HostState>, String), LoadError> {
        let (component, digest) = self.compile_audited(wasm)?;
        let found = self.detect_kind(&component)?;
        if found != kind {
            return Err(LoadError::WrongWorld {
                expected: kind.world(),
                reason: format!("it implements the {} world", found.world()),
            });
        }
        let mut linker = Linker::<HostState>::new(&self.engine);
        // The audit admitted only wasi:cli and wasi:io imports: answer the few a std
        // guest calls on its own without giving anything away, and the rest with traps.
        guest_io::define(&mut linker, &import_names(&self.engine, &component))
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok((pre, digest))
    }

    /// A sandbox for `world` whose instances are configured with `config`.
    fn sandbox<W: World>(&self, world: W, config: &str) -> Sandbox<W> {
        Sandbox::new(
            self.engine.clone(),
            world,
            self.limits.clone(),
            config.to_owned(),
        )
    }
}

/// Starts a first instance and reads the plugin's metadata with it.
fn started(sandbox: &dyn Calls) -> Result<PluginInfo, LoadError> {
    match sandbox.start() {
        Ok(info) => Ok(info),
        Err(StartError::Refused(reason)) => Err(LoadError::Configure(reason)),
        Err(StartError::Fault(fault)) => Err(LoadError::Fault(fault)),
    }
}

/// The component implements the world but none of the supported contract versions;
/// `newest` is why the newest version's bindings refused it.
fn no_contract(world: &'static str, newest: wasmtime::Error) -> LoadError {
    let versions: Vec<&str> = ContractVersion::ALL.iter().map(|v| v.as_str()).collect();
    LoadError::WrongWorld {
        expected: world,
        reason: format!(
            "it implements none of the supported contract versions ({}) of gigaspot:plugin; \
             against {}: {newest:#}",
            versions.join(", "),
            ContractVersion::NEWEST
        ),
    }
}

fn plugin_ref(info: &PluginInfo, digest: String) -> PluginRef {
    PluginRef {
        name: info.name.clone(),
        version: info.version.clone(),
        digest,
    }
}
