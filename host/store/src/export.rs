//! A whole market as plain records, to move it from one store to another
//! (`gigaspot migrate --from-sled DIR --to postgres://…`).

use std::collections::BTreeMap;

use gigaspot_market::account::{Account, AccountId};
use gigaspot_market::bid::{Bid, BidId};
use gigaspot_market::machine::MachineId;
use gigaspot_market::withdrawal::{Withdrawal, WithdrawalId};

use crate::records::{
    ActivePlugins, IntervalStats, PluginState, PluginVersionRecord, TickSnapshot,
};

/// Everything a market is made of besides its decision history: who may act, what is
/// offered and bid, the ledger, withdrawals, plugins, parameters and the intervals not yet
/// settled (with what agents reported of them).
pub struct MarketExport {
    /// Every account, by id.
    pub accounts: Vec<Account>,
    /// API key hashes and their accounts.
    pub api_keys: Vec<([u8; 32], AccountId)>,
    /// Agent token hashes and their machines.
    pub agent_tokens: Vec<([u8; 32], MachineId)>,
    /// Every bid, whatever its state, by id.
    pub bids: Vec<Bid>,
    /// Bids' idempotency keys: (owner, key, bid).
    pub bid_keys: Vec<(AccountId, String, BidId)>,
    /// Every withdrawal, by id.
    pub withdrawals: Vec<Withdrawal>,
    /// Withdrawals' idempotency keys: (account, key, withdrawal).
    pub withdrawal_keys: Vec<(AccountId, String, WithdrawalId)>,
    /// Every transfer in booking order.
    pub transfers: Vec<gigaspot_market::ledger::Transfer>,
    /// Stored plugin versions.
    pub plugin_versions: Vec<PluginVersionRecord>,
    /// The versions last activated.
    pub active_plugins: ActivePlugins,
    /// The plugin registry's state, if recorded.
    pub plugin_state: Option<PluginState>,
    /// History's per-interval statistics.
    pub interval_stats: Vec<IntervalStats>,
    /// The highest id handed out (accounts, machines, bids, withdrawals share one series).
    pub last_id: u64,
    /// The account holding requested withdrawals.
    pub pending_withdrawals: AccountId,
    /// What the interval engine reads: parameters, clock, clock ranges, machines, balances,
    /// latest and pending assignments with their served marks, failure runs, tallies.
    pub market: TickSnapshot,
}

impl MarketExport {
    /// Transfers' total per account as stored, for a check after a copy.
    pub fn balances(&self) -> &BTreeMap<AccountId, gigaspot_market::money::Amount> {
        &self.market.balances
    }
}
