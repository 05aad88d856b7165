//! Loaded plugin versions: the market's strategy and validator traits implemented by
//! sandboxed WebAssembly components.

use gigaspot_market::output_check::{check_rejections, check_scores};
use gigaspot_market::{
    CandidateBid, MachineContext, PluginFault, PluginInfo, PluginRef, Rejection, Score, Strategy,
    Validator,
};

use crate::sandbox::{FaultDetail, HostState, Sandbox};
use crate::wit_bindings::{self, strategy, validator};

/// A ranking strategy component, ready to be called from many threads.
pub struct WasmStrategy {
    pub(crate) plugin_ref: PluginRef,
    pub(crate) info: PluginInfo,
    pub(crate) sandbox: Sandbox<strategy::StrategyPre<HostState>>,
}

/// A bid validator component, ready to be called from many threads.
pub struct WasmValidator {
    pub(crate) plugin_ref: PluginRef,
    pub(crate) info: PluginInfo,
    pub(crate) sandbox: Sandbox<validator::ValidatorPre<HostState>>,
}

impl WasmStrategy {
    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The latest fault of a call, with the guest's output and the wasm backtrace.
    pub fn last_fault(&self) -> Option<FaultDetail> {
        self.sandbox.last_fault()
    }

    /// Calls made so far and the fuel they consumed.
    pub fn usage(&self) -> (u64, u64) {
        (self.sandbox.calls(), self.sandbox.fuel_consumed())
    }
}

impl WasmValidator {
    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The latest fault of a call, with the guest's output and the wasm backtrace.
    pub fn last_fault(&self) -> Option<FaultDetail> {
        self.sandbox.last_fault()
    }

    /// Calls made so far and the fuel they consumed.
    pub fn usage(&self) -> (u64, u64) {
        (self.sandbox.calls(), self.sandbox.fuel_consumed())
    }
}

impl Strategy for WasmStrategy {
    fn plugin_ref(&self) -> &PluginRef {
        &self.plugin_ref
    }

    fn fuel_consumed(&self) -> Option<u64> {
        Some(self.sandbox.fuel_consumed())
    }

    fn rank(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Score>, PluginFault> {
        let wit_machine = wit_bindings::machine(machine);
        let wit_bids = wit_bindings::bids(bids);
        let scores = self
            .sandbox
            .call(|instance, store| instance.call_rank(store, &wit_machine, &wit_bids))?;
        let scores = wit_bindings::scores(scores);
        check_scores(bids, &scores)?;
        Ok(scores)
    }
}

impl Validator for WasmValidator {
    fn plugin_ref(&self) -> &PluginRef {
        &self.plugin_ref
    }

    fn fuel_consumed(&self) -> Option<u64> {
        Some(self.sandbox.fuel_consumed())
    }

    fn validate(
        &self,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> Result<Vec<Rejection>, PluginFault> {
        let wit_machine = wit_bindings::machine(machine);
        let wit_bids = wit_bindings::bids(bids);
        let rejections = self
            .sandbox
            .call(|instance, store| instance.call_validate(store, &wit_machine, &wit_bids))?;
        let rejections = wit_bindings::rejections(rejections);
        check_rejections(bids, &rejections)?;
        Ok(rejections)
    }
}
