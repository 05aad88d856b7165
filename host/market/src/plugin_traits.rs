//! The two plugin roles, in market terms. The clearing calls them through these traits;
//! the plugin runtime implements them for WebAssembly components and this crate
//! implements them natively for the reference strategy.

use crate::context::{CandidateBid, MachineContext};
use crate::verdict::{PluginFault, PluginRef, Rejection, Score};

/// Orders a machine's candidate bids: the highest score wins.
///
/// One call per machine per interval with the whole candidate list. Implementations must
/// be deterministic, and a successful answer must name every input bid exactly once with
/// a finite score (see [`crate::output_check::check_scores`]).
pub trait Strategy: Send + Sync {
    /// Which plugin version this is.
    fn plugin_ref(&self) -> &PluginRef;
    /// Scores every bid.
    fn rank(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Score>, PluginFault>;
}

/// Vetoes bids for one interval, with a reason for each.
pub trait Validator: Send + Sync {
    /// Which plugin version this is.
    fn plugin_ref(&self) -> &PluginRef;
    /// Returns the rejected bids, each at most once; the others pass.
    fn validate(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Rejection>, PluginFault>;
}
