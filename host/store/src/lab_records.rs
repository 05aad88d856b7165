//! The strategy lab's records in sled: the clearing prices per GPU model of each interval
//! (written with the tick), the shadow strategy and its per-interval differences.

use gigaspot_market::interval_clock::IntervalClock;
use serde::de::DeserializeOwned;
use sled::{Batch, Db};

use crate::codec::{decode, encode};
use crate::error::StoreResult;
use crate::keys::{self, key};
use crate::records::{IntervalPrices, ModelPrice};

/// Adds the interval's prices to `batch` (nothing when no machine had a winner).
pub(crate) fn write_prices(
    batch: &mut Batch,
    clock: &IntervalClock,
    interval: u64,
    models: &[ModelPrice],
) -> StoreResult<()> {
    if models.is_empty() {
        return Ok(());
    }
    let record = IntervalPrices {
        interval,
        start: clock.start_of(interval),
        models: models.to_vec(),
    };
    batch.insert(key(keys::PRICES, &[interval]), encode(&record)?);
    Ok(())
}

/// The records under `prefix` of the intervals `first..=last`, oldest first.
pub(crate) fn between<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    first: u64,
    last: u64,
) -> StoreResult<Vec<T>> {
    if first > last {
        return Ok(Vec::new());
    }
    db.range(key(prefix, &[first])..=key(prefix, &[last]))
        .map(|item| {
            let (k, v) = item?;
            decode(&k, &v)
        })
        .collect()
}
