//! Per-interval records (decisions, assignments) stored in chunks: one sled record per
//! interval and group of up to
//! [`PER_CHUNK`] machines (consecutive in id order), keyed by `(interval, first machine
//! id)`. Each entry keeps its record's own encoding, so a lookup decodes one record, not
//! the whole chunk.
//!
//! Why chunks: applying a batch to sled costs about 5 µs per key on the reference machine
//! whatever the value's size, and a tick of 10,000 machines wrote a decision record, a
//! retention index entry and an assignment per machine (30,000 keys, about 150 ms of the
//! commit). Chunks are ordered by interval, so retention finds the oldest without an
//! index.
//!
//! The chunks of one interval partition its machines in id order. Lookups still scan
//! back through an interval's chunks until they find the machine, so they stay correct
//! for an interval written in more than one pass (a store migrated half compacted).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::{Batch, Db, IVec};

use gigaspot_market::machine::MachineId;

use crate::codec::{decode, encode, read_u64};
use crate::error::StoreResult;
use crate::keys::key;

/// Machines per chunk: 157 chunks of about 55 KB for a tick of 10,000 machines × 50 bids.
/// Also the clearing's plugin instance groups: the machines of one chunk (in id order)
/// share a fresh instance per plugin version, those cleared on the sequential path
/// apart from the others.
pub const PER_CHUNK: usize = 64;

/// One chunk: each machine's record, encoded on its own.
#[derive(Serialize, Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    entries: Vec<(MachineId, &'a [u8])>,
}

/// Adds the chunks of one interval's records (`(machine, encoded record)`, sorted by
/// machine) to `batch` under `prefix`. Returns the bytes written (keys and values).
pub(crate) fn write_encoded(
    batch: &mut Batch,
    prefix: &[u8],
    interval: u64,
    records: &[(MachineId, &[u8])],
) -> StoreResult<u64> {
    let mut bytes = 0;
    for group in records.chunks(PER_CHUNK) {
        let Some((first, _)) = group.first() else {
            continue;
        };
        let k = key(prefix, &[interval, *first]);
        let value = encode(&Chunk {
            entries: group.to_vec(),
        })?;
        bytes += (k.len() + value.len()) as u64;
        batch.insert(k, value);
    }
    Ok(bytes)
}

/// Records from which `write` encodes on every core (a tick's 10,000 decision records
/// take about 30 ms to encode on one).
const PARALLEL_FROM: usize = 1_024;

/// Encodes one interval's records (sorted by machine) and adds their chunks to `batch`.
pub(crate) fn write<T: Serialize + Sync>(
    batch: &mut Batch,
    prefix: &[u8],
    interval: u64,
    records: &[(MachineId, &T)],
) -> StoreResult<u64> {
    let encode_all = |part: &[(MachineId, &T)]| {
        part.iter()
            .map(|(machine, record)| Ok((*machine, encode(*record)?)))
            .collect::<StoreResult<Vec<_>>>()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let encoded = if records.len() < PARALLEL_FROM || threads == 1 {
        encode_all(records)?
    } else {
        let part = records.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = records
                .chunks(part)
                .map(|part| scope.spawn(move || encode_all(part)))
                .collect();
            let mut all = Vec::with_capacity(records.len());
            for worker in workers {
                all.extend(
                    worker
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))?,
                );
            }
            StoreResult::Ok(all)
        })?
    };
    let borrowed: Vec<(MachineId, &[u8])> = encoded
        .iter()
        .map(|(machine, bytes)| (*machine, bytes.as_slice()))
        .collect();
    write_encoded(batch, prefix, interval, &borrowed)
}

/// Adds the chunks of one interval's `(machine, interval, record)`s, in any order, to
/// `batch`; a record of another interval is refused, naming `field`.
pub(crate) fn write_interval<'a, T: Serialize + Sync + 'a>(
    batch: &mut Batch,
    prefix: &[u8],
    field: &'static str,
    interval: u64,
    records: impl Iterator<Item = (MachineId, u64, &'a T)>,
) -> StoreResult<u64> {
    let mut sorted = Vec::new();
    for (machine, of, record) in records {
        if of != interval {
            return Err(crate::error::StoreError::Invalid {
                field,
                reason: format!("every record must be of interval {interval}, not {of}"),
            });
        }
        sorted.push((machine, record));
    }
    sorted.sort_by_key(|(machine, _)| *machine);
    write(batch, prefix, interval, &sorted)
}

/// The interval and first machine of a chunk key under `prefix`.
pub(crate) fn ids(prefix: &[u8], k: &[u8]) -> StoreResult<(u64, u64)> {
    let tail = k.get(prefix.len()..).unwrap_or_default();
    let interval = read_u64(k, tail.get(..8).unwrap_or_default())?;
    let first = read_u64(k, tail.get(8..).unwrap_or_default())?;
    Ok((interval, first))
}

/// Every `(machine, record bytes)` of a chunk's value.
pub(crate) fn entries<'a>(k: &[u8], value: &'a [u8]) -> StoreResult<Vec<(MachineId, &'a [u8])>> {
    Ok(decode_chunk(k, value)?.entries)
}

fn decode_chunk<'a>(k: &[u8], value: &'a [u8]) -> StoreResult<Chunk<'a>> {
    postcard::from_bytes(value).map_err(|e| crate::error::StoreError::Corrupt {
        path: String::from_utf8_lossy(k).into_owned(),
        detail: format!("undecodable decision chunk: {e}"),
    })
}

/// `machine`'s record at `interval`, if one is stored.
pub(crate) fn get<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    machine: MachineId,
    interval: u64,
) -> StoreResult<Option<T>> {
    // The interval's chunks whose first machine is at most `machine`, last first.
    let low = key(prefix, &[interval, 0]);
    let high = key(prefix, &[interval, machine]);
    for item in db.range(low..=high).rev() {
        let (k, v) = item?;
        if let Some(record) = find(&k, &v, machine)? {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Rewrites `machine`'s record at `interval` with `edit`, in place in its chunk; `false`
/// when there is none.
pub(crate) fn edit<T: Serialize + DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    machine: MachineId,
    interval: u64,
    edit: impl FnOnce(&mut T),
) -> StoreResult<bool> {
    let low = key(prefix, &[interval, 0]);
    let high = key(prefix, &[interval, machine]);
    for item in db.range(low..=high).rev() {
        let (k, v) = item?;
        let chunk = decode_chunk(&k, &v)?;
        let Ok(at) = chunk.entries.binary_search_by_key(&machine, |(m, _)| *m) else {
            continue;
        };
        let mut record: T = decode(&k, chunk.entries[at].1)?;
        edit(&mut record);
        let bytes = encode(&record)?;
        let mut entries = chunk.entries.clone();
        entries[at].1 = &bytes;
        db.insert(&k, encode(&Chunk { entries })?)?;
        db.flush()?;
        return Ok(true);
    }
    Ok(false)
}

fn find<T: DeserializeOwned>(k: &[u8], v: &IVec, machine: MachineId) -> StoreResult<Option<T>> {
    let chunk = decode_chunk(k, v)?;
    match chunk.entries.binary_search_by_key(&machine, |(m, _)| *m) {
        Ok(i) => Ok(Some(decode(k, chunk.entries[i].1)?)),
        Err(_) => Ok(None),
    }
}

/// `machine`'s records of the intervals from `first` to `last` that have chunks under
/// `prefix`, oldest first, as `(interval, record)`.
pub(crate) fn between<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    machine: MachineId,
    first: u64,
    last: u64,
) -> StoreResult<Vec<(u64, T)>> {
    walk(db, prefix, machine, (first, last), false, usize::MAX)
}

/// Visits the intervals in `first..=last` that have chunks under `prefix`, oldest or
/// newest first, at most `intervals` of them, collecting `machine`'s records.
fn walk<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    machine: MachineId,
    (mut first, mut last): (u64, u64),
    newest_first: bool,
    intervals: usize,
) -> StoreResult<Vec<(u64, T)>> {
    let mut out = Vec::new();
    let mut visited = 0;
    while first <= last && visited < intervals {
        // The next interval within the bounds that has any chunk.
        let mut range = db.range(key(prefix, &[first, 0])..=key(prefix, &[last, u64::MAX]));
        let item = if newest_first {
            range.next_back()
        } else {
            range.next()
        };
        let Some(item) = item else {
            break;
        };
        let (k, _) = item?;
        let (interval, _) = ids(prefix, &k)?;
        visited += 1;
        if let Some(record) = get(db, prefix, machine, interval)? {
            out.push((interval, record));
        }
        let next = if newest_first {
            interval.checked_sub(1).map(|n| last = n)
        } else {
            interval.checked_add(1).map(|n| first = n)
        };
        if next.is_none() {
            break;
        }
    }
    Ok(out)
}

/// One interval's records, by machine.
pub(crate) type IntervalRecords<T> = (u64, Vec<(MachineId, T)>);

/// Every record of the newest interval that has chunks under `prefix`, with the interval.
pub(crate) fn newest_interval<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
) -> StoreResult<Option<IntervalRecords<T>>> {
    let Some(item) = db.scan_prefix(prefix).next_back() else {
        return Ok(None);
    };
    let (k, _) = item?;
    let (interval, _) = ids(prefix, &k)?;
    Ok(Some((interval, of_interval(db, prefix, interval)?)))
}

/// Every record of `interval` under `prefix`, by machine.
pub(crate) fn of_interval<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    interval: u64,
) -> StoreResult<Vec<(MachineId, T)>> {
    let mut records = Vec::new();
    for item in db.scan_prefix(key(prefix, &[interval])) {
        let (k, v) = item?;
        for (machine, bytes) in entries(&k, &v)? {
            records.push((machine, decode(&k, bytes)?));
        }
    }
    Ok(records)
}

/// `machine`'s records of the newest `intervals` intervals that have chunks under
/// `prefix`, newest first, as `(interval, record)`.
pub(crate) fn newest<T: DeserializeOwned>(
    db: &Db,
    prefix: &[u8],
    machine: MachineId,
    intervals: usize,
) -> StoreResult<Vec<(u64, T)>> {
    walk(db, prefix, machine, (0, u64::MAX), true, intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &[u8] = b"test/";

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    /// Machines 10, 13, 16, …: 150 of them, three chunks an interval.
    fn machines() -> Vec<MachineId> {
        (0..150).map(|i| 10 + 3 * i).collect()
    }

    fn write_interval(db: &Db, interval: u64, machines: &[MachineId]) {
        let records: Vec<(MachineId, String)> = machines
            .iter()
            .map(|m| (*m, format!("{m}@{interval}")))
            .collect();
        let borrowed: Vec<(MachineId, &String)> = records.iter().map(|(m, r)| (*m, r)).collect();
        let mut batch = Batch::default();
        write(&mut batch, PREFIX, interval, &borrowed).unwrap();
        db.apply_batch(batch).unwrap();
    }

    #[test]
    fn every_machine_is_found_in_its_chunk_and_absent_ones_are_not() {
        let (_dir, db) = db();
        let all = machines();
        for interval in 5..9 {
            write_interval(&db, interval, &all);
        }
        assert_eq!(
            db.scan_prefix(PREFIX).count(),
            4 * all.len().div_ceil(PER_CHUNK)
        );
        for interval in 5..9 {
            for m in &all {
                let got: Option<String> = get(&db, PREFIX, *m, interval).unwrap();
                assert_eq!(got, Some(format!("{m}@{interval}")));
                // Between two machines, before the first and after the last: nothing.
                assert_eq!(get::<String>(&db, PREFIX, m + 1, interval).unwrap(), None);
            }
            assert_eq!(get::<String>(&db, PREFIX, 0, interval).unwrap(), None);
            assert_eq!(
                get::<String>(&db, PREFIX, u64::MAX, interval).unwrap(),
                None
            );
        }
        assert_eq!(get::<String>(&db, PREFIX, all[0], 4).unwrap(), None);
        assert_eq!(get::<String>(&db, PREFIX, all[0], 9).unwrap(), None);
    }

    #[test]
    fn newest_walks_back_through_intervals_and_skips_those_without_the_machine() {
        let (_dir, db) = db();
        let all = machines();
        // Interval 12 has only the first half of the machines; 11 is missing entirely.
        for interval in [7, 8, 9, 10, 13, 14] {
            write_interval(&db, interval, &all);
        }
        write_interval(&db, 12, &all[..75]);
        let late = all[140];
        let found: Vec<(u64, String)> = newest(&db, PREFIX, late, 4).unwrap();
        assert_eq!(
            found.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![14, 13, 10],
            "four intervals with chunks visited (14, 13, 12, 10); 12 lacks the machine"
        );
        let early = all[3];
        let found: Vec<(u64, String)> = newest(&db, PREFIX, early, 100).unwrap();
        assert_eq!(
            found.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![14, 13, 12, 10, 9, 8, 7]
        );
        assert_eq!(found[2].1, format!("{early}@12"));
        assert!(newest::<String>(&db, PREFIX, 11, 10).unwrap().is_empty());
        // Oldest first within bounds, skipping 11 (no chunks) and 12 (not this machine).
        let found: Vec<(u64, String)> = between(&db, PREFIX, late, 8, 13).unwrap();
        assert_eq!(
            found.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![8, 9, 10, 13]
        );
        assert!(
            between::<String>(&db, PREFIX, late, 15, u64::MAX)
                .unwrap()
                .is_empty()
        );
        assert!(
            between::<String>(&db, PREFIX, late, 9, 8)
                .unwrap()
                .is_empty()
        );
    }
}
