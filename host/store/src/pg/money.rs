//! The ledger on PostgreSQL: balances and transfers, booked in one serializable
//! transaction with what caused them.
//!
//! Every booking reads and advances the one `ledger_head` row, so bookings are numbered
//! in the order the database serializes them, and replaying the transfers by number
//! reproduces every balance (which the audit checks). A transfer id is a unique key: a
//! second booking of the same id fails inside the database.

use std::collections::{BTreeMap, BTreeSet};

use super::Sql;
use gigaspot_market::account::AccountId;
use gigaspot_market::ledger::{self, AuditReport, Party, Transfer, TransferKind};
use gigaspot_market::money::Amount;

use super::accounts::account;
use super::u64_col;
use super::{Fail, PgResult, PgStore, db_int, decoded, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};

/// An account's balance.
pub(crate) async fn balance(c: &impl Sql, account: AccountId) -> PgResult<Amount> {
    Ok(c.qopt(
        "SELECT amount FROM balances WHERE account = $1",
        &[&db_int("account", account)?],
    )
    .await?
    .map(|row| u64_col(&row, "amount"))
    .transpose()?
    .map(Amount)
    .unwrap_or_default())
}

/// The transfer booked under `id`, if any.
pub(crate) async fn transfer_by_id(c: &impl Sql, id: &str) -> PgResult<Option<Transfer>> {
    match c
        .qopt("SELECT record FROM transfers WHERE id = $1", &[&id])
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "transfers")?)),
        None => Ok(None),
    }
}

fn account_of(party: Party) -> Option<AccountId> {
    match party {
        Party::Account(a) => Some(a),
        _ => None,
    }
}

/// Books `transfers` as one unit inside `tx`: each is checked against the balances as
/// the earlier ones leave them (no account goes below zero), numbered after the ledger's
/// head, and the balances written. Returns the new head.
pub(crate) async fn book(tx: &impl Sql, transfers: &[Transfer]) -> PgResult<u64> {
    let mut balances = BTreeMap::new();
    for t in transfers {
        for a in [t.from, t.to].into_iter().filter_map(account_of) {
            if let std::collections::btree_map::Entry::Vacant(slot) = balances.entry(a) {
                slot.insert(balance(tx, a).await?);
            }
        }
        ledger::apply(&mut balances, t).map_err(StoreError::from)?;
    }
    let head = tx
        .q1("SELECT last_seq FROM ledger_head WHERE one", &[])
        .await?;
    let mut seq = u64_col(&head, "last_seq")?;
    for t in transfers {
        seq += 1;
        let from = account_of(t.from)
            .map(|a| db_int("account", a))
            .transpose()?;
        let to = account_of(t.to).map(|a| db_int("account", a)).transpose()?;
        tx.exec(
            "INSERT INTO transfers (seq, id, from_account, to_account, amount, record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &db_int("seq", seq)?,
                &t.id,
                &from,
                &to,
                &db_int("amount", t.amount.0)?,
                &record(t)?,
            ],
        )
        .await?;
    }
    for (a, amount) in &balances {
        tx.exec(
            "INSERT INTO balances (account, amount) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET amount = excluded.amount",
            &[&db_int("account", *a)?, &db_int("amount", amount.0)?],
        )
        .await?;
    }
    tx.exec(
        "UPDATE ledger_head SET last_seq = $1 WHERE one",
        &[&db_int("seq", seq)?],
    )
    .await?;
    Ok(seq)
}

impl PgStore {
    /// Books a deposit or withdrawal; a repeated reference returns the first booking.
    pub(super) fn move_money(
        &self,
        id: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
        kind: TransferKind,
    ) -> StoreResult<Transfer> {
        let transfer = checks::money_movement(id, amount, reference, now, kind)?;
        self.write(async |tx| {
            if let Some(existing) = transfer_by_id(tx, &transfer.id).await? {
                return Ok(checks::repeated_movement(existing, &transfer, reference)?);
            }
            if account(tx, id).await?.is_none() {
                return Err(StoreError::NotFound {
                    what: "account",
                    id,
                }
                .into());
            }
            book(tx, std::slice::from_ref(&transfer)).await?;
            Ok(transfer.clone())
        })
    }

    pub(super) fn balance(&self, id: AccountId) -> StoreResult<Amount> {
        self.read(async |c| balance(c, id).await)
    }

    pub(super) fn balances(&self) -> StoreResult<BTreeMap<AccountId, Amount>> {
        self.read(async |c| {
            c.q("SELECT account, amount FROM balances WHERE amount > 0", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "account")?, Amount(u64_col(row, "amount")?))))
                .collect()
        })
    }

    pub(super) fn transfers(&self) -> StoreResult<Vec<Transfer>> {
        self.read(async |c| {
            c.q("SELECT record FROM transfers ORDER BY seq", &[])
                .await?
                .iter()
                .map(|row| decoded(row, "record", "transfers"))
                .collect()
        })
    }

    pub(super) fn account_transfers(
        &self,
        id: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Transfer)>> {
        let before =
            db_int("before", before.unwrap_or(i64::MAX as u64)).map_err(StoreError::from)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async |c| {
            let account = db_int("account", id)?;
            c.q(
                "SELECT seq, record FROM transfers \
                 WHERE (from_account = $1 OR to_account = $1) AND seq < $2 \
                 ORDER BY seq DESC LIMIT $3",
                &[&account, &before, &limit],
            )
            .await?
            .iter()
            .map(|row| Ok((u64_col(row, "seq")?, decoded(row, "record", "transfers")?)))
            .collect()
        })
    }

    /// Replays every transfer and checks the stored balances against them, and the
    /// pending-withdrawals account against the pending requests, in one serializable
    /// transaction (one consistent state).
    pub(super) fn audit(&self) -> StoreResult<AuditReport> {
        let report = self.write(async |tx| {
            let transfers: Vec<Transfer> = tx
                .q("SELECT record FROM transfers ORDER BY seq", &[])
                .await?
                .iter()
                .map(|row| decoded(row, "record", "transfers"))
                .collect::<PgResult<_>>()?;
            let ids: BTreeSet<&str> = transfers.iter().map(|t| t.id.as_str()).collect();
            if ids.len() != transfers.len() {
                return Err(StoreError::Corrupt {
                    path: "transfers".into(),
                    detail: "a transfer id is booked twice".into(),
                }
                .into());
            }
            let stored: BTreeMap<AccountId, Amount> = tx
                .q("SELECT account, amount FROM balances WHERE amount > 0", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "account")?, Amount(u64_col(row, "amount")?))))
                .collect::<PgResult<_>>()?;
            let report = ledger::audit(&transfers, &stored).map_err(|e| Fail::Store(e.into()))?;
            // The pending-withdrawals account holds exactly the pending requests.
            let held = stored
                .get(&self.pending_withdrawals)
                .copied()
                .unwrap_or_default();
            let row = tx
                .q1(
                    "SELECT COALESCE(SUM(amount), 0)::BIGINT AS requested FROM withdrawals \
                     WHERE state = 'pending'",
                    &[],
                )
                .await?;
            let requested = Amount(u64_col(&row, "requested")?);
            if held != requested {
                return Err(StoreError::Corrupt {
                    path: "withdrawals".into(),
                    detail: format!(
                        "the pending-withdrawals account holds {held}, pending requests total {requested}"
                    ),
                }
                .into());
            }
            Ok(report)
        })?;
        Ok(report)
    }
}
