//! The clearer's lease: exactly one replica clears each interval.
//!
//! One row holds the holder, a fencing epoch and an expiry on the database's clock. A
//! replica takes the lease when it is free or expired (the epoch goes up) and renews it
//! while it holds it. Every tick commit checks, in its own transaction, that the row
//! still names this replica with the epoch it was given and has not expired: a replica
//! that was paused or cut off past the expiry, and was replaced, can never commit.

use std::time::Duration;

use super::Sql;
use super::u64_col;
use super::{PgResult, PgStore, db_int};
use crate::error::{StoreError, StoreResult};

/// The database's clock in milliseconds (all replicas judge expiry by the same clock).
async fn now_ms(c: &impl Sql) -> PgResult<i64> {
    let row = c
        .q1(
            "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

impl PgStore {
    /// Takes or renews the clearer's lease for `holder` for `ttl`: the fencing epoch
    /// while this replica holds it, `None` while another does.
    pub(super) fn clearer_lease(&self, holder: &str, ttl: Duration) -> StoreResult<Option<u64>> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let held = self.transaction(false, async |tx| {
            let now = now_ms(tx).await?;
            let row = tx
                .qopt(
                    "SELECT holder, epoch, expires_at_ms FROM clearer_lease WHERE one",
                    &[],
                )
                .await?;
            let epoch = match row {
                None => {
                    tx.exec(
                        "INSERT INTO clearer_lease (one, holder, epoch, expires_at_ms) \
                         VALUES (TRUE, $1, 1, $2)",
                        &[&holder, &(now + ttl_ms)],
                    )
                    .await?;
                    1
                }
                Some(row) => {
                    let (current, epoch) = (row.get::<_, String>(0), u64_col(&row, "epoch")?);
                    let expired = row.get::<_, i64>(2) <= now;
                    if current == holder && !expired {
                        epoch
                    } else if expired {
                        epoch + 1
                    } else {
                        return Ok(None);
                    }
                }
            };
            tx.exec(
                "UPDATE clearer_lease SET holder = $1, epoch = $2, expires_at_ms = $3 WHERE one",
                &[&holder, &db_int("epoch", epoch)?, &(now + ttl_ms)],
            )
            .await?;
            Ok(Some(epoch))
        })?;
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) =
            held.map(|epoch| (holder.to_owned(), epoch));
        Ok(held)
    }

    /// Inside a tick's transaction: the lease this store last took must still be its own
    /// (same holder and epoch, not expired). A store that never took one (a single
    /// service on its own database) clears without.
    pub(super) async fn check_lease(&self, tx: &impl Sql) -> PgResult<()> {
        let fence = self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((holder, epoch)) = fence else {
            return Ok(());
        };
        let now = now_ms(tx).await?;
        let row = tx
            .qopt(
                "SELECT holder, epoch, expires_at_ms FROM clearer_lease WHERE one",
                &[],
            )
            .await?;
        let ours = row.is_some_and(|row| {
            row.get::<_, String>(0) == holder
                && u64_col(&row, "epoch").is_ok_and(|e| e == epoch)
                && row.get::<_, i64>(2) > now
        });
        if ours {
            Ok(())
        } else {
            Err(StoreError::Fenced { holder, epoch }.into())
        }
    }
}
