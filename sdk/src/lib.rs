//! Write GigaSPOT ranking strategies and bid validators as WebAssembly components.
//!
//! A plugin is a Rust library crate built for `wasm32-wasip2`. Implement [`Strategy`]
//! (rank a machine's candidate bids, highest score wins) or [`Validator`] (reject bids
//! with a reason) for your type and invoke [`export_strategy!`] or [`export_validator!`]
//! once. The market calls your plugin once per machine per billing interval with the
//! machine's context and the whole list of candidate bids.
//!
//! ```
//! use gigaspot_sdk::{economics, export_strategy, Bid, Machine, PluginInfo, Score, Strategy};
//!
//! /// Ranks by price per watt, but only bids that leave `margin` USD/day over energy.
//! struct MarginPerWatt {
//!     margin_usd: f64,
//! }
//!
//! impl Strategy for MarginPerWatt {
//!     fn info() -> PluginInfo {
//!         PluginInfo {
//!             name: "margin-per-watt".into(),
//!             version: "0.1.0".into(),
//!             description: "Price per watt among bids with a minimum margin".into(),
//!         }
//!     }
//!
//!     fn configure(config: &str) -> Result<Self, String> {
//!         let margin_usd = match config.trim() {
//!             "" => 0.0,
//!             text => text.parse().map_err(|e| format!("margin {text:?}: {e}"))?,
//!         };
//!         Ok(MarginPerWatt { margin_usd })
//!     }
//!
//!     fn rank(&self, machine: &Machine, bids: &[Bid]) -> Vec<Score> {
//!         bids.iter()
//!             .map(|bid| {
//!                 let ok = economics::net_profit_usd_per_day(machine, bid) >= self.margin_usd;
//!                 let score = if ok { economics::price_per_watt(bid) } else { 0.0 };
//!                 Score { bid_id: bid.id, score }
//!             })
//!             .collect()
//!     }
//! }
//!
//! export_strategy!(MarginPerWatt);
//! # fn main() {
//! # use gigaspot_sdk::testing::{bid, machine};
//! # let plugin = MarginPerWatt::configure("1.5").unwrap();
//! # let m = machine(2, 0.10, 0.05);
//! # let scores = plugin.rank(&m, &[bid(1, 100, 300, 2), bid(2, 40, 300, 2)]);
//! # assert!(scores[0].score > 0.0 && scores[1].score == 0.0);
//! # }
//! ```
//!
//! Rules of the sandbox: a plugin gets no files, network, clocks, randomness or
//! environment. Any import of those is refused when the plugin is loaded — this includes
//! `std::collections::HashMap::new()`, whose random seed needs `wasi:random`; use
//! `BTreeMap` or a fixed hasher. Each call has a fuel budget, a deadline and a memory cap;
//! a panic or an exceeded limit fails the call, and the market falls back to another
//! version. Answers must be deterministic: the same configuration and input must give the
//! same output; every call runs in a fresh instance, so nothing kept in memory survives
//! into the next call.
//!
//! The SDK builds components of contract `gigaspot:plugin@0.3.0` ([`CONTRACT_VERSION`]).
//! The machine and its bids arrive as two byte buffers; the SDK decodes the [`Machine`],
//! and [`Bid`] views the bids as typed values without a copy or an allocation per bid,
//! decoding a bid's per-GPU settings only when they are read.

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated lifting code
pub mod __private {
    //! Generated bindings; not part of the public API.

    /// Bindings of the `strategy` world; owns the shared record types.
    pub mod strategy {
        wit_bindgen::generate!({
            world: "strategy",
            path: "wit",
            pub_export_macro: true,
            additional_derives: [PartialEq],
        });
    }

    /// Bindings of the `validator` world, reusing the strategy world's record types.
    pub mod validator {
        wit_bindgen::generate!({
            world: "validator",
            path: "wit",
            pub_export_macro: true,
            with: {
                "gigaspot:plugin/types@0.3.0": crate::__private::strategy::gigaspot::plugin::types,
            },
        });
    }
}

mod book;
pub mod economics;
mod exports;
mod machine;
pub mod testing;

// The author's guide (`sdk/README.md`); its Rust example is compiled as a doc test.
// The guide's test module shows authors how to test; as a doc test it compiles, never runs.
#[doc = include_str!("../README.md")]
#[allow(clippy::test_attr_in_doctest)]
pub mod guide {}

pub use __private::strategy::gigaspot::plugin::types::{PluginInfo, Rejection, Score};
pub use book::{Bid, GpuOc, GpuSettings};
#[doc(hidden)]
pub use book::{bids as __bids, tables as __tables};
#[doc(hidden)]
pub use machine::machine as __machine;
pub use machine::{Gpu, Machine, RangeS32, RangeU32, Running};

/// The plugin contract this SDK builds components for.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// A ranking strategy.
///
/// Export it with [`export_strategy!`]. The market creates instances as it needs them and
/// calls [`Strategy::configure`] once on each before any [`Strategy::rank`].
pub trait Strategy: Sized + 'static {
    /// Name (kebab-case), version and one-line description.
    fn info() -> PluginInfo;

    /// Builds the plugin from the operator's configuration string (may be empty). An
    /// error refuses the configuration; its text is shown to the operator.
    fn configure(config: &str) -> Result<Self, String>;

    /// Scores every bid exactly once. Higher wins; zero or negative means "not acceptable
    /// to this host". NaN, infinite scores, missing, duplicate or unknown bid ids fail the
    /// call.
    fn rank(&self, machine: &Machine, bids: &[Bid<'_>]) -> Vec<Score>;
}

/// A bid validator.
///
/// Export it with [`export_validator!`]. The market calls [`Validator::configure`] once on
/// each instance before any [`Validator::validate`].
pub trait Validator: Sized + 'static {
    /// Name (kebab-case), version and one-line description.
    fn info() -> PluginInfo;

    /// Builds the plugin from the operator's configuration string (may be empty).
    fn configure(config: &str) -> Result<Self, String>;

    /// Returns the bids to reject this interval, each at most once, with a kebab-case
    /// `code` (at most 64 characters) and a message for people (at most 1024 bytes).
    fn validate(&self, machine: &Machine, bids: &[Bid<'_>]) -> Vec<Rejection>;
}
