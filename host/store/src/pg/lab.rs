//! The strategy lab's records on PostgreSQL (`market_prices`, `shadow_diffs`, the shadow
//! strategy in `meta`), as the sled store keeps them (`crate::lab_records`).

use deadpool_postgres::Transaction;
use gigaspot_market::interval_clock::IntervalClock;

use super::{PgResult, PgStore, Sql, config, db_int, decoded, record};
use crate::error::StoreResult;
use crate::records::{IntervalPrices, ModelPrice, ShadowDiff};

/// The `meta` key of the shadow strategy.
const SHADOW_STRATEGY: &str = "shadow_strategy";

/// Writes the interval's prices (nothing when no machine had a winner).
pub(super) async fn write_prices(
    tx: &Transaction<'_>,
    clock: &IntervalClock,
    interval: u64,
    models: &[ModelPrice],
) -> PgResult<()> {
    if models.is_empty() {
        return Ok(());
    }
    let prices = IntervalPrices {
        interval,
        start: clock.start_of(interval),
        models: models.to_vec(),
    };
    tx.exec(
        "INSERT INTO market_prices (interval_no, record) VALUES ($1, $2)",
        &[&db_int("interval", interval)?, &record(&prices)?],
    )
    .await?;
    Ok(())
}

/// The records of `table` of the intervals `first..=last`, oldest first.
async fn between<T: serde::de::DeserializeOwned>(
    c: &impl Sql,
    sql: &str,
    first: u64,
    last: u64,
) -> PgResult<Vec<T>> {
    let clamp = |v: u64| db_int("interval", v.min(i64::MAX as u64));
    c.q(sql, &[&clamp(first)?, &clamp(last)?])
        .await?
        .iter()
        .map(|row| decoded(row, "record", "lab records"))
        .collect()
}

impl PgStore {
    pub(super) fn market_prices(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalPrices>> {
        self.read(async |c| {
            between(
                c,
                "SELECT record FROM market_prices WHERE interval_no BETWEEN $1 AND $2 \
                 ORDER BY interval_no",
                first,
                last,
            )
            .await
        })
    }

    pub(super) fn shadow_diffs(&self, first: u64, last: u64) -> StoreResult<Vec<ShadowDiff>> {
        self.read(async |c| {
            between(
                c,
                "SELECT record FROM shadow_diffs WHERE interval_no BETWEEN $1 AND $2 \
                 ORDER BY interval_no",
                first,
                last,
            )
            .await
        })
    }

    pub(super) fn record_shadow_diff(&self, diff: &ShadowDiff) -> StoreResult<()> {
        self.write(async |tx| {
            tx.exec(
                "INSERT INTO shadow_diffs (interval_no, record) VALUES ($1, $2) \
                 ON CONFLICT (interval_no) DO UPDATE SET record = excluded.record",
                &[&db_int("interval", diff.interval)?, &record(diff)?],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn set_shadow_strategy(&self, digest: Option<&str>) -> StoreResult<()> {
        self.write(async |tx| {
            match digest {
                Some(d) => config::put(tx, SHADOW_STRATEGY, &d.to_owned()).await?,
                None => {
                    tx.exec("DELETE FROM meta WHERE key = $1", &[&SHADOW_STRATEGY])
                        .await?;
                }
            }
            Ok(())
        })
    }

    pub(super) fn shadow_strategy(&self) -> StoreResult<Option<String>> {
        self.read(async |c| config::get(c, SHADOW_STRATEGY).await)
    }
}
