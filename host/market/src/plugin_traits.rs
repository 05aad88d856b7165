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
        StrategyRef(&self.0).rank_or_zero(machine, bids)
    }
}

/// Fixed plugin versions with no fallback and no fault counting: what a replay, a
/// backtest or a "what would win" search runs, so that it answers as the recorded
/// versions did and never touches the live registry's counters or quarantine.
///
/// Validators run in order, each on the bids the ones before passed; a faulting validator
/// fails closed (it rejects every bid it was given with `validator-unavailable`), and a
/// faulting strategy scores every bid zero, as the live registry does once no version of
/// it works.
pub struct FixedPlugins {
    /// The validators, in order.
    pub validators: Vec<std::sync::Arc<dyn Validator>>,
    /// The strategy.
    pub strategy: std::sync::Arc<dyn Strategy>,
}

impl Plugins for FixedPlugins {
    fn validate(&self, machine: &MachineContext, bids: &[CandidateBid]) -> ValidationOutcome {
        let mut outcome = ValidationOutcome::default();
        // Copied only once some bid has been rejected.
        let mut remaining: Option<Vec<CandidateBid>> = None;
        for validator in &self.validators {
            let candidates = remaining.as_deref().unwrap_or(bids);
            if candidates.is_empty() {
                break;
            }
            let by = validator.plugin_ref().clone();
            let rejections = match validator.validate(machine, candidates) {
                Ok(rejections) => {
                    outcome.answered_by.push(by.clone());
                    rejections
                }
                Err(fault) => {
                    let why = fault.to_string();
                    outcome.faults.push((by.clone(), fault));
                    candidates
                        .iter()
                        .map(|b| validator_unavailable(b.id, &by.name, &why))
                        .collect()
                }
            };
            if rejections.is_empty() {
                continue;
            }
            let rejected: std::collections::HashSet<u64> =
                rejections.iter().map(|r| r.bid_id).collect();
            remaining = Some(
                candidates
                    .iter()
                    .filter(|b| !rejected.contains(&b.id))
                    .cloned()
                    .collect(),
            );
            outcome
                .rejections
                .extend(rejections.into_iter().map(|r| (by.clone(), r)));
        }
        outcome
    }

    fn rank(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome {
        StrategyRef(self.strategy.as_ref()).rank_or_zero(machine, bids)
    }

    fn grouped(&self, calls: &mut dyn FnMut()) {
        calls()
    }
}

/// A strategy's answer, or all-zero scores with its fault.
struct StrategyRef<'a>(&'a dyn Strategy);

impl StrategyRef<'_> {
    fn rank_or_zero(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome {
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

/// Code of the rejection given to every bid while a validator has no working version.
pub const VALIDATOR_UNAVAILABLE: &str = "validator-unavailable";

/// How a validator with no working version (`why`) rejects a bid: it fails closed.
pub fn validator_unavailable(bid_id: u64, validator: &str, why: &str) -> Rejection {
    Rejection {
        bid_id,
        code: VALIDATOR_UNAVAILABLE.into(),
        message: format!(
            "validator {validator} has no working version ({why}); bids wait until it works"
        ),
    }
}
