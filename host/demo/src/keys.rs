//! The demo's participants and their keys, saved beside the market's data so that a second
//! start reuses the same market.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Everyone the demo created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DemoKeys {
    /// The operator's API key.
    pub operator: String,
    /// Host accounts.
    pub hosts: Vec<Participant>,
    /// Client accounts.
    pub clients: Vec<Participant>,
    /// Machines with their agents' tokens.
    pub machines: Vec<DemoMachine>,
}

/// An account and its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Participant {
    /// Account name.
    pub name: String,
    /// Account id.
    pub id: u64,
    /// API key.
    pub key: String,
}

/// A machine and the simulated GPUs its agent runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoMachine {
    /// Machine id.
    pub id: u64,
    /// The owning host's name.
    pub host: String,
    /// Simulated GPU spec, e.g. `4xRTX4090`.
    pub gpus: String,
    /// The agent's token.
    pub token: String,
}

impl DemoKeys {
    /// Reads the keys file, `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<DemoKeys>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the keys file (readable by its owner only: it holds every key).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_string_pretty(self)?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}
