//! The storage interface of the market. The sled implementation is the embedded
//! default; a second backend implements the same trait.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::agent_protocol::Unserved;
use gigaspot_market::bid::{Bid, BidChange, BidId, BidTerms};
use gigaspot_market::billing::ServedTime;
use gigaspot_market::clearing::Decision;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::ledger::{AuditReport, Transfer};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;
use gigaspot_market::suspension::BidFailures;
use gigaspot_market::withdrawal::{Settlement as WithdrawalSettlement, Withdrawal, WithdrawalId};

use crate::backup::BackupSummary;
use crate::error::{StoreError, StoreResult};
use crate::records::{
    ActivePlugins, Assignment, Compaction, DecisionSummary, IntervalPrices, IntervalStats,
    MachineSpec, PluginState, PluginVersionRecord, RecordedClearing, ShadowDiff, TickCommit,
    TickSnapshot,
};
use gigaspot_market::plugin_input::{InputRecord, PluginInput};

/// A bid placement's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedBid {
    /// The bid.
    pub bid: Bid,
    /// Whether an earlier request with the same idempotency key created it.
    pub replayed: bool,
}

/// Durable market state. Every method that changes state is atomic and durable when it
/// returns `Ok` (acknowledged writes survive `kill -9`); on `Err` nothing changed.
pub trait Store: Send + Sync + 'static {
    /// Creates an account.
    fn create_account(&self, name: &str, roles: &[Role]) -> StoreResult<Account>;
    /// An account.
    fn account(&self, id: AccountId) -> StoreResult<Option<Account>>;
    /// Stores the sha256 of an API key for `account` (never the key itself).
    fn add_api_key(&self, account: AccountId, key_sha256: [u8; 32]) -> StoreResult<()>;
    /// The account an API key hash belongs to.
    fn account_by_key(&self, key_sha256: &[u8; 32]) -> StoreResult<Option<AccountId>>;
    /// Revokes an API key; `false` when it did not exist.
    fn remove_api_key(&self, key_sha256: &[u8; 32]) -> StoreResult<bool>;
    /// Whether `account` has at least one API key.
    fn has_api_key(&self, account: AccountId) -> StoreResult<bool>;
    /// Stores the sha256 of a machine's agent token; the token acts for that machine only.
    fn set_agent_token(&self, machine: MachineId, token_sha256: [u8; 32]) -> StoreResult<()>;
    /// The machine an agent token hash belongs to.
    fn machine_by_agent_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<MachineId>>;

    /// Registers a machine for a host account.
    fn register_machine(&self, spec: MachineSpec) -> StoreResult<Machine>;
    /// Changes a machine's record with `change`, under the store's writer lock, so that
    /// concurrent changes (the host's settings, the agent's heartbeat, the offline sweep)
    /// never overwrite each other. `change` may refuse with an error (nothing is written);
    /// a record it leaves equal is not written. Returns the record as stored. The host
    /// of a machine cannot change.
    fn modify_machine(
        &self,
        id: MachineId,
        change: &mut dyn FnMut(&mut Machine) -> StoreResult<()>,
    ) -> StoreResult<Machine>;
    /// A machine.
    fn machine(&self, id: MachineId) -> StoreResult<Option<Machine>>;
    /// Every machine, by id.
    fn machines(&self) -> StoreResult<Vec<Machine>>;

    /// Admits and stores a bid. With an idempotency key, a repeat of the same request
    /// returns the bid stored the first time, marked as replayed.
    fn place_bid_keyed(
        &self,
        owner: AccountId,
        terms: &BidTerms,
        now: u64,
        idempotency_key: Option<&str>,
    ) -> StoreResult<PlacedBid>;
    /// [`Store::place_bid_keyed`], for callers that do not need to know about replays.
    fn place_bid(
        &self,
        owner: AccountId,
        terms: &BidTerms,
        now: u64,
        idempotency_key: Option<&str>,
    ) -> StoreResult<Bid> {
        self.place_bid_keyed(owner, terms, now, idempotency_key)
            .map(|p| p.bid)
    }
    /// Changes a bid's price and settings (and image or environment when given) at
    /// `now`, re-running admission (and the funds check at the new price). Cancelled and
    /// expired bids cannot be edited; a suspended one is active again after an edit.
    fn edit_bid(
        &self,
        owner: AccountId,
        id: BidId,
        change: &BidChange,
        now: u64,
    ) -> StoreResult<Bid>;
    /// Cancels a bid at `now`. Cancelled and expired bids cannot be cancelled.
    fn cancel_bid(&self, owner: AccountId, id: BidId, now: u64) -> StoreResult<Bid>;
    /// A bid.
    fn bid(&self, id: BidId) -> StoreResult<Option<Bid>>;
    /// The bids on a machine, by id.
    fn bids_on(&self, machine: MachineId) -> StoreResult<Vec<Bid>>;
    /// An account's bids, by id.
    fn bids_of(&self, owner: AccountId) -> StoreResult<Vec<Bid>>;

    /// Credits `amount` from outside; `reference` makes it idempotent.
    fn deposit(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer>;
    /// Pays `amount` out; `reference` makes it idempotent.
    fn withdraw(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer>;
    /// Requests a withdrawal of `amount` from `account` to `destination` at `now`: the
    /// amount moves at once to the pending-withdrawals account (market rules in
    /// `gigaspot_market::withdrawal`). With an idempotency key, a repeat returns the first
    /// request, marked replayed (the key must not be reused for another amount).
    fn request_withdrawal(
        &self,
        account: AccountId,
        amount: Amount,
        destination: &str,
        idempotency_key: Option<&str>,
        now: u64,
    ) -> StoreResult<(Withdrawal, bool)>;
    /// The operator pays out or rejects a pending withdrawal.
    fn settle_withdrawal(
        &self,
        id: WithdrawalId,
        decision: WithdrawalSettlement,
        now: u64,
    ) -> StoreResult<Withdrawal>;
    /// A withdrawal.
    fn withdrawal(&self, id: WithdrawalId) -> StoreResult<Option<Withdrawal>>;
    /// Withdrawals by id: an account's, or everyone's with `None`.
    fn withdrawals(&self, account: Option<AccountId>) -> StoreResult<Vec<Withdrawal>>;
    /// The account that holds requested, unpaid withdrawals.
    fn pending_withdrawals_account(&self) -> AccountId;
    /// What `account` has committed to its winning bids for intervals not yet settled.
    fn committed(&self, account: AccountId) -> StoreResult<Amount>;
    /// An account's balance.
    fn balance(&self, account: AccountId) -> StoreResult<Amount>;
    /// Every non-zero balance.
    fn balances(&self) -> StoreResult<BTreeMap<AccountId, Amount>>;
    /// Every transfer in booking order.
    fn transfers(&self) -> StoreResult<Vec<Transfer>>;
    /// The transfers that touch `account`, newest first, with their booking sequence
    /// numbers: at most `limit`, all booked before sequence `before` when it is given (the
    /// last page's smallest sequence, to page on).
    fn account_transfers(
        &self,
        account: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Transfer)>>;
    /// The operator's fee account.
    fn fee_account(&self) -> AccountId;

    /// Records that the agent ran `bid` on `machine` with its settings applied during
    /// `interval`.
    fn record_served(&self, machine: MachineId, interval: u64, bid: BidId) -> StoreResult<()>;
    /// Records the agent's report that the bid assigned to `machine` for `interval` is not
    /// served, and why (only a change of bid or reason writes).
    fn record_unserved(
        &self,
        machine: MachineId,
        interval: u64,
        unserved: &Unserved,
    ) -> StoreResult<()>;
    /// The agent's report of why the bid assigned to `machine` for `interval` was not
    /// served, if it made one.
    fn unserved(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Unserved>>;
    /// A bid's current run of intervals unserved by its own fault.
    fn bid_failures(&self, bid: BidId) -> StoreResult<Option<BidFailures>>;
    /// A machine's reliability at `now`: served ÷ assigned intervals over the last
    /// [`gigaspot_market::suspension::RELIABILITY_WINDOW_DAYS`] days, not counting intervals the winner failed by its
    /// own fault; 1.0 with none.
    fn reliability(&self, machine: MachineId, now: u64) -> StoreResult<f64>;
    /// Stores the time served of (machine, interval) for each entry; a value never goes
    /// down (an entry that would lower a stored one is skipped). One atomic write.
    fn record_served_times(&self, entries: &[(MachineId, u64, ServedTime)]) -> StoreResult<()>;
    /// The time served of `machine` in `interval`, as far as recorded.
    fn served_time(&self, machine: MachineId, interval: u64) -> StoreResult<Option<ServedTime>>;
    /// Removes up to `limit` served, served-time and unserved marks of settled intervals
    /// (settlement has read them), keeping the served time of an interval served for less
    /// than its length for the ledger's view; returns how many were removed (0: none left).
    fn prune_served_marks(&self, limit: usize) -> StoreResult<u64>;
    /// The latest assignment of a machine.
    fn assignment(&self, machine: MachineId) -> StoreResult<Option<Assignment>>;
    /// The decision record of a machine for an interval.
    fn decision(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Decision>>;
    /// What the plugins saw when `machine` was cleared for `interval`, as recorded with
    /// its full decision: `None` when nothing was recorded (no plugin was called, the
    /// record is past the retention window or older than the recording).
    fn recorded_input(
        &self,
        machine: MachineId,
        interval: u64,
    ) -> StoreResult<Option<(InputRecord, PluginInput)>>;
    /// Every full decision record of `interval`, in machine order, with what the plugins
    /// saw: what a replay or a backtest reads.
    fn recorded_clearings(&self, interval: u64) -> StoreResult<Vec<RecordedClearing>>;
    /// The oldest and the newest interval with recorded plugin inputs.
    fn recorded_intervals(&self) -> StoreResult<Option<(u64, u64)>>;
    /// The clearing prices per GPU model of the intervals `first..=last` that have any,
    /// oldest first.
    fn market_prices(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalPrices>>;
    /// Records a client's standing order (its spec checked by the market, the owner a
    /// client), active from `now` for its lifetime.
    fn create_order(
        &self,
        owner: AccountId,
        spec: &gigaspot_market::standing_order::OrderSpec,
        now: u64,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder>;
    /// A standing order.
    fn order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
    ) -> StoreResult<Option<gigaspot_market::standing_order::StandingOrder>>;
    /// Every standing order, by id (`owner`: only that account's).
    fn orders(
        &self,
        owner: Option<AccountId>,
    ) -> StoreResult<Vec<gigaspot_market::standing_order::StandingOrder>>;
    /// Reads, changes and writes a standing order under the store's lock or in one
    /// transaction; the change may refuse (nothing is written then).
    fn modify_order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
        change: &mut dyn FnMut(
            &mut gigaspot_market::standing_order::StandingOrder,
        ) -> StoreResult<()>,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder>;
    /// Sets (or, with `None`, removes) the strategy version run in shadow.
    fn set_shadow_strategy(&self, digest: Option<&str>) -> StoreResult<()>;
    /// The strategy version run in shadow, if any.
    fn shadow_strategy(&self) -> StoreResult<Option<String>>;
    /// Records how the shadow's picks differed in one interval (replacing any record of
    /// that interval).
    fn record_shadow_diff(&self, diff: &ShadowDiff) -> StoreResult<()>;
    /// The shadow records of the intervals `first..=last`, oldest first.
    fn shadow_diffs(&self, first: u64, last: u64) -> StoreResult<Vec<ShadowDiff>>;
    /// A machine's full decision records of the newest `limit` cleared intervals, newest
    /// first (those within the retention window).
    fn decisions(&self, machine: MachineId, limit: usize) -> StoreResult<Vec<Decision>>;
    /// A machine's decisions of the newest `limit` cleared intervals, newest first, full
    /// or compacted, as summaries: what history shows.
    fn decision_summaries(
        &self,
        machine: MachineId,
        limit: usize,
    ) -> StoreResult<Vec<DecisionSummary>>;
    /// Replaces the full decision records of intervals before `before` (every machine's)
    /// by their compact form (winner, previous, switch, counts, input digest, plugin
    /// versions), oldest first and at most `limit` of them per call, atomically per call;
    /// never touches ledger entries. Call again until it reports nothing done.
    fn compact_decisions(&self, before: u64, limit: usize) -> StoreResult<Compaction>;
    /// A machine's assignments (winner or idle) for the intervals `first..=last`, oldest
    /// first: what history needs, without the decision records' verdicts.
    fn assignments_between(
        &self,
        machine: MachineId,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Assignment>>;

    /// The recorded statistics of the intervals `first..=last` that have any, oldest
    /// first.
    fn interval_stats(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalStats>>;

    /// Market parameters.
    fn params(&self) -> StoreResult<MarketParams>;
    /// Replaces the market parameters. A new `billing_interval_s` takes effect at the next
    /// boundary (the interval engine opens a new clock epoch there).
    fn set_params(&self, params: &MarketParams) -> StoreResult<()>;
    /// The interval clock in force: which interval a moment belongs to.
    fn interval_clock(&self) -> StoreResult<IntervalClock>;
    /// The GPU clock range table.
    fn gpu_table(&self) -> StoreResult<GpuRangeTable>;
    /// Replaces the GPU clock range table.
    fn set_gpu_table(&self, table: &GpuRangeTable) -> StoreResult<()>;
    /// Stores a plugin version.
    fn put_plugin_version(&self, record: &PluginVersionRecord) -> StoreResult<()>;
    /// Removes a stored plugin version; `false` when there was none.
    fn remove_plugin_version(&self, digest: &str) -> StoreResult<bool>;
    /// Every stored plugin version.
    fn plugin_versions(&self) -> StoreResult<Vec<PluginVersionRecord>>;
    /// Records which stored versions are active.
    fn set_active_plugins(&self, active: &ActivePlugins) -> StoreResult<()>;
    /// Which stored versions were active last.
    fn active_plugins(&self) -> StoreResult<ActivePlugins>;
    /// Records the plugin registry's state (active, previous, quarantined versions).
    fn set_plugin_state(&self, state: &PluginState) -> StoreResult<()>;
    /// The plugin registry's state as last recorded, if ever.
    fn plugin_state(&self) -> StoreResult<Option<PluginState>>;

    /// The last interval cleared, if any.
    fn cleared_through(&self) -> StoreResult<Option<u64>>;

    /// A number that changes whenever the stored market changes (for caches).
    fn generation(&self) -> u64;

    /// Takes or renews, for `holder`, the right to clear intervals for `ttl`: the fencing
    /// epoch while `holder` has it, `None` while another replica does. A tick committed
    /// after this store lost the right is refused ([`crate::StoreError::Fenced`]). A
    /// store only one process uses (sled) always grants it.
    fn clearer_lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        let _ = (holder, ttl);
        Ok(Some(0))
    }

    /// What the interval engine needs, consistently.
    fn tick_snapshot(&self) -> StoreResult<TickSnapshot>;
    /// Writes a tick atomically. A settlement whose transfer ids exist already is skipped
    /// (it was booked before); one whose owner cannot pay is settled without charge.
    fn commit_tick(&self, commit: &TickCommit) -> StoreResult<()>;

    /// Recomputes balances from the transfers and checks the ledger invariants.
    fn audit(&self) -> StoreResult<AuditReport>;

    /// [`Store::place_bid_keyed`] for async callers, who must not block: `spawn` is given
    /// the blocking part to run on a thread that may block (the service passes its
    /// runtime's blocking pool). The write happens even if the future is dropped.
    fn place_bid_async(
        self: Arc<Self>,
        owner: AccountId,
        terms: BidTerms,
        now: u64,
        idempotency_key: Option<String>,
        spawn: Spawner,
    ) -> BidFuture {
        let (answer, answered) = tokio::sync::oneshot::channel();
        spawn(Box::new(move || {
            let placed = self.place_bid_keyed(owner, &terms, now, idempotency_key.as_deref());
            let _ = answer.send(placed);
        }));
        Box::pin(async move { answered.await.unwrap_or(Err(StoreError::Closed)) })
    }

    /// Writes a consistent copy of the whole database to `out`. Stores kept in a
    /// database server refuse: that server's own tools take its backups.
    fn backup(&self, out: &mut dyn std::io::Write) -> StoreResult<BackupSummary> {
        let _ = out;
        Err(StoreError::Invalid {
            field: "backup",
            reason: "this market lives in PostgreSQL: back it up with the database's own \
                     tools (pg_dump, or the managed service's snapshots)"
                .into(),
        })
    }

    /// Records when agents were last heard, unix seconds (the newest of each machine
    /// wins), so that a replica that did not hear an agent itself does not take it for
    /// offline. A store only one process uses keeps nothing: that process heard them all.
    fn record_heard(&self, heard: &[(MachineId, u64)]) -> StoreResult<()> {
        let _ = heard;
        Ok(())
    }

    /// When each machine's agent was last heard through any replica, as recorded by
    /// [`Store::record_heard`].
    fn last_heard(&self) -> StoreResult<BTreeMap<MachineId, u64>> {
        Ok(BTreeMap::new())
    }

    /// Keeps a published market snapshot where every replica can serve it, under the
    /// first timestamp from `at_least` on that no replica used yet (returned), with the
    /// [`SNAPSHOTS_KEPT`] newest. A store only one process uses keeps nothing: that
    /// process serves its own snapshots, and `at_least` is the answer.
    fn publish_snapshot(&self, at_least: u64, body: &[u8]) -> StoreResult<u64> {
        let _ = body;
        Ok(at_least)
    }

    /// A snapshot another replica published ([`Store::publish_snapshot`]), while kept.
    fn published_snapshot(&self, ts: u64) -> StoreResult<Option<Vec<u8>>> {
        let _ = ts;
        Ok(None)
    }

    /// Finishes what is in flight and closes the store; later calls fail with
    /// [`StoreError::Closed`] where the store holds resources of its own.
    fn close(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// Published snapshots a shared database keeps (the newest).
pub const SNAPSHOTS_KEPT: usize = 8;

/// Runs a blocking job on a thread that may block (see [`Store::place_bid_async`]).
pub type Spawner = Box<dyn FnOnce(Box<dyn FnOnce() + Send>) + Send>;

/// The answer of [`Store::place_bid_async`].
pub type BidFuture = Pin<Box<dyn Future<Output = StoreResult<PlacedBid>> + Send>>;
