//! [`Store`] on PostgreSQL: each method is one transaction or one statement (see the
//! sibling modules). Methods this backend does not offer yet refuse with
//! [`StoreError::Backend`] naming the method, so the service reports them instead of
//! acting on a partial market.

use std::collections::BTreeMap;

use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::agent_protocol::Unserved;
use gigaspot_market::bid::{Bid, BidChange, BidId, BidTerms};
use gigaspot_market::billing::ServedTime;
use gigaspot_market::clearing::Decision;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::ledger::{AuditReport, Transfer, TransferKind};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;
use gigaspot_market::suspension::BidFailures;
use gigaspot_market::withdrawal::{Settlement as WithdrawalSettlement, Withdrawal, WithdrawalId};

use super::PgStore;
use crate::error::{StoreError, StoreResult};
use crate::records::{
    ActivePlugins, Assignment, Compaction, DecisionSummary, IntervalStats, MachineSpec,
    PluginState, PluginVersionRecord, TickCommit, TickSnapshot,
};
use crate::store::{PlacedBid, Store};

/// The refusal of a method this backend does not offer yet.
fn not_yet(method: &str) -> StoreError {
    StoreError::Backend(format!(
        "{method} is not available on the PostgreSQL store yet (use the sled store)"
    ))
}

impl Store for PgStore {
    fn create_account(&self, name: &str, roles: &[Role]) -> StoreResult<Account> {
        PgStore::create_account(self, name, roles)
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        PgStore::account(self, id)
    }

    fn add_api_key(&self, account: AccountId, key_sha256: [u8; 32]) -> StoreResult<()> {
        PgStore::add_api_key(self, account, key_sha256)
    }

    fn account_by_key(&self, key_sha256: &[u8; 32]) -> StoreResult<Option<AccountId>> {
        PgStore::account_by_key(self, key_sha256)
    }

    fn remove_api_key(&self, key_sha256: &[u8; 32]) -> StoreResult<bool> {
        PgStore::remove_api_key(self, key_sha256)
    }

    fn has_api_key(&self, account: AccountId) -> StoreResult<bool> {
        PgStore::has_api_key(self, account)
    }

    fn set_agent_token(&self, machine: MachineId, token_sha256: [u8; 32]) -> StoreResult<()> {
        PgStore::set_agent_token(self, machine, token_sha256)
    }

    fn machine_by_agent_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<MachineId>> {
        PgStore::machine_by_agent_token(self, token_sha256)
    }

    fn register_machine(&self, spec: MachineSpec) -> StoreResult<Machine> {
        PgStore::register_machine(self, spec)
    }

    fn modify_machine(
        &self,
        id: MachineId,
        change: &mut dyn FnMut(&mut Machine) -> StoreResult<()>,
    ) -> StoreResult<Machine> {
        PgStore::modify_machine(self, id, change)
    }

    fn machine(&self, id: MachineId) -> StoreResult<Option<Machine>> {
        PgStore::machine(self, id)
    }

    fn machines(&self) -> StoreResult<Vec<Machine>> {
        PgStore::machines(self)
    }

    fn place_bid_keyed(
        &self,
        owner: AccountId,
        terms: &BidTerms,
        now: u64,
        idempotency_key: Option<&str>,
    ) -> StoreResult<PlacedBid> {
        PgStore::place_bid_keyed(self, owner, terms, now, idempotency_key)
    }

    fn edit_bid(
        &self,
        owner: AccountId,
        id: BidId,
        change: &BidChange,
        now: u64,
    ) -> StoreResult<Bid> {
        PgStore::edit_bid(self, owner, id, change, now)
    }

    fn cancel_bid(&self, owner: AccountId, id: BidId, now: u64) -> StoreResult<Bid> {
        PgStore::cancel_bid(self, owner, id, now)
    }

    fn bid(&self, id: BidId) -> StoreResult<Option<Bid>> {
        PgStore::bid(self, id)
    }

    fn bids_on(&self, machine: MachineId) -> StoreResult<Vec<Bid>> {
        PgStore::bids_on(self, machine)
    }

    fn bids_of(&self, owner: AccountId) -> StoreResult<Vec<Bid>> {
        PgStore::bids_of(self, owner)
    }

    fn deposit(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer> {
        self.move_money(account, amount, reference, now, TransferKind::Deposit)
    }

    fn withdraw(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer> {
        self.move_money(account, amount, reference, now, TransferKind::Withdrawal)
    }

    fn request_withdrawal(
        &self,
        _account: AccountId,
        _amount: Amount,
        _destination: &str,
        _idempotency_key: Option<&str>,
        _now: u64,
    ) -> StoreResult<(Withdrawal, bool)> {
        Err(not_yet("request_withdrawal"))
    }

    fn settle_withdrawal(
        &self,
        _id: WithdrawalId,
        _decision: WithdrawalSettlement,
        _now: u64,
    ) -> StoreResult<Withdrawal> {
        Err(not_yet("settle_withdrawal"))
    }

    fn withdrawal(&self, _id: WithdrawalId) -> StoreResult<Option<Withdrawal>> {
        Err(not_yet("withdrawal"))
    }

    fn withdrawals(&self, _account: Option<AccountId>) -> StoreResult<Vec<Withdrawal>> {
        Err(not_yet("withdrawals"))
    }

    fn pending_withdrawals_account(&self) -> AccountId {
        self.pending_withdrawals
    }

    fn committed(&self, account: AccountId) -> StoreResult<Amount> {
        PgStore::committed(self, account)
    }

    fn balance(&self, account: AccountId) -> StoreResult<Amount> {
        PgStore::balance(self, account)
    }

    fn balances(&self) -> StoreResult<BTreeMap<AccountId, Amount>> {
        PgStore::balances(self)
    }

    fn transfers(&self) -> StoreResult<Vec<Transfer>> {
        PgStore::transfers(self)
    }

    fn account_transfers(
        &self,
        account: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Transfer)>> {
        PgStore::account_transfers(self, account, before, limit)
    }

    fn fee_account(&self) -> AccountId {
        self.fee_account
    }

    fn record_served(&self, _machine: MachineId, _interval: u64, _bid: BidId) -> StoreResult<()> {
        Err(not_yet("record_served"))
    }

    fn record_unserved(
        &self,
        _machine: MachineId,
        _interval: u64,
        _unserved: &Unserved,
    ) -> StoreResult<()> {
        Err(not_yet("record_unserved"))
    }

    fn unserved(&self, _machine: MachineId, _interval: u64) -> StoreResult<Option<Unserved>> {
        Err(not_yet("unserved"))
    }

    fn bid_failures(&self, _bid: BidId) -> StoreResult<Option<BidFailures>> {
        Err(not_yet("bid_failures"))
    }

    fn reliability(&self, _machine: MachineId, _now: u64) -> StoreResult<f64> {
        Err(not_yet("reliability"))
    }

    fn record_served_times(&self, _entries: &[(MachineId, u64, ServedTime)]) -> StoreResult<()> {
        Err(not_yet("record_served_times"))
    }

    fn served_time(&self, _machine: MachineId, _interval: u64) -> StoreResult<Option<ServedTime>> {
        Err(not_yet("served_time"))
    }

    fn prune_served_marks(&self, _limit: usize) -> StoreResult<u64> {
        Err(not_yet("prune_served_marks"))
    }

    fn assignment(&self, _machine: MachineId) -> StoreResult<Option<Assignment>> {
        Err(not_yet("assignment"))
    }

    fn decision(&self, _machine: MachineId, _interval: u64) -> StoreResult<Option<Decision>> {
        Err(not_yet("decision"))
    }

    fn decisions(&self, _machine: MachineId, _limit: usize) -> StoreResult<Vec<Decision>> {
        Err(not_yet("decisions"))
    }

    fn decision_summaries(
        &self,
        _machine: MachineId,
        _limit: usize,
    ) -> StoreResult<Vec<DecisionSummary>> {
        Err(not_yet("decision_summaries"))
    }

    fn compact_decisions(&self, _before: u64, _limit: usize) -> StoreResult<Compaction> {
        Err(not_yet("compact_decisions"))
    }

    fn assignments_between(
        &self,
        _machine: MachineId,
        _first: u64,
        _last: u64,
    ) -> StoreResult<Vec<Assignment>> {
        Err(not_yet("assignments_between"))
    }

    fn interval_stats(&self, _first: u64, _last: u64) -> StoreResult<Vec<IntervalStats>> {
        Err(not_yet("interval_stats"))
    }

    fn params(&self) -> StoreResult<MarketParams> {
        PgStore::params(self)
    }

    fn set_params(&self, params: &MarketParams) -> StoreResult<()> {
        PgStore::set_params(self, params)
    }

    fn interval_clock(&self) -> StoreResult<IntervalClock> {
        PgStore::interval_clock(self)
    }

    fn gpu_table(&self) -> StoreResult<GpuRangeTable> {
        PgStore::gpu_table(self)
    }

    fn set_gpu_table(&self, table: &GpuRangeTable) -> StoreResult<()> {
        PgStore::set_gpu_table(self, table)
    }

    fn put_plugin_version(&self, record: &PluginVersionRecord) -> StoreResult<()> {
        PgStore::put_plugin_version(self, record)
    }

    fn remove_plugin_version(&self, digest: &str) -> StoreResult<bool> {
        PgStore::remove_plugin_version(self, digest)
    }

    fn plugin_versions(&self) -> StoreResult<Vec<PluginVersionRecord>> {
        PgStore::plugin_versions(self)
    }

    fn set_active_plugins(&self, active: &ActivePlugins) -> StoreResult<()> {
        PgStore::set_active_plugins(self, active)
    }

    fn active_plugins(&self) -> StoreResult<ActivePlugins> {
        PgStore::active_plugins(self)
    }

    fn set_plugin_state(&self, state: &PluginState) -> StoreResult<()> {
        PgStore::set_plugin_state(self, state)
    }

    fn plugin_state(&self) -> StoreResult<Option<PluginState>> {
        PgStore::plugin_state(self)
    }

    fn cleared_through(&self) -> StoreResult<Option<u64>> {
        PgStore::cleared_through(self)
    }

    fn generation(&self) -> u64 {
        self.generation_now()
    }

    fn tick_snapshot(&self) -> StoreResult<TickSnapshot> {
        Err(not_yet("tick_snapshot"))
    }

    fn commit_tick(&self, _commit: &TickCommit) -> StoreResult<()> {
        Err(not_yet("commit_tick"))
    }

    fn audit(&self) -> StoreResult<AuditReport> {
        PgStore::audit(self)
    }
}
