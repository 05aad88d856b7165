//! What plugins answer, who answered, and how a call can fail.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A strategy's score for one bid: higher wins; zero or negative is "not acceptable".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The scored bid.
    pub bid_id: u64,
    /// The score.
    pub score: f64,
}

/// A validator's rejection of one bid for one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The rejected bid.
    pub bid_id: u64,
    /// Machine-readable reason, kebab-case.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Name, version and description a plugin reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Short kebab-case name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One-line description.
    pub description: String,
}

/// Identifies exactly which plugin version answered a call; stored in decision records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginRef {
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The version id: `sha256:<hex>` of the component bytes followed by
    /// `+config:<hex>` (the first 16 hex digits of the sha256 of its configuration, see
    /// [`version_id`]), or `native:<name>` for built-in code. The same component under
    /// another configuration is another version.
    pub digest: String,
}

/// The id of a plugin version: its component digest (`sha256:<hex>`) and the digest of
/// its configuration, so that a decision names exactly what ran.
pub fn version_id(component_digest: &str, config: &str) -> String {
    use sha2::{Digest, Sha256};
    let config_hex = hex::encode(Sha256::digest(config.as_bytes()));
    format!("{component_digest}+config:{}", &config_hex[..16])
}

/// The component digest part of a version id (the whole id for built-in code and for
/// ids written before configurations were part of them).
pub fn component_digest(version_id: &str) -> &str {
    version_id
        .split_once("+config:")
        .map_or(version_id, |(component, _)| component)
}

/// Why a plugin call produced no usable answer. Every variant fails the call closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PluginFault {
    /// The call used up its fuel budget (deterministic CPU limit).
    #[error("plugin ran out of fuel (budget {budget} units)")]
    OutOfFuel {
        /// The fuel budget of the call.
        budget: u64,
    },
    /// The call passed its wall-clock deadline.
    #[error("plugin exceeded its wall-clock deadline of {timeout_ms} ms")]
    Timeout {
        /// The deadline in milliseconds.
        timeout_ms: u64,
    },
    /// The guest tried to grow its memory beyond the cap.
    #[error("plugin exceeded its memory cap of {limit_bytes} bytes")]
    Memory {
        /// The cap in bytes.
        limit_bytes: u64,
    },
    /// The guest trapped (unreachable, stack overflow, a refused import, exit...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest panicked: `panicked at <where>: <message>`, from its own report.
    #[error("plugin {0}")]
    Panic(String),
    /// The answer broke the contract (unknown or duplicate ids, non-finite scores...).
    #[error("plugin returned malformed output: {0}")]
    BadOutput(String),
}

impl PluginFault {
    /// A short stable label for metrics and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFault::OutOfFuel { .. } => "out_of_fuel",
            PluginFault::Timeout { .. } => "timeout",
            PluginFault::Memory { .. } => "memory",
            PluginFault::Trap(_) => "trap",
            PluginFault::Panic(_) => "panic",
            PluginFault::BadOutput(_) => "bad_output",
        }
    }
}

/// What answered a ranking call and what failed on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct RankOutcome {
    /// One score per input bid. All zero when no version could answer (the machine idles).
    pub scores: Vec<Score>,
    /// The version that produced the scores, `None` when none could.
    pub answered_by: Option<PluginRef>,
    /// The faults met before the answer, in the order they happened.
    pub faults: Vec<(PluginRef, PluginFault)>,
}

/// The verdicts of all validators on one machine's candidates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationOutcome {
    /// Each rejected bid with the version that rejected it. A bid is rejected at most once:
    /// later validators see only the bids earlier ones let through.
    pub rejections: Vec<(PluginRef, Rejection)>,
    /// The validator versions that answered, in the order they ran.
    pub answered_by: Vec<PluginRef>,
    /// The faults met, in the order they happened.
    pub faults: Vec<(PluginRef, PluginFault)>,
}
