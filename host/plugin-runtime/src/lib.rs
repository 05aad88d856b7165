//! Runs GigaSPOT plugins: WebAssembly components of the plugin contract
//! (`wit/since_vX.Y.Z/`, every released version), sandboxed with wasmtime.
//!
//! [`PluginRuntime`] loads a component (auditing its imports, compiling it once per
//! version through an [`ArtifactCache`]) into a [`WasmStrategy`] or [`WasmValidator`],
//! which implement the market's [`gigaspot_market::Strategy`] and
//! [`gigaspot_market::Validator`] traits. Every call runs under the [`PluginLimits`]:
//! fuel, an epoch deadline, a memory cap and a stack cap. [`PluginRegistry`] holds the
//! active versions, swaps them atomically and fails closed after faults.

mod ambient;
mod artifact_cache;
mod contract;
mod engine;
mod error;
mod guest_io;
mod import_audit;
mod instance_group;
mod limits;
mod loader;
mod registry;
mod sandbox;
mod wasm_plugin;

pub use ambient::{FIXED_MONOTONIC_NS, FIXED_RANDOM_SEED, FIXED_WALL_CLOCK_S};
pub use artifact_cache::{ArtifactCache, CacheStats};
pub use contract::ContractVersion;
pub use error::LoadError;
pub use guest_io::OUTPUT_CAP_BYTES;
pub use import_audit::{IMPORT_RULES, ImportRule, rule_for};
pub use instance_group::in_group;
pub use limits::PluginLimits;
pub use loader::{PluginKind, PluginRuntime};
pub use registry::{
    ChainLink, FaultCounts, PluginRegistry, RegistryError, RegistryState, VALIDATOR_UNAVAILABLE,
    ValidatorPair, VersionStats,
};
pub use sandbox::FaultDetail;
pub use wasm_plugin::{WasmStrategy, WasmValidator};
