//! Withdrawals: money leaving the market, in two steps the ledger records.
//!
//! A request moves the amount at once from the account to the market's pending-withdrawals
//! account, so it can neither be spent nor withdrawn twice; the operator then pays it out
//! (pending → outside, with an external reference) or rejects it (pending → back to the
//! account). Money committed to the account's winning bids for the interval in progress
//! cannot be withdrawn.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::ledger::{Party, Transfer, TransferKind};
use crate::money::Amount;

/// A withdrawal id.
pub type WithdrawalId = u64;

/// Longest destination (a wallet address or bank reference), in bytes.
pub const MAX_DESTINATION_BYTES: usize = 256;
/// Longest operator reference or rejection reason, in bytes.
pub const MAX_NOTE_BYTES: usize = 256;

/// Where a withdrawal is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WithdrawalState {
    /// Requested; the amount waits in the pending-withdrawals account.
    Pending,
    /// Paid out by the operator, with the external reference (e.g. a transaction id).
    Paid {
        /// The operator's reference of the payment.
        reference: String,
    },
    /// Rejected by the operator; the amount went back to the account.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// A request to take money out of the market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Withdrawal {
    /// Id.
    pub id: WithdrawalId,
    /// The account paid out.
    pub account: AccountId,
    /// Amount.
    pub amount: Amount,
    /// Where to pay it (a wallet address).
    pub destination: String,
    /// State.
    pub state: WithdrawalState,
    /// When it was requested, unix seconds.
    pub requested_at: u64,
    /// When the operator paid or rejected it, unix seconds.
    pub settled_at: Option<u64>,
}

/// A refused withdrawal operation: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalRefusal {
    /// The offending field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn refuse<T>(field: &'static str, reason: String) -> Result<T, WithdrawalRefusal> {
    Err(WithdrawalRefusal { field, reason })
}

/// Checks a request: a positive amount no larger than what the account has beyond the
/// money `committed` to its winning bids this interval, and a destination.
pub fn check_request(
    amount: Amount,
    destination: &str,
    balance: Amount,
    committed: Amount,
) -> Result<(), WithdrawalRefusal> {
    if amount == Amount::ZERO {
        return refuse("amount", "must be more than 0".into());
    }
    let available = balance.checked_sub(committed).unwrap_or(Amount::ZERO);
    if amount > available {
        return refuse(
            "amount",
            format!(
                "{amount} CLORE is more than the {available} CLORE available (balance {balance}, \
                 committed to winning bids this interval {committed})"
            ),
        );
    }
    let destination = destination.trim();
    if destination.is_empty() || destination.len() > MAX_DESTINATION_BYTES {
        return refuse(
            "destination",
            format!("must be 1 to {MAX_DESTINATION_BYTES} bytes"),
        );
    }
    if destination.chars().any(char::is_control) {
        return refuse("destination", "must not contain control characters".into());
    }
    Ok(())
}

/// What the operator decided about a pending withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Settlement {
    /// Paid out, with the payment's external reference.
    Paid {
        /// The external reference.
        reference: String,
    },
    /// Rejected, the amount returns to the account.
    Rejected {
        /// Why.
        reason: String,
    },
}

impl Withdrawal {
    /// The transfer that reserves the amount: account → pending withdrawals.
    pub fn request_transfer(&self, pending_account: AccountId) -> Transfer {
        Transfer {
            id: format!("withdrawal-request:{}", self.id),
            from: Party::Account(self.account),
            to: Party::Account(pending_account),
            amount: self.amount,
            kind: TransferKind::WithdrawalRequest,
            interval: None,
            bid: None,
            machine: None,
            at: self.requested_at,
        }
    }

    /// The operator's decision applied: the settled withdrawal and its transfer (paid:
    /// pending → outside; rejected: pending → the account). Only a pending withdrawal can
    /// be settled; a note must be 1 to [`MAX_NOTE_BYTES`] bytes.
    pub fn settle(
        &self,
        decision: Settlement,
        pending_account: AccountId,
        now: u64,
    ) -> Result<(Withdrawal, Transfer), WithdrawalRefusal> {
        if self.state != WithdrawalState::Pending {
            return refuse(
                "withdrawal",
                format!("withdrawal {} was settled already", self.id),
            );
        }
        let (note_field, note) = match &decision {
            Settlement::Paid { reference } => ("reference", reference),
            Settlement::Rejected { reason } => ("reason", reason),
        };
        if note.trim().is_empty() || note.len() > MAX_NOTE_BYTES {
            return refuse(note_field, format!("must be 1 to {MAX_NOTE_BYTES} bytes"));
        }
        let (id, to, kind, state) = match decision {
            Settlement::Paid { reference } => (
                format!("withdrawal-paid:{}", self.id),
                Party::External,
                TransferKind::Withdrawal,
                WithdrawalState::Paid { reference },
            ),
            Settlement::Rejected { reason } => (
                format!("withdrawal-returned:{}", self.id),
                Party::Account(self.account),
                TransferKind::WithdrawalReturn,
                WithdrawalState::Rejected { reason },
            ),
        };
        let transfer = Transfer {
            id,
            from: Party::Account(pending_account),
            to,
            amount: self.amount,
            kind,
            interval: None,
            bid: None,
            machine: None,
            at: now,
        };
        let settled = Withdrawal {
            state,
            settled_at: Some(now),
            ..self.clone()
        };
        Ok((settled, transfer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply;
    use std::collections::BTreeMap;

    fn request(amount: u64) -> Withdrawal {
        Withdrawal {
            id: 9,
            account: 5,
            amount: Amount(amount),
            destination: "wallet-1".into(),
            state: WithdrawalState::Pending,
            requested_at: 100,
            settled_at: None,
        }
    }

    #[test]
    fn a_request_cannot_take_committed_money() {
        let ok = check_request(Amount(70), "wallet", Amount(100), Amount(30));
        assert!(ok.is_ok());
        let err = check_request(Amount(71), "wallet", Amount(100), Amount(30)).unwrap_err();
        assert_eq!(err.field, "amount");
        assert_eq!(
            check_request(Amount(0), "w", Amount(100), Amount(0))
                .unwrap_err()
                .field,
            "amount"
        );
        assert_eq!(
            check_request(Amount(1), " ", Amount(100), Amount(0))
                .unwrap_err()
                .field,
            "destination"
        );
    }

    #[test]
    fn paid_and_rejected_move_the_money_once() {
        let pending = 2;
        let w = request(40);
        let mut balances = BTreeMap::from([(5, Amount(100))]);
        apply(&mut balances, &w.request_transfer(pending)).unwrap();
        assert_eq!(balances[&5], Amount(60));
        assert_eq!(balances[&pending], Amount(40));
        let (paid, t) = w
            .settle(
                Settlement::Paid {
                    reference: "tx-1".into(),
                },
                pending,
                200,
            )
            .unwrap();
        apply(&mut balances, &t).unwrap();
        assert_eq!(balances[&pending], Amount(0));
        assert_eq!(t.to, Party::External);
        assert!(
            paid.settle(
                Settlement::Rejected {
                    reason: "late".into()
                },
                pending,
                300
            )
            .is_err(),
            "settled once only"
        );
        let (rejected, t) = request(40)
            .settle(
                Settlement::Rejected {
                    reason: "bad address".into(),
                },
                pending,
                200,
            )
            .unwrap();
        assert_eq!(t.to, Party::Account(5));
        assert!(matches!(rejected.state, WithdrawalState::Rejected { .. }));
    }
}
