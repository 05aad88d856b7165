//! Published market snapshots in the database, so that a snapshot URL handed out by one
//! replica is served by every replica (with the same bytes).

use super::Sql;
use super::{PgStore, db_int, from_db};
use crate::error::{StoreError, StoreResult};
use crate::store::SNAPSHOTS_KEPT;

impl PgStore {
    /// Stores `body` under the first timestamp from `at_least` no replica used yet, and
    /// drops all but the [`SNAPSHOTS_KEPT`] newest.
    pub(super) fn publish_snapshot(&self, at_least: u64, body: &[u8]) -> StoreResult<u64> {
        let at_least = db_int("ts", at_least).map_err(StoreError::from)?;
        // Not a change of the market: the generation stays.
        self.transaction(false, async |tx| {
            let newest = tx
                .q1("SELECT MAX(ts) FROM snapshots", &[])
                .await?
                .get::<_, Option<i64>>(0);
            let ts = newest.map_or(at_least, |n| at_least.max(n + 1));
            tx.exec(
                "INSERT INTO snapshots (ts, body) VALUES ($1, $2)",
                &[&ts, &body],
            )
            .await?;
            tx.exec(
                "DELETE FROM snapshots WHERE ts < \
                 (SELECT ts FROM snapshots ORDER BY ts DESC OFFSET $1 LIMIT 1)",
                &[&(SNAPSHOTS_KEPT as i64 - 1)],
            )
            .await?;
            Ok(from_db(ts))
        })
    }

    pub(super) fn published_snapshot(&self, ts: u64) -> StoreResult<Option<Vec<u8>>> {
        let ts = db_int("ts", ts).map_err(StoreError::from)?;
        self.read(async |c| {
            Ok(c.qopt("SELECT body FROM snapshots WHERE ts = $1", &[&ts])
                .await?
                .map(|row| row.get::<_, Vec<u8>>(0)))
        })
    }
}
