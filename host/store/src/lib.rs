//! GigaSPOT storage: the [`Store`] trait, its embedded sled implementation
//! ([`SledStore`]) and the [`IntervalEngine`] that settles and clears every interval.
//!
//! Every write is atomic and flushed to disk before it is acknowledged; the ledger is
//! audited at start-up and on demand.

mod backup;
mod books;
mod checks;
mod codec;
mod decision_chunks;
mod engine;
mod error;
mod export;
mod group_commit;
mod intake;
mod keys;
mod lab_records;
mod machine_v5;
mod market_prices;
mod migrate;
mod pg;
mod plugin_inputs;
mod records;
mod retention;
mod sled_store;
mod store;
pub mod testing;

pub use backup::{BackupSummary, restore, verify};
pub use books::Book;
pub use decision_chunks::PER_CHUNK as MACHINES_PER_GROUP;
pub use engine::{DEFAULT_SUSPEND_AFTER, IntervalEngine, running_bid};
pub use error::{StoreError, StoreResult};
pub use export::MarketExport;
pub use intake::IntakeStats;
pub use keys::SCHEMA_VERSION;
pub use pg::PgStore;
pub use pg::schema::SCHEMA_VERSION as PG_SCHEMA_VERSION;
pub use records::{
    ActivePlugins, Assignment, BookBlob, CommitTimings, Compaction, DecisionSummary,
    IntervalPrices, IntervalStats, MachineSpec, ModelPrice, PluginState, PluginVersionRecord,
    RecordedClearing, Settlement, ShadowDiff, TickCommit, TickReport, TickSnapshot, TickTimings,
};
pub use sled_store::{SledStore, open_waiting_for_lock};
pub use store::{BidFuture, PlacedBid, SNAPSHOTS_KEPT, Spawner, Store};
