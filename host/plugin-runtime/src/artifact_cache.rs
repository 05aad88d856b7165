//! Compile once per plugin version: precompiled components cached in memory and,
//! optionally, on disk, keyed by the wasm's sha256 and the engine's compatibility hash.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::LoadError;

/// How often the cache compiled and how often it answered from memory or disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components compiled from wasm bytes.
    pub compiles: u64,
    /// Components answered from memory.
    pub memory_hits: u64,
    /// Components deserialized from a precompiled artefact on disk.
    pub disk_hits: u64,
}

/// The cache of compiled components.
///
/// The on-disk directory must be writable only by the operator: precompiled artefacts
/// are native code and are loaded without re-validation.
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    compiled: Mutex<HashMap<String, Component>>,
    compiles: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
}

impl ArtifactCache {
    /// A cache that lives as long as the process.
    pub fn in_memory() -> Self {
        Self::with_dir(None)
    }

    /// A cache that also keeps precompiled artefacts in `dir` across restarts.
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        Self::with_dir(Some(dir.into()))
    }

    fn with_dir(dir: Option<PathBuf>) -> Self {
        ArtifactCache {
            dir,
            compiled: Mutex::new(HashMap::new()),
            compiles: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
        }
    }

    /// Counters since the cache was made.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiles: self.compiles.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
        }
    }

    /// The compiled component for `wasm`, whose sha256 in hex is `sha256_hex`.
    pub(crate) fn component(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256_hex: &str,
    ) -> Result<Component, LoadError> {
        let key = format!("{sha256_hex}-{:016x}", engine_hash(engine));
        // Held across the compile so that one version is never compiled twice at once.
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(component) = compiled.get(&key) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component.clone());
        }
        let path = self
            .dir
            .as_ref()
            .map(|dir| dir.join(format!("{key}.cwasm")));
        let component = match path.as_deref().and_then(|p| deserialize(engine, p)) {
            Some(component) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let component = Component::new(engine, wasm)
                    .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
                self.compiles.fetch_add(1, Ordering::Relaxed);
                if let Some(path) = &path {
                    store_artifact(&component, path)?;
                }
                component
            }
        };
        compiled.insert(key, component.clone());
        Ok(component)
    }
}

impl ArtifactCache {
    /// Forgets every compiled form of the component whose sha256 in hex is `sha256_hex`,
    /// in memory and on disk (for a refused upload: nothing of it stays behind). Returns
    /// how many artefact files were removed.
    pub fn forget(&self, sha256_hex: &str) -> usize {
        let prefix = format!("{sha256_hex}-");
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| !key.starts_with(&prefix));
        let Some(dir) = &self.dir else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }
}

fn engine_hash(engine: &Engine) -> u64 {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    u64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a sha256 digest has 32 bytes"),
    )
}

/// Feeds what a `Hash` implementation writes into sha256: a key that stays the same across
/// processes and Rust releases (`DefaultHasher` promises neither).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the digest is used.
        0
    }
}

/// The artefact at `path`, or `None` when it is missing or unusable (it is then rebuilt).
fn deserialize(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the file was written by `store_artifact` into the operator's cache directory,
    // which must not be writable by anyone else (documented on `ArtifactCache`); wasmtime
    // still checks that it was made by a compatible engine.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "discarding unusable plugin artefact: {e:#}");
            None
        }
    }
}

fn store_artifact(component: &Component, path: &Path) -> Result<(), LoadError> {
    let io = |context: &str| {
        let context = format!("{context} {}", path.display());
        move |source| LoadError::Io { context, source }
    };
    let bytes = component
        .serialize()
        .map_err(|e| LoadError::Compile(format!("cannot serialize the compiled plugin: {e:#}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("cannot create the plugin cache"))?;
    }
    // Write aside and rename so that a crash never leaves a torn artefact under the key.
    let tmp = path.with_extension("cwasm.tmp");
    std::fs::write(&tmp, bytes).map_err(io("cannot write"))?;
    std::fs::rename(&tmp, path).map_err(io("cannot move into place"))?;
    Ok(())
}
