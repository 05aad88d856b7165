//! The two plugin roles, in market terms. The clearing calls them through these traits;
//! the plugin runtime implements them for WebAssembly components and this crate
//! implements them natively for the reference strategy.

use crate::context::{CandidateBid, MachineContext};
use crate::verdict::{PluginFault, PluginRef, RankOutcome, Rejection, Score, ValidationOutcome};

/// Orders a machine's candidate bids: the highest score wins.
///
/// One call per machine per interval with the whole candidate list. Implementations must
/// be deterministic, and a successful answer must name every input bid exactly once with
/// a finite score (see [`crate::output_check::check_scores`]).
pub trait Strategy: Send + Sync {
    /// Which plugin version this is.
    fn plugin_ref(&self) -> &PluginRef;
    /// Fuel consumed by all calls so far, for plugins that run on fuel.
    fn fuel_consumed(&self) -> Option<u64> {
        None
    }
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
    /// Fuel consumed by all calls so far, for plugins that run on fuel.
    fn fuel_consumed(&self) -> Option<u64> {
        None
    }
    /// Returns the rejected bids, each at most once; the others pass.
    fn validate(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Rejection>, PluginFault>;
}

/// The installed plugins as the clearing uses them: validators in order, then the
/// strategy, each failing closed. `gigaspot_plugin_runtime::PluginRegistry` is the real
/// one; [`StrategyOnly`] serves tests and benchmarks.
pub trait Plugins: Send + Sync {
    /// Runs every validator; a bid is rejected at most once.
    fn validate(&self, machine: &MachineContext, bids: &[CandidateBid]) -> ValidationOutcome;
    /// Scores the bids; never fails (a fault falls back, at worst to all-zero scores).
    fn rank(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome;
    /// Runs `calls`, the clearing of a fixed run of machines on this thread, as one group:
    /// plugins that run in instances may answer the group's calls from one instance, made
    /// fresh for the group, so state a plugin keeps lives for the group only and the same
    /// run of machines gets the same answers in every tick. The default runs the calls as
    /// they are.
    fn grouped(&self, calls: &mut dyn FnMut()) {
        calls()
    }
}

/// One strategy and no validators; a faulting call scores every bid zero (idle).
pub struct StrategyOnly<S>(pub S);

impl<S: Strategy> Plugins for StrategyOnly<S> {
    fn validate(&self, _machine: &MachineContext, _bids: &[CandidateBid]) -> ValidationOutcome {
        ValidationOutcome::default()
    }

    fn rank(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome {
        match self.0.rank(machine, bids) {
            Ok(scores) => RankOutcome {
                scores,
                answered_by: Some(self.0.plugin_ref().clone()),
                faults: Vec::new(),
            },
            Err(fault) => RankOutcome {
                scores: bids
                    .iter()
                    .map(|b| Score {
                        bid_id: b.id,
                        score: 0.0,
                    })
                    .collect(),
                answered_by: None,
                faults: vec![(self.0.plugin_ref().clone(), fault)],
            },
        }
    }
}
