//! The installed plugins: the active strategy with its predecessor, the ordered
//! validators, atomic swaps, roll-backs and the fail-closed fallback chain.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use gigaspot_market::{
    CandidateBid, MachineContext, PluginFault, PluginRef, Plugins, RankOutcome, Rejection, Score,
    Strategy, ValidationOutcome, Validator,
};
use thiserror::Error;

pub use gigaspot_market::plugin_traits::VALIDATOR_UNAVAILABLE;

/// Faults counted per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultCounts {
    /// Calls that ran out of fuel.
    pub out_of_fuel: u64,
    /// Calls that passed their deadline.
    pub timeout: u64,
    /// Calls that hit the memory cap.
    pub memory: u64,
    /// Calls that trapped.
    pub trap: u64,
    /// Calls that panicked.
    pub panic: u64,
    /// Calls that returned malformed output.
    pub bad_output: u64,
}

impl FaultCounts {
    /// All faults together.
    pub fn total(&self) -> u64 {
        self.out_of_fuel + self.timeout + self.memory + self.trap + self.panic + self.bad_output
    }
}

/// Call and fault counters of one installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStats {
    /// The version.
    pub plugin: PluginRef,
    /// `strategy`, `previous-strategy`, `fallback`, `validator` or `previous-validator`.
    pub role: &'static str,
    /// Calls made to it.
    pub calls: u64,
    /// Its faults by kind.
    pub faults: FaultCounts,
    /// Whether it is skipped after too many consecutive faults.
    pub quarantined: bool,
    /// Fuel its calls consumed, for plugins that run on fuel.
    pub fuel: Option<u64>,
    /// Its latest fault in words (for a panic, the plugin's own message).
    pub last_fault: Option<String>,
}

/// An operator action the registry could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// There is no previous version to roll back to.
    #[error("no previous {0} version to roll back to")]
    NothingToRollBack(String),
    /// No validator has this name.
    #[error("no validator named {0:?} is installed")]
    UnknownValidator(String),
    /// A validator order must name every installed validator exactly once.
    #[error("the order must name each installed validator exactly once; installed: {0:?}")]
    BadOrder(Vec<String>),
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    faults: [AtomicU64; 6],
    consecutive_faults: AtomicU32,
    /// The latest fault, for the quarantine's reason.
    last_fault: Mutex<Option<String>>,
}

/// A plugin version with its counters; cloning shares the counters.
struct Installed<T: ?Sized> {
    plugin: Arc<T>,
    counters: Arc<Counters>,
}

impl<T: ?Sized> Clone for Installed<T> {
    fn clone(&self) -> Self {
        Installed {
            plugin: self.plugin.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<T: ?Sized> Installed<T> {
    fn new(plugin: Arc<T>) -> Self {
        Installed {
            plugin,
            counters: Arc::default(),
        }
    }

    /// Runs `call` of version `who`, counting it; a success clears the consecutive-fault
    /// streak. Every fault is logged with the version and its kind, and the fault that
    /// quarantines the version (the `after`-th in a row) says so.
    fn call<R>(
        &self,
        who: &PluginRef,
        after: u32,
        call: impl FnOnce(&T) -> Result<R, PluginFault>,
    ) -> Result<R, PluginFault> {
        let c = &self.counters;
        c.calls.fetch_add(1, Ordering::Relaxed);
        let result = call(&self.plugin);
        match &result {
            Ok(_) => c.consecutive_faults.store(0, Ordering::Relaxed),
            Err(fault) => {
                c.faults[fault_index(fault)].fetch_add(1, Ordering::Relaxed);
                *c.last_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault.to_string());
                let streak = c.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    plugin = %who.name,
                    version = %who.version,
                    digest = %who.digest,
                    streak,
                    "plugin fault: {fault}"
                );
                if after > 0 && streak == after {
                    tracing::warn!(
                        plugin = %who.name,
                        version = %who.version,
                        digest = %who.digest,
                        "quarantined after {after} faults in a row: skipped until an operator \
                         activates or rolls back"
                    );
                }
            }
        }
        result
    }

    fn quarantined(&self, after: u32) -> bool {
        after > 0 && self.counters.consecutive_faults.load(Ordering::Relaxed) >= after
    }

    fn release(&self) {
        self.counters.consecutive_faults.store(0, Ordering::Relaxed);
    }

    /// Marks the version quarantined (after a restart) with the fault that caused it.
    fn quarantine(&self, after: u32, reason: &str) {
        self.counters
            .consecutive_faults
            .store(after.max(1), Ordering::Relaxed);
        *self
            .counters
            .last_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
    }

    /// Why it is quarantined: its latest fault.
    fn last_fault(&self) -> String {
        self.counters
            .latest_fault()
            .unwrap_or_else(|| "repeated faults".into())
    }
}

impl Counters {
    fn latest_fault(&self) -> Option<String> {
        self.last_fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn counts(&self) -> FaultCounts {
        let f = |i: usize| self.faults[i].load(Ordering::Relaxed);
        FaultCounts {
            out_of_fuel: f(0),
            timeout: f(1),
            memory: f(2),
            trap: f(3),
            bad_output: f(4),
            panic: f(5),
        }
    }
}

fn fault_index(fault: &PluginFault) -> usize {
    match fault {
        PluginFault::OutOfFuel { .. } => 0,
        PluginFault::Timeout { .. } => 1,
        PluginFault::Memory { .. } => 2,
        PluginFault::Trap(_) => 3,
        PluginFault::BadOutput(_) => 4,
        PluginFault::Panic(_) => 5,
    }
}

#[derive(Clone, Default)]
struct StrategySlot {
    active: Option<Installed<dyn Strategy>>,
    previous: Option<Installed<dyn Strategy>>,
}

#[derive(Clone)]
struct ValidatorSlot {
    name: String,
    active: Installed<dyn Validator>,
    previous: Option<Installed<dyn Validator>>,
}

/// What an operator set up in the registry, by version id: enough to resume exactly after
/// a restart (see [`PluginRegistry::state`] and [`PluginRegistry::restore`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryState {
    /// The active strategy (`None`: none activated, the built-in answers).
    pub strategy: Option<String>,
    /// Its roll-back target.
    pub previous_strategy: Option<String>,
    /// Validators in running order: (active, previous).
    pub validators: Vec<(String, Option<String>)>,
    /// Quarantined versions with the fault that put them there.
    pub quarantined: Vec<(String, String)>,
}

/// A validator's active version and its previous one, for [`PluginRegistry::restore`].
pub type ValidatorPair = (Arc<dyn Validator>, Option<Arc<dyn Validator>>);

/// One link of the strategy fallback chain.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLink {
    /// `active`, `previous` or `built-in`.
    pub role: &'static str,
    /// The version.
    pub plugin: PluginRef,
    /// Skipped after repeated faults.
    pub quarantined: bool,
}

/// The plugins the market clears with.
///
/// Readers take a snapshot of the installed versions for each call, so a swap never
/// disturbs a call in flight: it finishes on the version it started with. Every fault
/// fails closed: a faulting strategy call is answered by the previous version, then by the
/// built-in fallback; a faulting validator by its previous version, and without a working
/// one its bids are rejected as [`VALIDATOR_UNAVAILABLE`]. A version that faults
/// `quarantine_after` times in a row is skipped until an operator activates or rolls back.
pub struct PluginRegistry {
    strategy: ArcSwap<StrategySlot>,
    validators: ArcSwap<Vec<ValidatorSlot>>,
    fallback: Installed<dyn Strategy>,
    quarantine_after: u32,
    /// Serialises operator changes; readers never take it.
    writer: Mutex<()>,
}

impl PluginRegistry {
    /// A registry with no plugin installed: `fallback` answers until a strategy is
    /// activated. `quarantine_after = 0` never quarantines.
    pub fn new(fallback: Arc<dyn Strategy>, quarantine_after: u32) -> Self {
        PluginRegistry {
            strategy: ArcSwap::from_pointee(StrategySlot::default()),
            validators: ArcSwap::from_pointee(Vec::new()),
            fallback: Installed::new(fallback),
            quarantine_after,
            writer: Mutex::new(()),
        }
    }

    /// Makes `strategy` the active version; the active one becomes the previous. Returns
    /// the version that was active.
    pub fn activate_strategy(&self, strategy: Arc<dyn Strategy>) -> Option<PluginRef> {
        let _guard = self.lock_writer();
        let current = self.strategy.load_full();
        let replaced = current
            .active
            .as_ref()
            .map(|a| a.plugin.plugin_ref().clone());
        let new = strategy.plugin_ref().clone();
        self.strategy.store(Arc::new(StrategySlot {
            active: Some(Installed::new(strategy)),
            // The first activation can be rolled back to the built-in strategy.
            previous: Some(
                current
                    .active
                    .clone()
                    .unwrap_or_else(|| self.fallback.clone()),
            ),
        }));
        tracing::info!(
            strategy = %new.name,
            version = %new.version,
            digest = %new.digest,
            "strategy activated"
        );
        replaced
    }

    /// Makes the built-in strategy the active version, like any other version (the
    /// active one becomes the previous). Returns the version that was active.
    pub fn activate_builtin(&self) -> Option<PluginRef> {
        self.activate_strategy(self.fallback.plugin.clone())
    }

    /// The built-in strategy's reference (its digest names it for activation).
    pub fn builtin(&self) -> PluginRef {
        self.fallback.plugin.plugin_ref().clone()
    }

    /// Swaps the active and the previous strategy, releasing both from quarantine.
    /// Returns the version now active.
    pub fn rollback_strategy(&self) -> Result<PluginRef, RegistryError> {
        let _guard = self.lock_writer();
        let current = self.strategy.load_full();
        let Some(previous) = current.previous.clone() else {
            return Err(RegistryError::NothingToRollBack("strategy".into()));
        };
        previous.release();
        if let Some(active) = &current.active {
            active.release();
        }
        let now_active = previous.plugin.plugin_ref().clone();
        self.strategy.store(Arc::new(StrategySlot {
            active: Some(previous),
            previous: current.active.clone(),
        }));
        tracing::info!(
            strategy = %now_active.name,
            version = %now_active.version,
            digest = %now_active.digest,
            "strategy rolled back (released from quarantine)"
        );
        Ok(now_active)
    }

    /// The registry's state by version id, to persist.
    pub fn state(&self) -> RegistryState {
        let strategy = self.strategy.load();
        let validators = self.validators.load();
        let id = |i: &Installed<dyn Strategy>| i.plugin.plugin_ref().digest.clone();
        let vid = |i: &Installed<dyn Validator>| i.plugin.plugin_ref().digest.clone();
        let mut quarantined = Vec::new();
        let q = self.quarantine_after;
        for i in [strategy.active.as_ref(), strategy.previous.as_ref()]
            .into_iter()
            .flatten()
        {
            if i.quarantined(q) {
                quarantined.push((id(i), i.last_fault()));
            }
        }
        for slot in validators.iter() {
            for i in [Some(&slot.active), slot.previous.as_ref()]
                .into_iter()
                .flatten()
            {
                if i.quarantined(q) {
                    quarantined.push((vid(i), i.last_fault()));
                }
            }
        }
        quarantined.sort();
        quarantined.dedup();
        RegistryState {
            strategy: strategy.active.as_ref().map(id),
            previous_strategy: strategy.previous.as_ref().map(id),
            validators: validators
                .iter()
                .map(|s| (vid(&s.active), s.previous.as_ref().map(vid)))
                .collect(),
            quarantined,
        }
    }

    /// Resumes a persisted state: the strategy slot, the validators in order, and the
    /// quarantines (matched by version id) with their reasons. `strategy`/`previous` of
    /// `None` leave the slot empty; the built-in strategy is passed as
    /// [`PluginRegistry::builtin_strategy`].
    pub fn restore(
        &self,
        strategy: Option<Arc<dyn Strategy>>,
        previous: Option<Arc<dyn Strategy>>,
        validators: Vec<ValidatorPair>,
        quarantined: &[(String, String)],
    ) {
        let _guard = self.lock_writer();
        let builtin = self.builtin().digest;
        let install = |s: Arc<dyn Strategy>| {
            if s.plugin_ref().digest == builtin {
                self.fallback.clone()
            } else {
                Installed::new(s)
            }
        };
        let slot = StrategySlot {
            active: strategy.map(install),
            previous: previous.map(install),
        };
        let slots: Vec<ValidatorSlot> = validators
            .into_iter()
            .map(|(active, previous)| ValidatorSlot {
                name: active.plugin_ref().name.clone(),
                active: Installed::new(active),
                previous: previous.map(Installed::new),
            })
            .collect();
        let reason_of = |digest: &str| {
            quarantined
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, r)| r.as_str())
        };
        for i in [slot.active.as_ref(), slot.previous.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(reason) = reason_of(&i.plugin.plugin_ref().digest) {
                i.quarantine(self.quarantine_after, reason);
            }
        }
        for s in &slots {
            for i in [Some(&s.active), s.previous.as_ref()].into_iter().flatten() {
                if let Some(reason) = reason_of(&i.plugin.plugin_ref().digest) {
                    i.quarantine(self.quarantine_after, reason);
                }
            }
        }
        self.strategy.store(Arc::new(slot));
        self.validators.store(Arc::new(slots));
    }

    /// The built-in strategy, to pass to [`PluginRegistry::restore`].
    pub fn builtin_strategy(&self) -> Arc<dyn Strategy> {
        self.fallback.plugin.clone()
    }

    /// The strategy version that answers now: the first of active → previous → built-in
    /// that is not quarantined (what `rank` tries first).
    pub fn answering_strategy(&self) -> PluginRef {
        self.strategy_chain()
            .into_iter()
            .find(|link| !link.quarantined)
            .map(|link| link.plugin)
            .unwrap_or_else(|| self.builtin())
    }

    /// The fallback chain `rank` walks, in order: the active version, the previous one,
    /// the built-in strategy, each with whether it is quarantined.
    pub fn strategy_chain(&self) -> Vec<ChainLink> {
        let slot = self.strategy.load();
        let mut chain: Vec<ChainLink> = [
            ("active", slot.active.as_ref()),
            ("previous", slot.previous.as_ref()),
        ]
        .into_iter()
        .filter_map(|(role, installed)| {
            installed.map(|i| ChainLink {
                role,
                plugin: i.plugin.plugin_ref().clone(),
                quarantined: i.quarantined(self.quarantine_after),
            })
        })
        .collect();
        chain.push(ChainLink {
            role: "built-in",
            plugin: self.builtin(),
            quarantined: false,
        });
        chain
    }

    /// The active strategy version, or the fallback when none is installed.
    pub fn active_strategy(&self) -> PluginRef {
        let slot = self.strategy.load();
        slot.active
            .as_ref()
            .unwrap_or(&self.fallback)
            .plugin
            .plugin_ref()
            .clone()
    }

    /// Installs `validator`: it replaces the installed validator of the same name (kept as
    /// its previous version) or runs after the others.
    pub fn install_validator(&self, validator: Arc<dyn Validator>) {
        let _guard = self.lock_writer();
        let name = validator.plugin_ref().name.clone();
        let new = validator.plugin_ref().clone();
        tracing::info!(
            validator = %new.name,
            version = %new.version,
            digest = %new.digest,
            "validator installed"
        );
        let mut slots = self.validators.load_full().as_ref().clone();
        let installed = Installed::new(validator);
        match slots.iter_mut().find(|s| s.name == name) {
            Some(slot) => {
                slot.previous = Some(std::mem::replace(&mut slot.active, installed));
            }
            None => slots.push(ValidatorSlot {
                name,
                active: installed,
                previous: None,
            }),
        }
        self.validators.store(Arc::new(slots));
    }

    /// Swaps the named validator with its previous version. Returns the version now active.
    pub fn rollback_validator(&self, name: &str) -> Result<PluginRef, RegistryError> {
        let _guard = self.lock_writer();
        let mut slots = self.validators.load_full().as_ref().clone();
        let slot = slots
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| RegistryError::UnknownValidator(name.into()))?;
        let previous = slot
            .previous
            .take()
            .ok_or_else(|| RegistryError::NothingToRollBack(format!("validator {name:?}")))?;
        previous.release();
        slot.active.release();
        slot.previous = Some(std::mem::replace(&mut slot.active, previous));
        let now_active = slot.active.plugin.plugin_ref().clone();
        tracing::info!(
            validator = %now_active.name,
            version = %now_active.version,
            digest = %now_active.digest,
            "validator rolled back (both versions released from quarantine)"
        );
        self.validators.store(Arc::new(slots));
        Ok(now_active)
    }

    /// Uninstalls the named validator with its previous version.
    pub fn remove_validator(&self, name: &str) -> Result<(), RegistryError> {
        let _guard = self.lock_writer();
        let mut slots = self.validators.load_full().as_ref().clone();
        let before = slots.len();
        slots.retain(|s| s.name != name);
        if slots.len() == before {
            return Err(RegistryError::UnknownValidator(name.into()));
        }
        self.validators.store(Arc::new(slots));
        Ok(())
    }

    /// Sets the order validators run in; `names` must name each installed one once (an
    /// empty list when none is installed).
    pub fn order_validators(&self, names: &[&str]) -> Result<(), RegistryError> {
        let _guard = self.lock_writer();
        let slots = self.validators.load_full();
        let installed: Vec<String> = slots.iter().map(|s| s.name.clone()).collect();
        let mut ordered = Vec::with_capacity(names.len());
        for name in names {
            match slots.iter().find(|s| s.name == *name) {
                Some(slot) if !ordered.iter().any(|o: &ValidatorSlot| o.name == slot.name) => {
                    ordered.push(slot.clone())
                }
                _ => return Err(RegistryError::BadOrder(installed)),
            }
        }
        if ordered.len() != slots.len() {
            return Err(RegistryError::BadOrder(installed));
        }
        self.validators.store(Arc::new(ordered));
        Ok(())
    }

    /// The installed validators' active versions, in the order they run.
    pub fn validators(&self) -> Vec<PluginRef> {
        self.validators
            .load()
            .iter()
            .map(|s| s.active.plugin.plugin_ref().clone())
            .collect()
    }

    /// Scores `bids` with the first version of the chain active → previous → fallback
    /// that answers without a fault.
    pub fn rank(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome {
        // The snapshot keeps the versions of this call alive whatever swaps happen meanwhile.
        let slot = self.strategy.load_full();
        let mut faults = Vec::new();
        let candidates = [slot.active.as_ref(), slot.previous.as_ref()];
        for installed in candidates.into_iter().flatten() {
            if installed.quarantined(self.quarantine_after) {
                continue;
            }
            let who = installed.plugin.plugin_ref();
            match installed.call(who, self.quarantine_after, |s| s.rank(machine, bids)) {
                Ok(scores) => return answered(scores, installed, faults),
                Err(fault) => faults.push((installed.plugin.plugin_ref().clone(), fault)),
            }
        }
        let fallback = self.fallback.plugin.plugin_ref();
        match self.fallback.call(fallback, 0, |s| s.rank(machine, bids)) {
            Ok(scores) => answered(scores, &self.fallback, faults),
            Err(fault) => {
                faults.push((self.fallback.plugin.plugin_ref().clone(), fault));
                RankOutcome {
                    scores: bids
                        .iter()
                        .map(|b| Score {
                            bid_id: b.id,
                            score: 0.0,
                        })
                        .collect(),
                    answered_by: None,
                    faults,
                }
            }
        }
    }

    /// Runs every validator in order; each sees the bids the earlier ones let through.
    pub fn validate(&self, machine: &MachineContext, bids: &[CandidateBid]) -> ValidationOutcome {
        let slots = self.validators.load_full();
        let mut outcome = ValidationOutcome::default();
        // Copied only once some bid has been rejected.
        let mut remaining: Option<Vec<CandidateBid>> = None;
        for (i, slot) in slots.iter().enumerate() {
            let candidates = remaining.as_deref().unwrap_or(bids);
            if candidates.is_empty() {
                break;
            }
            let rejections = self.validate_with(slot, machine, candidates, &mut outcome);
            if rejections.is_empty() {
                continue;
            }
            // What the next validator sees; the last one's rejections need no copy.
            if i + 1 < slots.len() {
                let rejected: std::collections::HashSet<u64> =
                    rejections.iter().map(|(_, r)| r.bid_id).collect();
                remaining = Some(
                    candidates
                        .iter()
                        .filter(|b| !rejected.contains(&b.id))
                        .cloned()
                        .collect(),
                );
            }
            outcome.rejections.extend(rejections);
        }
        outcome
    }

    fn validate_with(
        &self,
        slot: &ValidatorSlot,
        machine: &MachineContext,
        bids: &[CandidateBid],
        outcome: &mut ValidationOutcome,
    ) -> Vec<(PluginRef, Rejection)> {
        let mut last_fault = None;
        for installed in [Some(&slot.active), slot.previous.as_ref()]
            .into_iter()
            .flatten()
        {
            if installed.quarantined(self.quarantine_after) {
                continue;
            }
            let plugin_ref = installed.plugin.plugin_ref();
            match installed.call(plugin_ref, self.quarantine_after, |v| {
                v.validate(machine, bids)
            }) {
                Ok(rejections) => {
                    outcome.answered_by.push(plugin_ref.clone());
                    return rejections
                        .into_iter()
                        .map(|r| (plugin_ref.clone(), r))
                        .collect();
                }
                Err(fault) => {
                    last_fault = Some(fault.to_string());
                    outcome.faults.push((plugin_ref.clone(), fault));
                }
            }
        }
        // Fail closed: without a working version nothing passes this validator.
        let why = last_fault.unwrap_or_else(|| "it is quarantined after repeated faults".into());
        let active = slot.active.plugin.plugin_ref();
        bids.iter()
            .map(|b| {
                (
                    active.clone(),
                    gigaspot_market::plugin_traits::validator_unavailable(b.id, &slot.name, &why),
                )
            })
            .collect()
    }

    /// Counters of every installed version, the fallback included.
    pub fn stats(&self) -> Vec<VersionStats> {
        let strategy = self.strategy.load();
        let validators = self.validators.load();
        let mut stats = Vec::new();
        let mut push = |role, plugin: &PluginRef, counters: &Arc<Counters>, quarantined, fuel| {
            stats.push(VersionStats {
                plugin: plugin.clone(),
                role,
                calls: counters.calls.load(Ordering::Relaxed),
                faults: counters.counts(),
                quarantined,
                fuel,
                last_fault: counters.latest_fault(),
            })
        };
        let q = self.quarantine_after;
        for (role, installed) in [
            ("strategy", strategy.active.as_ref()),
            ("previous-strategy", strategy.previous.as_ref()),
            ("fallback", Some(&self.fallback)),
        ] {
            if let Some(i) = installed {
                push(
                    role,
                    i.plugin.plugin_ref(),
                    &i.counters,
                    i.quarantined(q),
                    i.plugin.fuel_consumed(),
                );
            }
        }
        for slot in validators.iter() {
            let a = &slot.active;
            push(
                "validator",
                a.plugin.plugin_ref(),
                &a.counters,
                a.quarantined(q),
                a.plugin.fuel_consumed(),
            );
            if let Some(p) = &slot.previous {
                let quarantined = p.quarantined(q);
                push(
                    "previous-validator",
                    p.plugin.plugin_ref(),
                    &p.counters,
                    quarantined,
                    p.plugin.fuel_consumed(),
                );
            }
        }
        stats
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Plugins for PluginRegistry {
    fn validate(&self, machine: &MachineContext, bids: &[CandidateBid]) -> ValidationOutcome {
        PluginRegistry::validate(self, machine, bids)
    }

    fn rank(&self, machine: &MachineContext, bids: &[CandidateBid]) -> RankOutcome {
        PluginRegistry::rank(self, machine, bids)
    }

    fn grouped(&self, calls: &mut dyn FnMut()) {
        crate::in_group(calls)
    }
}

fn answered(
    scores: Vec<Score>,
    by: &Installed<dyn Strategy>,
    faults: Vec<(PluginRef, PluginFault)>,
) -> RankOutcome {
    RankOutcome {
        scores,
        answered_by: Some(by.plugin.plugin_ref().clone()),
        faults,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::PricePerWatt;

    /// A native strategy that scores every bid `score`, or faults when `score` is NaN.
    struct Fixed {
        plugin_ref: PluginRef,
        score: f64,
    }

    fn fixed(name: &str, score: f64) -> Arc<dyn Strategy> {
        Arc::new(Fixed {
            plugin_ref: PluginRef {
                name: name.into(),
                version: "1".into(),
                digest: format!("native:{name}"),
            },
            score,
        })
    }

    impl Strategy for Fixed {
        fn plugin_ref(&self) -> &PluginRef {
            &self.plugin_ref
        }
        fn rank(
            &self,
            _: &MachineContext,
            bids: &[CandidateBid],
        ) -> Result<Vec<Score>, PluginFault> {
            if self.score.is_nan() {
                return Err(PluginFault::Trap("broken".into()));
            }
            Ok(bids
                .iter()
                .map(|b| Score {
                    bid_id: b.id,
                    score: self.score,
                })
                .collect())
        }
    }

    /// A native validator that rejects the bids whose id is in `ids`, or faults.
    struct RejectIds {
        plugin_ref: PluginRef,
        ids: Vec<u64>,
        broken: bool,
    }

    fn reject_ids(name: &str, version: &str, ids: &[u64], broken: bool) -> Arc<dyn Validator> {
        Arc::new(RejectIds {
            plugin_ref: PluginRef {
                name: name.into(),
                version: version.into(),
                digest: format!("native:{name}@{version}"),
            },
            ids: ids.to_vec(),
            broken,
        })
    }

    impl Validator for RejectIds {
        fn plugin_ref(&self) -> &PluginRef {
            &self.plugin_ref
        }
        fn validate(
            &self,
            _: &MachineContext,
            bids: &[CandidateBid],
        ) -> Result<Vec<Rejection>, PluginFault> {
            if self.broken {
                return Err(PluginFault::OutOfFuel { budget: 1 });
            }
            Ok(bids
                .iter()
                .filter(|b| self.ids.contains(&b.id))
                .map(|b| Rejection {
                    bid_id: b.id,
                    code: "no".into(),
                    message: self.plugin_ref.name.clone(),
                })
                .collect())
        }
    }

    fn input() -> (MachineContext, Vec<CandidateBid>) {
        let machine = MachineContext {
            id: 1,
            host_id: 2,
            gpus: vec![],
            energy_price_usd_per_kwh: 0.0,
            clore_usd: 0.05,
            min_bid: 0,
            billing_interval_s: 60,
            reliability: 1.0,
            running: None,
        };
        let bids = (1..=3)
            .map(|id| CandidateBid {
                id,
                owner_id: 9,
                price_per_day: id * 100_000_000,
                oc: vec![],
                total_power_limit_w: 100,
                created_at: 0,
                image: "img".into(),
                env_keys: vec![],
            })
            .collect();
        (machine, bids)
    }

    fn registry(quarantine_after: u32) -> PluginRegistry {
        PluginRegistry::new(Arc::new(PricePerWatt::new()), quarantine_after)
    }

    #[test]
    fn the_fallback_answers_until_a_strategy_is_activated() {
        let (m, b) = input();
        let r = registry(0);
        assert_eq!(r.active_strategy().digest, "native:price-per-watt");
        assert_eq!(
            r.rank(&m, &b).answered_by.unwrap().digest,
            "native:price-per-watt"
        );
        assert_eq!(r.activate_strategy(fixed("a", 1.0)), None);
        assert_eq!(r.rank(&m, &b).scores[0].score, 1.0);
    }

    #[test]
    fn rollback_swaps_active_and_previous() {
        let (m, b) = input();
        let r = registry(0);
        assert_eq!(
            r.rollback_strategy(),
            Err(RegistryError::NothingToRollBack("strategy".into()))
        );
        r.activate_strategy(fixed("a", 1.0));
        assert_eq!(r.activate_strategy(fixed("b", 2.0)).unwrap().name, "a");
        assert_eq!(r.rollback_strategy().unwrap().name, "a");
        assert_eq!(r.rank(&m, &b).scores[0].score, 1.0);
        assert_eq!(r.rollback_strategy().unwrap().name, "b");
        assert_eq!(r.rank(&m, &b).scores[0].score, 2.0);
    }

    #[test]
    fn the_built_in_strategy_is_a_version_like_any_other() {
        let (m, b) = input();
        let r = registry(0);
        // The first activation rolls back to the built-in strategy.
        r.activate_strategy(fixed("a", 1.0));
        assert_eq!(
            r.rollback_strategy().unwrap().digest,
            "native:price-per-watt"
        );
        assert_eq!(
            r.rank(&m, &b).answered_by.unwrap().digest,
            "native:price-per-watt"
        );
        assert_eq!(r.rollback_strategy().unwrap().name, "a");
        // And it can be activated by name, then rolled back from.
        assert_eq!(r.activate_builtin().unwrap().name, "a");
        assert_eq!(r.active_strategy(), r.builtin());
        assert_eq!(r.rollback_strategy().unwrap().name, "a");
        // Validators can be removed and the order then is the empty list.
        r.install_validator(reject_ids("v", "1", &[], false));
        r.remove_validator("v").unwrap();
        assert!(r.validators().is_empty());
        r.order_validators(&[]).unwrap();
    }

    #[test]
    fn a_version_faulting_repeatedly_is_quarantined_until_an_operator_acts() {
        let (m, b) = input();
        let r = registry(2);
        r.activate_strategy(fixed("good", 1.0));
        r.activate_strategy(fixed("bad", f64::NAN));
        assert_eq!(r.rank(&m, &b).faults.len(), 1);
        assert_eq!(r.rank(&m, &b).faults.len(), 1);
        // Quarantined now: answered by the previous version without calling the bad one.
        let outcome = r.rank(&m, &b);
        assert!(outcome.faults.is_empty());
        assert_eq!(outcome.answered_by.unwrap().name, "good");
        // What is said to be running is what answers, with the chain that led there.
        assert_eq!(r.active_strategy().name, "bad");
        assert_eq!(r.answering_strategy().name, "good");
        let chain: Vec<(&str, String, bool)> = r
            .strategy_chain()
            .into_iter()
            .map(|l| (l.role, l.plugin.name, l.quarantined))
            .collect();
        assert_eq!(
            chain,
            [
                ("active", "bad".to_string(), true),
                ("previous", "good".to_string(), false),
                ("built-in", "price-per-watt".to_string(), false)
            ]
        );
        let bad = r
            .stats()
            .into_iter()
            .find(|s| s.role == "strategy")
            .unwrap();
        assert!(bad.quarantined);
        assert_eq!((bad.calls, bad.faults.trap), (2, 2));
        // Rolling back twice releases it and it is tried again.
        r.rollback_strategy().unwrap();
        r.rollback_strategy().unwrap();
        assert_eq!(r.rank(&m, &b).faults.len(), 1);
    }

    #[test]
    fn validators_run_in_order_and_each_sees_what_the_earlier_let_through() {
        let (m, b) = input();
        let r = registry(0);
        r.install_validator(reject_ids("first", "1", &[1], false));
        r.install_validator(reject_ids("second", "1", &[1, 2], false));
        let outcome = r.validate(&m, &b);
        let by: Vec<(String, u64)> = outcome
            .rejections
            .iter()
            .map(|(p, r)| (p.name.clone(), r.bid_id))
            .collect();
        assert_eq!(by, vec![("first".into(), 1), ("second".into(), 2)]);
        r.order_validators(&["second", "first"]).unwrap();
        let outcome = r.validate(&m, &b);
        assert!(outcome.rejections.iter().all(|(p, _)| p.name == "second"));
        assert_eq!(outcome.rejections.len(), 2);
        for bad in [&["second"][..], &["second", "second"], &["second", "nope"]] {
            assert!(matches!(
                r.order_validators(bad),
                Err(RegistryError::BadOrder(_))
            ));
        }
        r.remove_validator("second").unwrap();
        assert_eq!(r.validators().len(), 1);
        assert_eq!(
            r.remove_validator("second"),
            Err(RegistryError::UnknownValidator("second".into()))
        );
    }

    #[test]
    fn a_faulting_validator_uses_its_previous_version_else_holds_every_bid() {
        let (m, b) = input();
        let r = registry(0);
        r.install_validator(reject_ids("policy", "1", &[3], false));
        r.install_validator(reject_ids("policy", "2", &[], true));
        let outcome = r.validate(&m, &b);
        assert_eq!(outcome.faults.len(), 1);
        assert_eq!(outcome.rejections.len(), 1);
        assert_eq!(outcome.rejections[0].0.version, "1");

        let lone = registry(0);
        lone.install_validator(reject_ids("policy", "2", &[], true));
        let outcome = lone.validate(&m, &b);
        assert_eq!(outcome.rejections.len(), 3);
        assert!(
            outcome
                .rejections
                .iter()
                .all(|(_, r)| r.code == VALIDATOR_UNAVAILABLE)
        );
        assert_eq!(lone.stats()[1].faults.out_of_fuel, 1);
        assert_eq!(
            lone.rollback_validator("policy"),
            Err(RegistryError::NothingToRollBack(
                "validator \"policy\"".into()
            ))
        );
    }
}
