//! The plugin contracts the runtime implements, one module of bindings per released
//! version (`wit/since_vX.Y.Z/`), and how a component's version is told.
//!
//! A component is linked against the newest contract first; when its exports do not type
//! check against it, against the next older one, and so on. Each version's module lays the
//! market's types out as that version's records, so an old plugin sees exactly what it
//! was built for.

use std::fmt;

use gigaspot_market::{CandidateBid, MachineContext, Rejection, Score};
use rustc_hash::FxHashMap;
use wasmtime::Store;

use crate::sandbox::{HostState, World};

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;
pub(crate) mod v0_3_0;

/// Distinct strings in order of first use, each referenced by its index.
#[derive(Default)]
pub(crate) struct Strings<'a> {
    /// Filled once there are more than [`Strings::SCANNED`] strings.
    index: FxHashMap<&'a str, u32>,
    pub(crate) order: Vec<&'a str>,
}

impl<'a> Strings<'a> {
    /// Up to this many distinct strings a scan beats hashing (a machine's bids mostly
    /// share a few images and key names).
    const SCANNED: usize = 8;

    pub(crate) fn get(&mut self, text: &'a str) -> u32 {
        let next = self.order.len() as u32;
        if self.order.len() <= Self::SCANNED {
            if let Some(i) = self.order.iter().position(|s| *s == text) {
                return i as u32;
            }
            self.order.push(text);
            if self.order.len() > Self::SCANNED {
                self.index = self.order.iter().zip(0..).map(|(s, i)| (*s, i)).collect();
            }
            return next;
        }
        *self.index.entry(text).or_insert_with(|| {
            self.order.push(text);
            next
        })
    }
}

/// A released version of the plugin contract (`package gigaspot:plugin@X.Y.Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContractVersion {
    /// `gigaspot:plugin@0.1.0`: bids as records with strings and lists.
    V0_1_0,
    /// `gigaspot:plugin@0.2.0`: flat bid records with per-call tables, the machine's
    /// reliability and the running bid's terms.
    V0_2_0,
    /// `gigaspot:plugin@0.3.0`: the bids as one little-endian byte buffer.
    V0_3_0,
}

impl ContractVersion {
    /// The newest version, the one the SDK builds against.
    pub const NEWEST: ContractVersion = ContractVersion::V0_3_0;

    /// Every supported version, newest first (the order they are tried in).
    pub const ALL: [ContractVersion; 3] = [
        ContractVersion::V0_3_0,
        ContractVersion::V0_2_0,
        ContractVersion::V0_1_0,
    ];

    /// The version as written in the WIT package, e.g. `"0.2.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "0.1.0",
            ContractVersion::V0_2_0 => "0.2.0",
            ContractVersion::V0_3_0 => "0.3.0",
        }
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gigaspot:plugin@{}", self.as_str())
    }
}

/// A strategy world of one contract version: ranks the market's candidates.
pub(crate) trait StrategyWorld: World {
    /// Lays the input out for this version and calls the plugin's `rank`.
    fn rank(
        instance: &Self::Instance,
        store: &mut Store<HostState>,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> wasmtime::Result<Vec<Score>>;
}

/// A validator world of one contract version: vetoes the market's candidates.
pub(crate) trait ValidatorWorld: World {
    /// Lays the input out for this version and calls the plugin's `validate`.
    fn validate(
        instance: &Self::Instance,
        store: &mut Store<HostState>,
        machine: &MachineContext,
        bids: &[CandidateBid],
    ) -> wasmtime::Result<Vec<Rejection>>;
}

/// A contract version's bindings from its WIT folder `$path` (`strategy` owns the shared
/// `types` interface, `validator` reuses them), the conversions of the records every
/// version shares (ranges, GPUs, per-GPU settings, scores, rejections, plugin info), and
/// the sandbox worlds of both. The version's module supplies `input`, its own layout of
/// the machine and the bids.
macro_rules! contract_version {
    ($path:literal) => {
        /// Bindings of the `strategy` world; owns the shared `types` interface.
        pub(crate) mod strategy {
            wasmtime::component::bindgen!({
                world: "strategy",
                path: $path,
            });
        }

        /// Bindings of the `validator` world, reusing the strategy world's record types.
        pub(crate) mod validator {
            wasmtime::component::bindgen!({
                world: "validator",
                path: $path,
                with: {
                    "gigaspot:plugin/types": super::strategy::gigaspot::plugin::types,
                },
            });
        }

        use strategy::gigaspot::plugin::types as wit;

        use gigaspot_market as market;
        use wasmtime::Store;

        use crate::contract::{StrategyWorld, ValidatorWorld};
        use crate::sandbox::{HostState, World};

        fn scores(scores: Vec<wit::Score>) -> Vec<market::Score> {
            scores
                .into_iter()
                .map(|s| market::Score {
                    bid_id: s.bid_id,
                    score: s.score,
                })
                .collect()
        }

        fn rejections(rejections: Vec<wit::Rejection>) -> Vec<market::Rejection> {
            rejections
                .into_iter()
                .map(|r| market::Rejection {
                    bid_id: r.bid_id,
                    code: r.code,
                    message: r.message,
                })
                .collect()
        }

        fn info(info: wit::PluginInfo) -> market::PluginInfo {
            market::PluginInfo {
                name: info.name,
                version: info.version,
                description: info.description,
            }
        }

        /// Both worlds export `info` and `configure` with the same signatures.
        macro_rules! world {
            ($pre:ty => $instance:ty) => {
                impl World for $pre {
                    type Instance = $instance;
                    fn instantiate(
                        &self,
                        store: &mut Store<HostState>,
                    ) -> wasmtime::Result<Self::Instance> {
                        <$pre>::instantiate(self, store)
                    }
                    fn configure(
                        instance: &Self::Instance,
                        store: &mut Store<HostState>,
                        config: &str,
                    ) -> wasmtime::Result<Result<(), String>> {
                        instance.call_configure(store, config)
                    }
                    fn info(
                        instance: &Self::Instance,
                        store: &mut Store<HostState>,
                    ) -> wasmtime::Result<market::PluginInfo> {
                        instance.call_info(store).map(info)
                    }
                }
            };
        }

        world!(strategy::StrategyPre<HostState> => strategy::Strategy);
        world!(validator::ValidatorPre<HostState> => validator::Validator);

        impl StrategyWorld for strategy::StrategyPre<HostState> {
            fn rank(
                instance: &strategy::Strategy,
                store: &mut Store<HostState>,
                machine: &market::MachineContext,
                bids: &[market::CandidateBid],
            ) -> wasmtime::Result<Vec<market::Score>> {
                let (machine, bids) = input(machine, bids);
                instance.call_rank(store, &machine, &bids).map(scores)
            }
        }

        impl ValidatorWorld for validator::ValidatorPre<HostState> {
            fn validate(
                instance: &validator::Validator,
                store: &mut Store<HostState>,
                machine: &market::MachineContext,
                bids: &[market::CandidateBid],
            ) -> wasmtime::Result<Vec<market::Rejection>> {
                let (machine, bids) = input(machine, bids);
                instance.call_validate(store, &machine, &bids).map(rejections)
            }
        }
    };
}
pub(crate) use contract_version;

/// The conversions of the machine's GPUs to the `gpu` records of the versions that have
/// them (0.1.0 and 0.2.0; 0.3.0 lays the machine out in a byte buffer).
macro_rules! gpu_records {
    () => {
        fn range_u32(r: market::RangeU32) -> wit::RangeU32 {
            wit::RangeU32 {
                min: r.min,
                max: r.max,
            }
        }

        fn range_s32(r: market::RangeS32) -> wit::RangeS32 {
            wit::RangeS32 {
                min: r.min,
                max: r.max,
            }
        }

        fn gpus(m: &market::MachineContext) -> Vec<wit::Gpu> {
            m.gpus
                .iter()
                .map(|g| wit::Gpu {
                    index: g.index,
                    model: g.model.clone(),
                    power_limit_w: range_u32(g.power_limit_w),
                    core_lock_mhz: g.core_lock_mhz.map(range_u32),
                    mem_lock_mhz: g.mem_lock_mhz.map(range_u32),
                    core_offset_mhz: g.core_offset_mhz.map(range_s32),
                    mem_offset_mhz: g.mem_offset_mhz.map(range_s32),
                })
                .collect()
        }
    };
}
pub(crate) use gpu_records;

/// The conversion of per-GPU settings to the `gpu-oc` record of the versions that have one
/// (0.1.0 and 0.2.0; 0.3.0 lays them out in its byte buffer).
macro_rules! gpu_oc_record {
    () => {
        fn gpu_oc(o: &market::GpuOc) -> wit::GpuOc {
            wit::GpuOc {
                power_limit_w: o.power_limit_w,
                core_lock_mhz: o.core_lock_mhz,
                mem_lock_mhz: o.mem_lock_mhz,
                core_offset_mhz: o.core_offset_mhz,
                mem_offset_mhz: o.mem_offset_mhz,
            }
        }
    };
}
pub(crate) use gpu_oc_record;
