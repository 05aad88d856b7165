//! Decision retention: full decision records (every bid's verdict) are kept for the
//! operator's window; older ones are compacted to what history, audit and replay need —
//! winner, previous bid, switch, counts, the input digest and the plugin versions that
//! answered. Ledger entries are never touched.
//!
//! Compact records are chunked like the full ones (`decision_chunks`): a full chunk is
//! compacted as a whole into a compact chunk under the same `(interval, first machine)`.
//! Their plugin versions are positions in a per-interval table (`DECISION_VERSIONS`),
//! since every machine of an interval is usually answered by the same versions.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use gigaspot_market::bid::BidId;
use gigaspot_market::clearing::{Decision, Winner};
use gigaspot_market::machine::MachineId;
use serde::{Deserialize, Serialize};
use sled::{Batch, Db};

use crate::codec::{decode, encode};
use crate::decision_chunks;
use crate::error::StoreResult;
use crate::keys::{self, key};
use crate::records::{Compaction, DecisionSummary};

/// A decision record after the retention window (its chunk's key has the interval, the
/// chunk's entry the machine).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CompactDecision {
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

/// The batch compacting the oldest full chunks of intervals before `before`, whole
/// chunks until at least `limit` records, and what it does.
pub(crate) fn compact(db: &Db, before: u64, limit: usize) -> StoreResult<(Batch, Compaction)> {
    let mut batch = Batch::default();
    let mut report = Compaction::default();
    let mut tables: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let start = key(keys::DECISION_CHUNK, &[0, 0]);
    let end = key(keys::DECISION_CHUNK, &[before, 0]);
    for item in db.range(start..end) {
        if report.records as usize >= limit {
            break;
        }
        let (full_key, full) = item?;
        let (interval, first) = decision_chunks::ids(keys::DECISION_CHUNK, &full_key)?;
        let table = match tables.entry(interval) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(version_table(db, interval)?),
        };
        let mut compacted = Vec::new();
        for (machine, bytes) in decision_chunks::entries(&full_key, &full)? {
            let decision: Decision = decode(&full_key, bytes)?;
            compacted.push((machine, compact_one(&DecisionSummary::of(&decision), table)));
            report.records += 1;
        }
        let records: Vec<(MachineId, &CompactDecision)> =
            compacted.iter().map(|(m, c)| (*m, c)).collect();
        report.bytes_before += (full_key.len() + full.len()) as u64;
        report.bytes_after +=
            decision_chunks::write(&mut batch, keys::DECISION_COMPACT_CHUNK, interval, &records)?;
        // The compact chunk lands under the same key as the full one (same first machine).
        debug_assert_eq!(compacted.first().map(|c| c.0), Some(first));
        batch.remove(full_key);
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

/// A machine's decisions of the newest `limit` intervals, full or compacted, newest first.
pub(crate) fn summaries(
    db: &Db,
    machine: MachineId,
    limit: usize,
) -> StoreResult<Vec<DecisionSummary>> {
    let mut out: Vec<DecisionSummary> =
        decision_chunks::newest::<Decision>(db, keys::DECISION_CHUNK, machine, limit)?
            .iter()
            .map(|(_, d)| DecisionSummary::of(d))
            .collect();
    let mut tables: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (interval, compact) in decision_chunks::newest::<CompactDecision>(
        db,
        keys::DECISION_COMPACT_CHUNK,
        machine,
        limit,
    )? {
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
