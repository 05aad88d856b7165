//! [`Store`] on PostgreSQL: each method is one transaction or one statement (see the
//! sibling modules).

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
use gigaspot_market::plugin_input::{InputRecord, PluginInput};
use gigaspot_market::suspension::BidFailures;
use gigaspot_market::withdrawal::{Settlement as WithdrawalSettlement, Withdrawal, WithdrawalId};

use super::PgStore;
use crate::error::StoreResult;
use crate::records::{
    ActivePlugins, Assignment, Compaction, DecisionSummary, IntervalPrices, IntervalStats,
    MachineSpec, PluginState, PluginVersionRecord, RecordedClearing, ShadowDiff, TickCommit,
    TickSnapshot,
};
use crate::store::{PlacedBid, Store};

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
        account: AccountId,
        amount: Amount,
        destination: &str,
        idempotency_key: Option<&str>,
        now: u64,
    ) -> StoreResult<(Withdrawal, bool)> {
        PgStore::request_withdrawal(self, account, amount, destination, idempotency_key, now)
    }

    fn settle_withdrawal(
        &self,
        id: WithdrawalId,
        decision: WithdrawalSettlement,
        now: u64,
    ) -> StoreResult<Withdrawal> {
        PgStore::settle_withdrawal(self, id, decision, now)
    }

    fn withdrawal(&self, id: WithdrawalId) -> StoreResult<Option<Withdrawal>> {
        PgStore::withdrawal(self, id)
    }

    fn withdrawals(&self, account: Option<AccountId>) -> StoreResult<Vec<Withdrawal>> {
        PgStore::withdrawals(self, account)
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

    fn record_served(&self, machine: MachineId, interval: u64, bid: BidId) -> StoreResult<()> {
        PgStore::record_served(self, machine, interval, bid)
    }

    fn record_unserved(
        &self,
        machine: MachineId,
        interval: u64,
        unserved: &Unserved,
    ) -> StoreResult<()> {
        PgStore::record_unserved(self, machine, interval, unserved)
    }

    fn unserved(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Unserved>> {
        PgStore::unserved(self, machine, interval)
    }

    fn bid_failures(&self, bid: BidId) -> StoreResult<Option<BidFailures>> {
        PgStore::bid_failures(self, bid)
    }

    fn reliability(&self, machine: MachineId, now: u64) -> StoreResult<f64> {
        PgStore::reliability(self, machine, now)
    }

    fn record_served_times(&self, entries: &[(MachineId, u64, ServedTime)]) -> StoreResult<()> {
        PgStore::record_served_times(self, entries)
    }

    fn served_time(&self, machine: MachineId, interval: u64) -> StoreResult<Option<ServedTime>> {
        PgStore::served_time(self, machine, interval)
    }

    fn prune_served_marks(&self, limit: usize) -> StoreResult<u64> {
        PgStore::prune_served_marks(self, limit)
    }

    fn assignment(&self, machine: MachineId) -> StoreResult<Option<Assignment>> {
        PgStore::assignment(self, machine)
    }

    fn decision(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Decision>> {
        PgStore::decision(self, machine, interval)
    }

    fn decisions(&self, machine: MachineId, limit: usize) -> StoreResult<Vec<Decision>> {
        PgStore::decisions(self, machine, limit)
    }

    fn decision_summaries(
        &self,
        machine: MachineId,
        limit: usize,
    ) -> StoreResult<Vec<DecisionSummary>> {
        PgStore::decision_summaries(self, machine, limit)
    }

    fn recorded_input(
        &self,
        machine: MachineId,
        interval: u64,
    ) -> StoreResult<Option<(InputRecord, PluginInput)>> {
        PgStore::recorded_input(self, machine, interval)
    }

    fn recorded_clearings(&self, interval: u64) -> StoreResult<Vec<RecordedClearing>> {
        PgStore::recorded_clearings(self, interval)
    }

    fn recorded_intervals(&self) -> StoreResult<Option<(u64, u64)>> {
        PgStore::recorded_intervals(self)
    }

    fn market_prices(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalPrices>> {
        PgStore::market_prices(self, first, last)
    }

    fn create_order(
        &self,
        owner: AccountId,
        spec: &gigaspot_market::standing_order::OrderSpec,
        now: u64,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder> {
        PgStore::create_order(self, owner, spec, now)
    }

    fn order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
    ) -> StoreResult<Option<gigaspot_market::standing_order::StandingOrder>> {
        PgStore::order(self, id)
    }

    fn orders(
        &self,
        owner: Option<AccountId>,
    ) -> StoreResult<Vec<gigaspot_market::standing_order::StandingOrder>> {
        PgStore::orders(self, owner)
    }

    fn modify_order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
        change: &mut dyn FnMut(
            &mut gigaspot_market::standing_order::StandingOrder,
        ) -> StoreResult<()>,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder> {
        PgStore::modify_order(self, id, change)
    }

    fn set_shadow_strategy(&self, digest: Option<&str>) -> StoreResult<()> {
        PgStore::set_shadow_strategy(self, digest)
    }

    fn shadow_strategy(&self) -> StoreResult<Option<String>> {
        PgStore::shadow_strategy(self)
    }

    fn record_shadow_diff(&self, diff: &ShadowDiff) -> StoreResult<()> {
        PgStore::record_shadow_diff(self, diff)
    }

    fn shadow_diffs(&self, first: u64, last: u64) -> StoreResult<Vec<ShadowDiff>> {
        PgStore::shadow_diffs(self, first, last)
    }

    fn compact_decisions(&self, before: u64, limit: usize) -> StoreResult<Compaction> {
        PgStore::compact_decisions(self, before, limit)
    }

    fn assignments_between(
        &self,
        machine: MachineId,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Assignment>> {
        PgStore::assignments_between(self, machine, first, last)
    }

    fn interval_stats(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalStats>> {
        PgStore::interval_stats(self, first, last)
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

    fn place_bid_async(
        self: std::sync::Arc<Self>,
        owner: AccountId,
        terms: BidTerms,
        now: u64,
        idempotency_key: Option<String>,
        spawn: crate::store::Spawner,
    ) -> crate::store::BidFuture {
        PgStore::place_bid_async(self, owner, terms, now, idempotency_key, spawn)
    }

    fn record_heard(&self, heard: &[(MachineId, u64)]) -> StoreResult<()> {
        PgStore::record_heard(self, heard)
    }

    fn last_heard(&self) -> StoreResult<BTreeMap<MachineId, u64>> {
        PgStore::last_heard(self)
    }

    fn publish_snapshot(&self, at_least: u64, body: &[u8]) -> StoreResult<u64> {
        PgStore::publish_snapshot(self, at_least, body)
    }

    fn published_snapshot(&self, ts: u64) -> StoreResult<Option<Vec<u8>>> {
        PgStore::published_snapshot(self, ts)
    }

    fn clearer_lease(&self, holder: &str, ttl: std::time::Duration) -> StoreResult<Option<u64>> {
        PgStore::clearer_lease(self, holder, ttl)
    }

    fn tick_snapshot(&self) -> StoreResult<TickSnapshot> {
        PgStore::tick_snapshot(self)
    }

    fn commit_tick(&self, commit: &TickCommit) -> StoreResult<()> {
        PgStore::commit_tick(self, commit)
    }

    fn audit(&self) -> StoreResult<AuditReport> {
        PgStore::audit(self)
    }
}
