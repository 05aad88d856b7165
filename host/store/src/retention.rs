//! Decision retention: full decision records (every bid's verdict) are kept for the
//! operator's window; older ones are compacted to what history, audit and replay need —
//! winner, previous bid, switch, counts, the input digest and the plugin versions that
//! answered. Ledger entries are never touched.
//!
//! A compact record is keyed like the full one, `(machine, interval)`; its plugin versions
//! are positions in a per-interval table (`DECISION_VERSIONS`), since every machine of an
//! interval is usually answered by the same versions. The full records are found oldest
//! first through an `(interval, machine)` index written with each record.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use gigaspot_market::bid::BidId;
use gigaspot_market::clearing::{Decision, Winner};
use gigaspot_market::machine::MachineId;
use serde::{Deserialize, Serialize};
use sled::{Batch, Db};

use crate::codec::{decode, encode, read_u64};
use crate::error::StoreResult;
use crate::keys::{self, key};
use crate::records::{Compaction, DecisionSummary};

/// A decision record after the retention window (machine and interval are in its key).
#[derive(Debug, Serialize, Deserialize)]
struct CompactDecision {
    /// The raw sha256 of the plugins' input; `None` when no plugin was called.
    input_digest: Option<[u8; 32]>,
    /// Position of the strategy version in the interval's table.
    strategy: Option<u32>,
    /// Positions of the validator versions in the interval's table.
    validators: Vec<u32>,
    winner: Option<Winner>,
    previous: Option<BidId>,
    switched: bool,
    candidates: u32,
    rejected: u32,
    faults: u32,
    idle_reason: Option<String>,
}

/// The index entry of a full decision record.
pub(crate) fn index_key(machine: MachineId, interval: u64) -> Vec<u8> {
    key(keys::DECISION_BY_INTERVAL, &[interval, machine])
}

/// Builds the index of a store written before it existed, in one atomic batch (re-run
/// from scratch if interrupted: the marker goes in last).
pub(crate) fn build_index(db: &Db) -> StoreResult<()> {
    if db.contains_key(keys::DECISION_INDEX_BUILT)? {
        return Ok(());
    }
    let mut batch = Batch::default();
    for item in db.scan_prefix(keys::DECISION) {
        let (k, _) = item?;
        let ids = &k[keys::DECISION.len()..];
        let machine = read_u64(&k, &ids[..8.min(ids.len())])?;
        let interval = read_u64(&k, ids.get(8..).unwrap_or_default())?;
        batch.insert(index_key(machine, interval), &[]);
    }
    batch.insert(keys::DECISION_INDEX_BUILT, &[]);
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// The batch compacting up to `limit` of the oldest full records of intervals before
/// `before`, and what it does.
pub(crate) fn compact(db: &Db, before: u64, limit: usize) -> StoreResult<(Batch, Compaction)> {
    let mut batch = Batch::default();
    let mut report = Compaction::default();
    let mut tables: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let end = key(keys::DECISION_BY_INTERVAL, &[before]);
    for item in db
        .range(keys::DECISION_BY_INTERVAL.to_vec()..end)
        .take(limit)
    {
        let (index, _) = item?;
        let ids = &index[keys::DECISION_BY_INTERVAL.len()..];
        let interval = read_u64(&index, &ids[..8.min(ids.len())])?;
        let machine = read_u64(&index, ids.get(8..).unwrap_or_default())?;
        batch.remove(index.clone());
        report.bytes_before += index.len() as u64;
        let full_key = key(keys::DECISION, &[machine, interval]);
        let Some(full) = db.get(&full_key)? else {
            continue;
        };
        let decision: Decision = decode(&full_key, &full)?;
        let table = match tables.entry(interval) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(version_table(db, interval)?),
        };
        let compact = compact_one(&DecisionSummary::of(&decision), table);
        let compact_key = key(keys::DECISION_COMPACT, &[machine, interval]);
        let value = encode(&compact)?;
        report.records += 1;
        report.bytes_before += (full_key.len() + full.len()) as u64;
        report.bytes_after += (compact_key.len() + value.len()) as u64;
        batch.remove(full_key);
        batch.insert(compact_key, value);
    }
    for (interval, table) in tables {
        let k = key(keys::DECISION_VERSIONS, &[interval]);
        let value = encode(&table)?;
        report.bytes_after += (k.len() + value.len()) as u64;
        batch.insert(k, value);
    }
    Ok((batch, report))
}

/// The plugin versions named by an interval's compact records (empty before the first).
fn version_table(db: &Db, interval: u64) -> StoreResult<Vec<String>> {
    let k = key(keys::DECISION_VERSIONS, &[interval]);
    match db.get(&k)? {
        Some(v) => decode(&k, &v),
        None => Ok(Vec::new()),
    }
}

/// The position of `version` in `table`, appended if new.
fn position(table: &mut Vec<String>, version: &str) -> u32 {
    let at = table.iter().position(|v| v == version).unwrap_or_else(|| {
        table.push(version.to_owned());
        table.len() - 1
    });
    u32::try_from(at).unwrap_or(u32::MAX)
}

fn compact_one(s: &DecisionSummary, table: &mut Vec<String>) -> CompactDecision {
    let input_digest = s
        .input_digest
        .strip_prefix("sha256:")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
    CompactDecision {
        input_digest,
        strategy: s.strategy.as_deref().map(|v| position(table, v)),
        validators: s.validators.iter().map(|v| position(table, v)).collect(),
        winner: s.winner,
        previous: s.previous,
        switched: s.switched,
        candidates: s.candidates,
        rejected: s.rejected,
        faults: s.faults,
        idle_reason: s.idle_reason.clone(),
    }
}

/// A machine's newest `limit` decisions, full or compacted, newest first.
pub(crate) fn summaries(
    db: &Db,
    machine: MachineId,
    limit: usize,
) -> StoreResult<Vec<DecisionSummary>> {
    let mut out = Vec::with_capacity(limit);
    for item in db
        .scan_prefix(key(keys::DECISION, &[machine]))
        .rev()
        .take(limit)
    {
        let (k, v) = item?;
        out.push(DecisionSummary::of(&decode::<Decision>(&k, &v)?));
    }
    let mut tables: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for item in db
        .scan_prefix(key(keys::DECISION_COMPACT, &[machine]))
        .rev()
        .take(limit)
    {
        let (k, v) = item?;
        let interval = read_u64(&k, &k[k.len().saturating_sub(8)..])?;
        let compact: CompactDecision = decode(&k, &v)?;
        let table = match tables.entry(interval) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(version_table(db, interval)?),
        };
        let name = |at: u32| table.get(at as usize).cloned().unwrap_or_default();
        out.push(DecisionSummary {
            machine,
            interval,
            input_digest: compact
                .input_digest
                .map(|d| format!("sha256:{}", hex::encode(d)))
                .unwrap_or_default(),
            strategy: compact.strategy.map(name),
            validators: compact.validators.into_iter().map(name).collect(),
            winner: compact.winner,
            previous: compact.previous,
            switched: compact.switched,
            candidates: compact.candidates,
            rejected: compact.rejected,
            faults: compact.faults,
            idle_reason: compact.idle_reason,
            full: false,
        });
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.interval));
    out.truncate(limit);
    Ok(out)
}
