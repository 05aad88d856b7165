//! The plugins' recorded inputs in sled: one `InputRecord` per machine and interval in
//! chunks (`keys::INPUT_CHUNK`, like the decisions), and each machine's book under
//! `(machine, first interval)` (`keys::BOOK`), written only when it changes. The book in
//! force at an interval is the machine's newest one from that interval or before; its
//! digest must equal the record's.

use gigaspot_market::clearing::Decision;
use gigaspot_market::machine::MachineId;
use gigaspot_market::plugin_input::{InputRecord, PluginInput};
use sled::{Batch, Db};

use crate::codec::decode;
use crate::decision_chunks;
use crate::error::{StoreError, StoreResult};
use crate::keys::{self, key};
use crate::records::{BookBlob, RecordedClearing};

/// Adds one interval's input records and changed books to `batch`; returns the bytes.
pub(crate) fn write(
    batch: &mut Batch,
    interval: u64,
    inputs: &[(MachineId, InputRecord)],
    books: &[BookBlob],
) -> StoreResult<u64> {
    let records: Vec<(MachineId, &InputRecord)> = inputs.iter().map(|(m, r)| (*m, r)).collect();
    let mut bytes = decision_chunks::write(batch, keys::INPUT_CHUNK, interval, &records)?;
    for book in books {
        let k = key(keys::BOOK, &[book.machine, interval]);
        let mut value = Vec::with_capacity(32 + book.body.len());
        value.extend_from_slice(&book.digest);
        value.extend_from_slice(&book.body);
        bytes += (k.len() + value.len()) as u64;
        batch.insert(k, value);
    }
    Ok(bytes)
}

/// The book in force for `machine` at `interval`: its digest and the book.
fn book_at(
    db: &Db,
    machine: MachineId,
    interval: u64,
) -> StoreResult<Option<([u8; 32], PluginInput)>> {
    let range = key(keys::BOOK, &[machine, 0])..=key(keys::BOOK, &[machine, interval]);
    let Some(item) = db.range(range).next_back() else {
        return Ok(None);
    };
    let (k, v) = item?;
    let (digest, body) = v.split_at_checked(32).ok_or_else(|| StoreError::Corrupt {
        path: String::from_utf8_lossy(&k).into_owned(),
        detail: "a book shorter than its digest".into(),
    })?;
    let digest: [u8; 32] = digest.try_into().unwrap_or([0; 32]);
    Ok(Some((digest, decode(&k, body)?)))
}

/// The recorded input of `machine` at `interval`: `None` when none was recorded.
pub(crate) fn input(
    db: &Db,
    machine: MachineId,
    interval: u64,
) -> StoreResult<Option<(InputRecord, PluginInput)>> {
    match decision_chunks::get::<InputRecord>(db, keys::INPUT_CHUNK, machine, interval)? {
        Some(record) => with_book(db, machine, interval, record).map(Some),
        None => Ok(None),
    }
}

/// `record`'s input, rebuilt with the book in force at `interval`.
fn with_book(
    db: &Db,
    machine: MachineId,
    interval: u64,
    record: InputRecord,
) -> StoreResult<(InputRecord, PluginInput)> {
    match book_at(db, machine, interval)? {
        Some((digest, book)) if digest == record.book => {
            Ok((record, PluginInput::from_book(book, &record)))
        }
        _ => Err(StoreError::Corrupt {
            path: format!("book/{machine}/{interval}"),
            detail: "the book in force does not match the input record's digest".into(),
        }),
    }
}

/// Every full decision of `interval` with its recorded input, in machine order.
pub(crate) fn clearings(db: &Db, interval: u64) -> StoreResult<Vec<RecordedClearing>> {
    let decisions: Vec<(MachineId, Decision)> =
        decision_chunks::of_interval(db, keys::DECISION_CHUNK, interval)?;
    let mut records: std::collections::HashMap<MachineId, InputRecord> =
        decision_chunks::of_interval(db, keys::INPUT_CHUNK, interval)?
            .into_iter()
            .collect();
    decisions
        .into_iter()
        .map(|(machine, decision)| {
            let input = records
                .remove(&machine)
                .map(|record| with_book(db, machine, interval, record))
                .transpose()?;
            Ok(RecordedClearing { decision, input })
        })
        .collect()
}

/// Adds to `batch` the removal of up to `limit` chunks of input records of intervals
/// before `before` and, when any is removed, of the books no record from `before` on
/// can use (a machine's book superseded by a newer one from `before` or earlier).
/// Returns the bytes removed.
pub(crate) fn prune(db: &Db, batch: &mut Batch, before: u64, limit: usize) -> StoreResult<u64> {
    let mut bytes = 0;
    let range = key(keys::INPUT_CHUNK, &[0, 0])..key(keys::INPUT_CHUNK, &[before, 0]);
    let mut removed = 0;
    // Every record of an interval before `gone` is removed by this batch.
    let mut gone = before;
    for item in db.range(range).take(limit) {
        let (k, v) = item?;
        gone = decision_chunks::ids(keys::INPUT_CHUNK, &k)?.0;
        bytes += (k.len() + v.len()) as u64;
        batch.remove(k);
        removed += 1;
    }
    if removed == 0 {
        return Ok(0);
    }
    if removed < limit {
        gone = before;
    }
    // Books by (machine, first interval): a book is dropped when the next one of the
    // same machine starts at `gone` or earlier (no record left can use it).
    let mut previous: Option<(MachineId, sled::IVec, u64)> = None;
    for item in db.scan_prefix(keys::BOOK) {
        let (k, v) = item?;
        let (machine, since) = decision_chunks::ids(keys::BOOK, &k)?;
        if let Some((m, old, len)) = previous.take()
            && m == machine
            && since <= gone
        {
            bytes += (old.len() as u64) + len;
            batch.remove(old);
        }
        previous = Some((machine, k, v.len() as u64));
    }
    Ok(bytes)
}

/// The oldest and the newest interval with input records.
pub(crate) fn intervals(db: &Db) -> StoreResult<Option<(u64, u64)>> {
    let interval = |item: Option<sled::Result<(sled::IVec, sled::IVec)>>| {
        item.map(|i| -> StoreResult<u64> { Ok(decision_chunks::ids(keys::INPUT_CHUNK, &i?.0)?.0) })
            .transpose()
    };
    let first = interval(db.scan_prefix(keys::INPUT_CHUNK).next())?;
    let last = interval(db.scan_prefix(keys::INPUT_CHUNK).next_back())?;
    Ok(first.zip(last))
}

/// Each machine's newest book digest, read when the store is opened so that its first
/// tick writes only the books that changed.
pub(crate) fn last_books(db: &Db) -> StoreResult<std::collections::HashMap<MachineId, [u8; 32]>> {
    let mut last = std::collections::HashMap::new();
    // Keys sort by (machine, first interval): the last seen of a machine is its newest.
    for item in db.scan_prefix(keys::BOOK) {
        let (k, v) = item?;
        let (machine, _) = decision_chunks::ids(keys::BOOK, &k)?;
        if let Some(digest) = v.get(..32).and_then(|d| <[u8; 32]>::try_from(d).ok()) {
            last.insert(machine, digest);
        }
    }
    Ok(last)
}
