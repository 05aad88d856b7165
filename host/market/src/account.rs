//! Accounts and their roles.

use serde::{Deserialize, Serialize};

/// An account id.
pub type AccountId = u64;

/// What an account may do on the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Places, edits and cancels bids; pays for served intervals.
    Client,
    /// Registers machines and is paid for them.
    Host,
    /// Runs the market: parameters, plugins, deposits.
    Operator,
}

/// A market participant. Its balance lives in the ledger, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// Roles held; an account may hold several.
    pub roles: Vec<Role>,
}

impl Account {
    /// Whether the account holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
