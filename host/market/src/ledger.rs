//! The double-entry ledger: every movement of money is a transfer, balances are the sum
//! of transfers, and the audit checks the invariants.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::account::AccountId;
use crate::bid::BidId;
use crate::machine::MachineId;
use crate::money::Amount;

/// One side of a transfer: an account, or the world outside the market (deposits come
/// from it, withdrawals go to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Party {
    /// Outside the market.
    External,
    /// A market account.
    Account(AccountId),
}

/// Why money moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TransferKind {
    /// Funds credited by the operator.
    Deposit,
    /// Funds paid out of the market.
    Withdrawal,
    /// A served interval: the bid's owner pays the host (net of the fee).
    Charge,
    /// The operator's fee of a served interval, paid by the bid's owner.
    Fee,
    /// A withdrawal request: the amount moves to the pending-withdrawals account.
    WithdrawalRequest,
    /// A rejected withdrawal: the amount returns from the pending-withdrawals account.
    WithdrawalReturn,
}

/// A movement of money. Its id is unique; charge and fee ids derive from (machine,
/// interval), so an interval can never be charged twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transfer {
    /// Unique id.
    pub id: String,
    /// Debited side.
    pub from: Party,
    /// Credited side.
    pub to: Party,
    /// Amount moved; never zero.
    pub amount: Amount,
    /// Why.
    pub kind: TransferKind,
    /// The billing interval, for charges and fees.
    pub interval: Option<u64>,
    /// The bid that paid, for charges and fees.
    pub bid: Option<BidId>,
    /// The machine served, for charges and fees.
    pub machine: Option<MachineId>,
    /// When it was booked, unix seconds.
    pub at: u64,
}

/// The id of the charge for `machine` in `interval`.
pub fn charge_id(machine: MachineId, interval: u64) -> String {
    format!("charge:{machine}:{interval}")
}

/// The id of the operator's fee for `machine` in `interval`.
pub fn fee_id(machine: MachineId, interval: u64) -> String {
    format!("fee:{machine}:{interval}")
}

/// A transfer that cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LedgerError {
    /// The debited account lacks the funds; balances never go negative.
    #[error("account {account} has {balance}, cannot pay {amount}")]
    InsufficientFunds {
        /// The debited account.
        account: AccountId,
        /// Its balance.
        balance: Amount,
        /// The amount asked for.
        amount: Amount,
    },
    /// A balance would exceed the representable maximum.
    #[error("balance overflow on account {0}")]
    Overflow(AccountId),
    /// Zero transfers and transfers from an account to itself are meaningless.
    #[error("transfer {0} moves nothing")]
    Empty(String),
}

/// Applies `transfer` to `balances` (absent accounts hold zero), all or nothing.
pub fn apply(
    balances: &mut BTreeMap<AccountId, Amount>,
    transfer: &Transfer,
) -> Result<(), LedgerError> {
    if transfer.amount == Amount::ZERO || transfer.from == transfer.to {
        return Err(LedgerError::Empty(transfer.id.clone()));
    }
    let debited = match transfer.from {
        Party::Account(account) => {
            let balance = balances.get(&account).copied().unwrap_or_default();
            let left = balance.checked_sub(transfer.amount).map_err(|_| {
                LedgerError::InsufficientFunds {
                    account,
                    balance,
                    amount: transfer.amount,
                }
            })?;
            Some((account, left))
        }
        Party::External => None,
    };
    let credited = match transfer.to {
        Party::Account(account) => {
            let balance = balances.get(&account).copied().unwrap_or_default();
            let more = balance
                .checked_add(transfer.amount)
                .map_err(|_| LedgerError::Overflow(account))?;
            Some((account, more))
        }
        Party::External => None,
    };
    for (account, balance) in debited.into_iter().chain(credited) {
        balances.insert(account, balance);
    }
    Ok(())
}

/// What an audit found when every invariant held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Transfers checked.
    pub transfers: usize,
    /// Sum of all deposits.
    pub deposits: Amount,
    /// Sum of all withdrawals.
    pub withdrawals: Amount,
    /// Sum of all balances (= deposits − withdrawals).
    pub total_balance: Amount,
    /// Served intervals charged.
    pub charged_intervals: usize,
}

/// A broken ledger invariant. Billing must stop until an operator has looked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditError {
    /// Replaying the transfers in order failed (a negative balance or overflow).
    #[error("replaying transfer {id} failed: {error}")]
    Replay {
        /// The transfer.
        id: String,
        /// What failed.
        error: LedgerError,
    },
    /// A stored balance differs from the sum of its transfers.
    #[error("account {account}: stored balance {stored}, transfers sum to {computed}")]
    BalanceMismatch {
        /// The account.
        account: AccountId,
        /// What the store holds.
        stored: Amount,
        /// What the transfers give.
        computed: Amount,
    },
    /// The balances do not add up to deposits minus withdrawals.
    #[error("balances sum to {total}, deposits − withdrawals = {expected}")]
    TotalMismatch {
        /// Sum of balances.
        total: Amount,
        /// Deposits minus withdrawals.
        expected: Amount,
    },
    /// A charge or fee without its interval and machine, or under the wrong id.
    #[error("transfer {0} is a charge or fee whose id does not match its machine and interval")]
    MalformedCharge(String),
    /// An interval was charged more than once.
    #[error("machine {machine} interval {interval} was charged twice")]
    DoubleCharge {
        /// The machine.
        machine: MachineId,
        /// The interval.
        interval: u64,
    },
}

/// Checks every ledger invariant: replaying `transfers` in order never overdraws an
/// account and reproduces `stored` balances exactly; the balances add up to deposits minus
/// withdrawals; each (machine, interval) is charged at most once.
pub fn audit<'a>(
    transfers: impl IntoIterator<Item = &'a Transfer>,
    stored: &BTreeMap<AccountId, Amount>,
) -> Result<AuditReport, AuditError> {
    let mut computed = BTreeMap::new();
    let mut deposits = Amount::ZERO;
    let mut withdrawals = Amount::ZERO;
    let mut charged = BTreeSet::new();
    let mut count = 0;
    let overflow = |id: &str| AuditError::Replay {
        id: id.to_string(),
        error: LedgerError::Overflow(0),
    };
    for t in transfers {
        count += 1;
        apply(&mut computed, t).map_err(|error| AuditError::Replay {
            id: t.id.clone(),
            error,
        })?;
        match t.kind {
            TransferKind::Deposit => {
                deposits = deposits
                    .checked_add(t.amount)
                    .map_err(|_| overflow(&t.id))?
            }
            TransferKind::Withdrawal => {
                withdrawals = withdrawals
                    .checked_add(t.amount)
                    .map_err(|_| overflow(&t.id))?
            }
            // Movements inside the market: they change no total.
            TransferKind::WithdrawalRequest | TransferKind::WithdrawalReturn => {}
            TransferKind::Charge | TransferKind::Fee => {
                let (Some(machine), Some(interval)) = (t.machine, t.interval) else {
                    return Err(AuditError::MalformedCharge(t.id.clone()));
                };
                let expected_id = match t.kind {
                    TransferKind::Charge => charge_id(machine, interval),
                    _ => fee_id(machine, interval),
                };
                if t.id != expected_id {
                    return Err(AuditError::MalformedCharge(t.id.clone()));
                }
                if !charged.insert((t.kind == TransferKind::Charge, machine, interval)) {
                    return Err(AuditError::DoubleCharge { machine, interval });
                }
            }
        }
    }
    let accounts: BTreeSet<AccountId> = computed.keys().chain(stored.keys()).copied().collect();
    for account in accounts {
        let c = computed.get(&account).copied().unwrap_or_default();
        let s = stored.get(&account).copied().unwrap_or_default();
        if c != s {
            return Err(AuditError::BalanceMismatch {
                account,
                stored: s,
                computed: c,
            });
        }
    }
    let total = computed
        .values()
        .try_fold(Amount::ZERO, |sum, b| sum.checked_add(*b))
        .map_err(|_| overflow("total"))?;
    let expected = deposits
        .checked_sub(withdrawals)
        .map_err(|_| AuditError::TotalMismatch {
            total,
            expected: Amount::ZERO,
        })?;
    if total != expected {
        return Err(AuditError::TotalMismatch { total, expected });
    }
    Ok(AuditReport {
        transfers: count,
        deposits,
        withdrawals,
        total_balance: total,
        charged_intervals: charged
            .iter()
            .filter(|(is_charge, _, _)| *is_charge)
            .count(),
    })
}
