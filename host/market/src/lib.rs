//! The GigaSPOT market core: domain types and rules as plain Rust, with no I/O.
//!
//! This crate holds what a plugin sees of the market ([`context`]), what it answers
//! ([`verdict`]), the [`Strategy`] and [`Validator`] traits that the clearing calls, the
//! checks every plugin answer must pass ([`output_check`]), the energy arithmetic
//! ([`economics`]) and the native reference strategy ([`PricePerWatt`]) that serves as
//! fallback and benchmark baseline.
//!
//! The market's own rules live beside them: [`money`] in integer base units,
//! [`admission`] of bids, [`clearing`] of a machine for an interval, [`billing`] of served
//! intervals and the double-entry [`ledger`] with its audit. The [`agent_protocol`] is the
//! heartbeat contract that the server and the host agent share.

pub mod account;
pub mod admission;
pub mod agent_protocol;
pub mod background;
pub mod bid;
pub mod billing;
pub mod clearing;
pub mod context;
pub mod counterfactual;
pub mod economics;
pub mod gpu_ranges;
pub mod image_ref;
pub mod interval_clock;
pub mod ledger;
pub mod machine;
pub mod money;
pub mod output_check;
pub mod params;
pub mod plugin_input;
pub mod plugin_traits;
pub mod price_per_watt;
#[cfg(feature = "sample")]
pub mod sample;
pub mod standing_order;
pub mod suspension;
pub mod verdict;
pub mod what_wins;
pub mod withdrawal;

pub use context::{CandidateBid, GpuOc, GpuSlot, MachineContext, RangeS32, RangeU32, RunningBid};
pub use plugin_traits::{Plugins, Strategy, StrategyOnly, Validator};
pub use price_per_watt::PricePerWatt;
pub use verdict::{
    PluginFault, PluginInfo, PluginRef, RankOutcome, Rejection, Score, ValidationOutcome,
};
