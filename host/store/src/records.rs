//! Records the store keeps besides the market's own types.

use std::collections::BTreeMap;
use std::sync::Arc;

use gigaspot_market::account::AccountId;
use gigaspot_market::agent_protocol::Unserved;
use gigaspot_market::bid::{Bid, BidId};
use gigaspot_market::billing::ServedTime;
use gigaspot_market::clearing::{Decision, Winner};
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::ledger::Transfer;
use gigaspot_market::machine::{Gpu, Machine, MachineFacts, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;
use gigaspot_market::plugin_input::{InputRecord, PluginInput};
use gigaspot_market::suspension::{BidFailures, Tally};
use serde::{Deserialize, Serialize};

/// What a host supplies to register a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// The owning host.
    pub host: AccountId,
    /// Facts for bidders.
    pub facts: MachineFacts,
    /// GPUs in order.
    pub gpus: Vec<Gpu>,
    /// Electricity price in USD per kWh.
    pub energy_price_usd_per_kwh: f64,
    /// Reserve price per day.
    pub reserve_price: Amount,
    /// Longest rental accepted, seconds.
    pub max_rental_length_s: u64,
    /// The host's background job, checked by the market (`BackgroundRequest::admit`).
    pub background: Option<gigaspot_market::background::BackgroundJob>,
    /// What the background job earns per day.
    pub background_earnings: Amount,
    /// The GPUs' `ceiling_w` are the host's own; otherwise they follow the background job.
    pub explicit_ceilings: bool,
}

/// Which bid holds a machine for an interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The machine.
    pub machine: MachineId,
    /// Its host, paid for served intervals.
    pub host: AccountId,
    /// The interval.
    pub interval: u64,
    /// The winner, `None` when idle.
    pub winner: Option<Winner>,
    /// When the winner started running without interruption, unix seconds.
    pub running_since: Option<u64>,
}

/// A plugin version the operator installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginVersionRecord {
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// `strategy` or `validator`.
    pub kind: String,
    /// The operator's configuration string.
    pub config: String,
    /// When it was installed, unix seconds.
    pub installed_at: u64,
    /// The component bytes.
    pub wasm: Vec<u8>,
}

/// The settlement of one served-or-not interval: its transfers (empty when not served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The machine.
    pub machine: MachineId,
    /// The interval settled.
    pub interval: u64,
    /// The charge and fee, booked together or not at all.
    pub transfers: Vec<Transfer>,
}

/// Everything one tick writes, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct TickCommit {
    /// The interval cleared.
    pub interval: u64,
    /// Earlier intervals settled.
    pub settlements: Vec<Settlement>,
    /// The new assignments, one per machine.
    pub assignments: Vec<Assignment>,
    /// The decision records, one per machine.
    pub decisions: Vec<Decision>,
    /// Active bids found past their lifetime: the store marks each `Expired` (if it is
    /// still active and past its expiry at `now`).
    pub expired: Vec<BidId>,
    /// The tick's time, unix seconds.
    pub now: u64,
    /// A new interval clock when the interval length changed at this boundary.
    pub clock: Option<IntervalClock>,
    /// Bids' failure runs after the settled intervals (`None` removes a run: served), with
    /// the bid version the engine judged: written only while it is still that version.
    pub failures: Vec<(Arc<Bid>, Option<BidFailures>)>,
    /// Bids to suspend, as the engine saw them: the store suspends each only if it is
    /// still that exact version (an edit meanwhile wins).
    pub suspend: Vec<Arc<Bid>>,
    /// Additions to machines' tallies by (machine, day).
    pub tallies: Vec<((MachineId, u64), Tally)>,
    /// What the plugins saw per machine cleared (machines cleared without plugins, being
    /// unavailable, have none): kept with the full decision records for replays.
    pub inputs: Vec<(MachineId, InputRecord)>,
    /// The books that differ from their machine's last one written
    /// ([`TickSnapshot::books`]).
    pub books: Vec<BookBlob>,
    /// The clearing prices of the interval cleared, per GPU model.
    pub prices: Vec<ModelPrice>,
}

/// The clearing prices of one GPU model in one interval: the winners' prices per kW of
/// their total power limit, over the machines with a winner that have GPUs of the model
/// (a machine of several models counts under each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// The GPU model, as NVML names it.
    pub model: String,
    /// The lowest price, CLORE per day per kW.
    pub min: f64,
    /// The median (the mean of the middle two of an even count).
    pub median: f64,
    /// The highest.
    pub max: f64,
    /// Machines with a winner.
    pub machines: u32,
    /// Their GPUs of this model.
    pub gpus: u32,
    /// The winners' total power limits, kW (the volume sold).
    pub kw: f64,
}

/// The clearing prices of one interval, by model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalPrices {
    /// The interval.
    pub interval: u64,
    /// Its start, unix seconds.
    pub start: u64,
    /// Per model, by name.
    pub models: Vec<ModelPrice>,
}

/// How a shadow strategy's picks differed from the live ones in one interval: it ran
/// beside the active strategy on the same recorded inputs under the same limits, and
/// nothing it did reached the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDiff {
    /// The interval.
    pub interval: u64,
    /// The shadow strategy version.
    pub strategy: gigaspot_market::verdict::PluginRef,
    /// Clearings it judged.
    pub machines: u64,
    /// Machines whose winner it would change.
    pub changed: u64,
    /// Machines that switched workloads, live.
    pub switches_live: u64,
    /// Machines that would switch under the shadow.
    pub switches_shadow: u64,
    /// Hosts' payout, live, base units.
    pub gross_live: i128,
    /// Hosts' payout under the shadow, base units.
    pub gross_shadow: i128,
    /// Payout net of energy, live, base units.
    pub net_live: i128,
    /// Payout net of energy under the shadow, base units.
    pub net_shadow: i128,
    /// The shadow's faults.
    pub faults: u64,
    /// How long the shadow took, microseconds.
    pub micros: u64,
    /// The machines whose winner differs (at most 100): machine, live winner, shadow
    /// winner.
    pub winners: Vec<(MachineId, Option<BidId>, Option<BidId>)>,
}

/// A machine's book as the plugins saw it from an interval on
/// ([`gigaspot_market::plugin_input`]), encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookBlob {
    /// The machine.
    pub machine: MachineId,
    /// The book's digest.
    pub digest: [u8; 32],
    /// The book (`PluginInput` without running bid and reliability), postcard.
    pub body: Vec<u8>,
}

/// What market history shows of one interval, kept by the ticks in the commits that clear
/// and settle it: its winners when it is cleared, each host's revenue as it is charged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalStats {
    /// The interval.
    pub interval: u64,
    /// Whether the winners below were recorded: `false` for an interval cleared by a store
    /// from before these records, which only records the revenue of its settlement.
    pub cleared: bool,
    /// Machines with a winner.
    pub running: u64,
    /// Sum of the winners' prices, base units per day.
    pub price_sum: u128,
    /// Sum of the winners' prices per kW of their total power limit (CLORE/day/kW), added
    /// in machine order.
    pub price_per_kw_sum: f64,
    /// What each host was paid for the interval (the charges' payout legs).
    pub revenue_by_host: BTreeMap<AccountId, Amount>,
}

/// A consistent view of what a tick needs.
#[derive(Debug, Clone)]
pub struct TickSnapshot {
    /// Market parameters.
    pub params: MarketParams,
    /// The interval clock in force.
    pub clock: IntervalClock,
    /// Clock ranges.
    pub table: GpuRangeTable,
    /// The operator's fee account.
    pub fee_account: AccountId,
    /// The last interval cleared.
    pub cleared_through: Option<u64>,
    /// Every machine, by id (shared with the store's working set, not copied).
    pub machines: Vec<Arc<Machine>>,
    /// Active bids by machine, by id (each machine's list shared with the store).
    pub bids: BTreeMap<MachineId, crate::Book>,
    /// Every balance.
    pub balances: BTreeMap<AccountId, Amount>,
    /// The latest assignment of each machine.
    pub latest: BTreeMap<MachineId, Assignment>,
    /// Assignments with a winner not yet settled, with the bid the agent reported
    /// serving in that interval, if any.
    pub pending: Vec<(Assignment, Option<BidId>)>,
    /// The time served of the pending assignments, by (machine, interval).
    pub served_time: BTreeMap<(MachineId, u64), ServedTime>,
    /// The agents' reports of assigned bids not served, by (machine, interval), for the
    /// pending assignments.
    pub unserved: BTreeMap<(MachineId, u64), Unserved>,
    /// Bids' current runs of intervals unserved by their own fault.
    pub failures: BTreeMap<BidId, BidFailures>,
    /// Each owner's sum of its active bids' prices per day, in base units (bids past
    /// their lifetime that no tick has marked expired yet included).
    pub active_price_sums: std::collections::HashMap<AccountId, u128>,
    /// Suspended bids by machine (shown in the snapshot, not cleared).
    pub suspended: BTreeMap<MachineId, crate::Book>,
    /// Machines' assigned/served tallies by (machine, day), for their reliability.
    pub tallies: BTreeMap<(MachineId, u64), Tally>,
    /// The digest of each machine's last book written, as far as this store knows (a
    /// machine missing here gets its book written again).
    pub books: std::collections::HashMap<MachineId, [u8; 32]>,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The interval cleared, `None` when it had been cleared already.
    pub interval: Option<u64>,
    /// Earlier intervals settled.
    pub settled: usize,
    /// Of those, the ones charged.
    pub charged: usize,
    /// Total charged.
    pub revenue: Amount,
    /// Machines cleared.
    pub machines: usize,
    /// Machines that switched workloads.
    pub switches: usize,
    /// Machines left idle.
    pub idle: usize,
    /// Where the boundary's time went.
    pub timings: TickTimings,
}

/// The phases of one boundary (`IntervalEngine::tick`), wall-clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickTimings {
    /// Reading the store's working set (`Store::tick_snapshot`).
    pub snapshot: std::time::Duration,
    /// Settling the intervals before (charges) and judging unserved winners.
    pub settle: std::time::Duration,
    /// Clearing every machine: re-checks, funding, validators, strategy, decisions.
    pub clear: std::time::Duration,
    /// Building, applying and flushing the one atomic batch (`Store::commit_tick`).
    pub commit: std::time::Duration,
}

/// The parts of the latest `commit_tick` of a [`crate::SledStore`], wall-clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitTimings {
    /// Building the batch under the writer lock, decision encoding included.
    pub build: std::time::Duration,
    /// Of that, encoding the decision records (postcard).
    pub encode_decisions: std::time::Duration,
    /// Applying the batch to sled and mirroring it in memory.
    pub apply: std::time::Duration,
    /// Waiting for the flush that makes it durable.
    pub flush: std::time::Duration,
}

/// The plugin registry as the operator left it, by version id, resumed exactly at start:
/// the active and previous strategy, each validator's active and previous version in
/// running order, and the quarantined versions with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginState {
    /// The active strategy (`None`: none activated).
    pub strategy: Option<String>,
    /// Its roll-back target.
    pub previous_strategy: Option<String>,
    /// Validators in running order: (active, previous).
    pub validators: Vec<(String, Option<String>)>,
    /// Quarantined versions and why.
    pub quarantined: Vec<(String, String)>,
}

/// The plugin versions the market runs with, by digest, restored at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePlugins {
    /// The active strategy, `None` for the built-in fallback.
    pub strategy: Option<String>,
    /// The installed validators, in running order.
    pub validators: Vec<String>,
}

/// A decision as history, audit and replay see it, whether the full record (every bid's
/// verdict) is still kept or was compacted after the retention window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionSummary {
    /// The machine.
    pub machine: MachineId,
    /// The interval.
    pub interval: u64,
    /// sha256 of the plugins' input (`sha256:<hex>`; empty when no plugin was called).
    pub input_digest: String,
    /// The strategy version that answered (its version id).
    pub strategy: Option<String>,
    /// The validator versions that answered, in order (their version ids).
    pub validators: Vec<String>,
    /// The winner, `None` when the machine idled.
    pub winner: Option<Winner>,
    /// The bid that ran before.
    pub previous: Option<BidId>,
    /// Whether the machine switched workloads.
    pub switched: bool,
    /// Bids with a verdict (every live bid of the machine).
    pub candidates: u32,
    /// Of those, the ones a validator rejected.
    pub rejected: u32,
    /// Plugin faults met.
    pub faults: u32,
    /// Why the machine idled when it did.
    pub idle_reason: Option<String>,
    /// Whether the full record is still kept (`false`: compacted, the verdicts are gone).
    pub full: bool,
}

impl DecisionSummary {
    /// The summary of a full decision record.
    pub fn of(d: &Decision) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        DecisionSummary {
            machine: d.machine,
            interval: d.interval,
            input_digest: d.input_digest.clone(),
            strategy: d.strategy.as_ref().map(|p| p.digest.clone()),
            validators: d.validators.iter().map(|p| p.digest.clone()).collect(),
            winner: d.winner,
            previous: d.previous,
            switched: d.switched,
            candidates: count(d.verdicts.len()),
            rejected: count(
                d.verdicts
                    .iter()
                    .filter(|v| {
                        matches!(
                            v.verdict,
                            gigaspot_market::clearing::Verdict::Rejected { .. }
                        )
                    })
                    .count(),
            ),
            faults: count(d.faults.len()),
            idle_reason: d.idle_reason.clone(),
            full: true,
        }
    }
}

/// What one call of [`crate::Store::compact_decisions`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Full decision records replaced by their compact form.
    pub records: u64,
    /// Bytes (keys and values) of the full records and their index entries.
    pub bytes_before: u64,
    /// Bytes of the compact records written in their place.
    pub bytes_after: u64,
}

/// One clearing as recorded: its full decision and, when plugins were called, what they
/// saw.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedClearing {
    /// The full decision record.
    pub decision: Decision,
    /// The input record and the plugins' input rebuilt from it; `None` when no plugin was
    /// called or the input was not recorded (cleared by a store from before inputs were
    /// kept, or past the retention window).
    pub input: Option<(InputRecord, PluginInput)>,
}
