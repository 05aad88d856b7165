//! Loaded plugin versions: the market's strategy and validator traits implemented by
//! sandboxed WebAssembly components of any supported contract version.

use gigaspot_market::output_check::{check_rejections, check_scores};
use gigaspot_market::{
    CandidateBid, MachineContext, PluginFault, PluginInfo, PluginRef, Rejection, Score, Strategy,
    Validator,
};

use crate::contract::ContractVersion;
use crate::sandbox::{FaultDetail, RankCalls, ValidateCalls};

/// A ranking strategy component, ready to be called from many threads.
pub struct WasmStrategy {
    pub(crate) plugin_ref: PluginRef,
    pub(crate) info: PluginInfo,
    pub(crate) contract: ContractVersion,
    pub(crate) sandbox: Box<dyn RankCalls>,
}

/// A bid validator component, ready to be called from many threads.
pub struct WasmValidator {
    pub(crate) plugin_ref: PluginRef,
    pub(crate) info: PluginInfo,
    pub(crate) contract: ContractVersion,
    pub(crate) sandbox: Box<dyn ValidateCalls>,
}

/// What both kinds of component tell about themselves.
macro_rules! described {
    ($plugin:ty) => {
        impl $plugin {
            /// The plugin's metadata.
            pub fn info(&self) -> &PluginInfo {
                &self.info
            }

            /// The contract version the component implements (and is called through).
            pub fn contract(&self) -> ContractVersion {
                self.contract
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
    };
}

described!(WasmStrategy);
described!(WasmValidator);

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
        let scores = self.sandbox.rank(machine, bids)?;
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
        let rejections = self.sandbox.validate(machine, bids)?;
        check_rejections(bids, &rejections)?;
        Ok(rejections)
    }
}
