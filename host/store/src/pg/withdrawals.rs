//! Withdrawals on PostgreSQL: a request moves the amount to the pending-withdrawals
//! account in the transaction that records it; the operator pays it out or returns it.

use super::Sql;
use gigaspot_market::account::AccountId;
use gigaspot_market::money::Amount;
use gigaspot_market::withdrawal::{
    self, Settlement as WithdrawalSettlement, Withdrawal, WithdrawalId, WithdrawalState,
};

use super::accounts::account;
use super::accounts::next_id;
use super::money::{balance, book};
use super::u64_col;
use super::{PgResult, PgStore, db_int, decoded, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};

pub(crate) fn state_name(state: &WithdrawalState) -> &'static str {
    match state {
        WithdrawalState::Pending => "pending",
        WithdrawalState::Paid { .. } => "paid",
        WithdrawalState::Rejected { .. } => "rejected",
    }
}

async fn withdrawal(c: &impl Sql, id: WithdrawalId) -> PgResult<Option<Withdrawal>> {
    match c
        .qopt(
            "SELECT record FROM withdrawals WHERE id = $1",
            &[&db_int("withdrawal", id)?],
        )
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "withdrawals")?)),
        None => Ok(None),
    }
}

async fn put(c: &impl Sql, w: &Withdrawal) -> PgResult<()> {
    c.exec(
        "INSERT INTO withdrawals (id, account, state, amount, record) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record",
        &[
            &db_int("withdrawal", w.id)?,
            &db_int("account", w.account)?,
            &state_name(&w.state),
            &db_int("amount", w.amount.0)?,
            &record(w)?,
        ],
    )
    .await?;
    Ok(())
}

/// What `account` owes its winning bids for intervals cleared and not yet settled.
pub(crate) async fn committed(c: &impl Sql, account: AccountId) -> PgResult<Amount> {
    let row = c
        .q1(
            "SELECT COALESCE(SUM(charge), 0)::BIGINT AS owed FROM pending WHERE owner = $1",
            &[&db_int("account", account)?],
        )
        .await?;
    Ok(Amount(u64_col(&row, "owed")?))
}

impl PgStore {
    pub(super) fn request_withdrawal(
        &self,
        id: AccountId,
        amount: Amount,
        destination: &str,
        idempotency_key: Option<&str>,
        now: u64,
    ) -> StoreResult<(Withdrawal, bool)> {
        checks::idempotency_key(idempotency_key)?;
        self.write(async |tx| {
            if let Some(key) = idempotency_key
                && let Some(row) = tx
                    .qopt(
                        "SELECT w.record FROM withdrawal_keys k \
                         JOIN withdrawals w ON w.id = k.withdrawal \
                         WHERE k.account = $1 AND k.key = $2",
                        &[&db_int("account", id)?, &key],
                    )
                    .await?
            {
                let first: Withdrawal = decoded(&row, "record", "withdrawals")?;
                if first.amount != amount || first.destination != destination.trim() {
                    return Err(StoreError::Invalid {
                        field: "Idempotency-Key",
                        reason: "was used for another withdrawal".into(),
                    }
                    .into());
                }
                return Ok((first, true));
            }
            if account(tx, id).await?.is_none() || id == self.pending_withdrawals {
                return Err(StoreError::NotFound {
                    what: "account",
                    id,
                }
                .into());
            }
            let funds = balance(tx, id).await?;
            let owed = committed(tx, id).await?;
            withdrawal::check_request(amount, destination, funds, owed).map_err(|e| {
                StoreError::Invalid {
                    field: e.field,
                    reason: e.reason,
                }
            })?;
            let w = Withdrawal {
                id: next_id(tx).await?,
                account: id,
                amount,
                destination: destination.trim().to_string(),
                state: WithdrawalState::Pending,
                requested_at: now,
                settled_at: None,
            };
            book(tx, &[w.request_transfer(self.pending_withdrawals)]).await?;
            put(tx, &w).await?;
            if let Some(key) = idempotency_key {
                tx.exec(
                    "INSERT INTO withdrawal_keys (account, key, withdrawal) VALUES ($1, $2, $3)",
                    &[&db_int("account", id)?, &key, &db_int("withdrawal", w.id)?],
                )
                .await?;
            }
            Ok((w, false))
        })
    }

    pub(super) fn settle_withdrawal(
        &self,
        id: WithdrawalId,
        decision: WithdrawalSettlement,
        now: u64,
    ) -> StoreResult<Withdrawal> {
        self.write(async |tx| {
            let pending = withdrawal(tx, id).await?.ok_or(StoreError::NotFound {
                what: "withdrawal",
                id,
            })?;
            let (settled, transfer) = pending
                .settle(decision.clone(), self.pending_withdrawals, now)
                .map_err(|e| StoreError::Invalid {
                    field: e.field,
                    reason: e.reason,
                })?;
            book(tx, &[transfer]).await?;
            put(tx, &settled).await?;
            Ok(settled)
        })
    }

    pub(super) fn withdrawal(&self, id: WithdrawalId) -> StoreResult<Option<Withdrawal>> {
        self.read(async |c| withdrawal(c, id).await)
    }

    pub(super) fn withdrawals(&self, account: Option<AccountId>) -> StoreResult<Vec<Withdrawal>> {
        let account = account
            .map(|a| db_int("account", a))
            .transpose()
            .map_err(StoreError::from)?;
        self.read(async |c| {
            c.q(
                "SELECT record FROM withdrawals WHERE $1::BIGINT IS NULL OR account = $1 ORDER BY id",
                &[&account],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "withdrawals"))
            .collect()
        })
    }

    pub(super) fn committed(&self, id: AccountId) -> StoreResult<Amount> {
        self.read(async |c| committed(c, id).await)
    }
}
