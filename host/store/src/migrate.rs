//! Schema migrations: each rewrites a store of one version into the next, in one atomic
//! batch that also writes the new version (so an interrupted migration leaves the old
//! version, which is migrated again on the next open).

use gigaspot_market::agent_protocol::WorkloadStatus;
use gigaspot_market::context::GpuOc;
use gigaspot_market::machine::{Gpu, MachineFacts};
use gigaspot_market::money::Amount;
use serde::Deserialize;
use sled::Batch;

use std::collections::BTreeMap;

use crate::codec::{decode, encode, read_u64};
use crate::error::StoreResult;
use crate::keys;
use crate::machine_v5::{LiveV5, MachineV5};

/// Migrates the store in `db` from schema `found` up to the current version.
pub fn migrate(db: &sled::Db, found: u32) -> StoreResult<()> {
    if found == 2 {
        v2_to_v3(db)?;
    }
    if found <= 3 {
        v3_to_v4(db)?;
    }
    if found <= 4 {
        v4_to_v5(db)?;
    }
    if found <= 5 {
        v5_to_v6(db)?;
    }
    if found <= 6 {
        // Version 7 only adds standing orders under a new prefix; the version is written
        // so that an older build refuses the store instead of ignoring its orders.
        db.insert(keys::SCHEMA, &7u32.to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

/// Version 6 added the host's background job, its declared earnings and whether the
/// ceilings are the host's own to every machine record, and the background job's status
/// to its live state: each record is rewritten in one batch with the version.
fn v5_to_v6(db: &sled::Db) -> StoreResult<()> {
    let mut batch = Batch::default();
    for item in db.scan_prefix(keys::MACHINE) {
        let (k, v) = item?;
        let old: MachineV5 = decode(&k, &v)?;
        batch.insert(k, encode(&old.upgrade())?);
    }
    batch.insert(keys::SCHEMA, &6u32.to_be_bytes());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// Marks moved per batch by `v4_to_v5`.
const MARKS_PER_BATCH: usize = 10_000;

/// Version 5 keys the served, served-time and unserved marks by (interval, machine)
/// instead of (machine, interval), so that the marks of settled intervals are pruned by
/// range. Each batch moves marks unchanged (the legacy keys out, the new ones in), so an
/// interrupted migration resumes where it stopped; the version is written last. The
/// service prunes the moved marks of settled intervals at its next boundary.
fn v4_to_v5(db: &sled::Db) -> StoreResult<()> {
    for (legacy, current) in [
        (keys::LEGACY_SERVED, keys::SERVED),
        (keys::LEGACY_SERVED_TIME, keys::SERVED_TIME),
        (keys::LEGACY_UNSERVED, keys::UNSERVED),
    ] {
        loop {
            let mut batch = Batch::default();
            let mut moved = 0;
            for item in db.scan_prefix(legacy).take(MARKS_PER_BATCH) {
                let (k, v) = item?;
                let (machine, interval) = machine_interval(legacy, &k)?;
                batch.insert(keys::mark(current, machine, interval), v);
                batch.remove(k);
                moved += 1;
            }
            if moved == 0 {
                break;
            }
            db.apply_batch(batch)?;
        }
    }
    db.insert(keys::SCHEMA, &5u32.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

/// Intervals moved per batch by `v3_to_v4` (bounds the batch's memory).
const INTERVALS_PER_BATCH: usize = 16;

/// Version 4 stores decision records and assignments in chunks per interval
/// (`decision_chunks`) and pending marks as one list per interval. Each
/// batch moves whole intervals (their chunks in, their per-machine records and index
/// entries out), so an interrupted migration resumes where it stopped; the version is
/// written last. The records' bytes move unchanged (the chunk keeps each record's own
/// encoding).
fn v3_to_v4(db: &sled::Db) -> StoreResult<()> {
    // Full records, interval by interval, through their (interval, machine) index; a
    // store from before the index had it built when it was opened by a version-3 build,
    // or has it built here.
    if !db.contains_key(keys::LEGACY_DECISION_INDEX_BUILT)? {
        let mut batch = Batch::default();
        for item in db.scan_prefix(keys::LEGACY_DECISION) {
            let (k, _) = item?;
            let (machine, interval) = machine_interval(keys::LEGACY_DECISION, &k)?;
            batch.insert(
                keys::key(keys::LEGACY_DECISION_BY_INTERVAL, &[interval, machine]),
                &[],
            );
        }
        batch.insert(keys::LEGACY_DECISION_INDEX_BUILT, &[]);
        db.apply_batch(batch)?;
    }
    loop {
        let mut by_interval: BTreeMap<u64, Vec<(u64, sled::IVec)>> = BTreeMap::new();
        let mut batch = Batch::default();
        let mut moved = 0usize;
        for item in db.scan_prefix(keys::LEGACY_DECISION_BY_INTERVAL) {
            let (index, _) = item?;
            let tail = &index[keys::LEGACY_DECISION_BY_INTERVAL.len()..];
            let (interval, machine) = machine_interval(b"", tail)?;
            if !by_interval.contains_key(&interval) && by_interval.len() == INTERVALS_PER_BATCH {
                break;
            }
            batch.remove(index.clone());
            moved += 1;
            let full = keys::key(keys::LEGACY_DECISION, &[machine, interval]);
            if let Some(value) = db.get(&full)? {
                by_interval
                    .entry(interval)
                    .or_default()
                    .push((machine, value));
                batch.remove(full);
            }
        }
        if moved == 0 {
            break;
        }
        write_chunks(&mut batch, keys::DECISION_CHUNK, &by_interval)?;
        db.apply_batch(batch)?;
    }
    // Assignments: one scan groups them by interval (they are keyed by machine first);
    // each batch moves whole intervals.
    let mut assignments = by_interval(db, keys::LEGACY_ASSIGNMENT, None)?;
    let intervals: Vec<u64> = assignments.keys().copied().collect();
    for group in intervals.chunks(INTERVALS_PER_BATCH) {
        let mut batch = Batch::default();
        let mut moved = BTreeMap::new();
        for interval in group {
            if let Some(records) = assignments.remove(interval) {
                for (machine, _) in &records {
                    batch.remove(keys::key(keys::LEGACY_ASSIGNMENT, &[*machine, *interval]));
                }
                moved.insert(*interval, records);
            }
        }
        write_chunks(&mut batch, keys::ASSIGNMENT_CHUNK, &moved)?;
        db.apply_batch(batch)?;
    }
    // Compact records: no index by interval, so one scan groups them.
    let mut batch = Batch::default();
    let compact = by_interval(db, keys::LEGACY_DECISION_COMPACT, Some(&mut batch))?;
    write_chunks(&mut batch, keys::DECISION_COMPACT_CHUNK, &compact)?;
    // Any full record the index missed (there should be none) is kept, in its own chunk.
    let stray = by_interval(db, keys::LEGACY_DECISION, Some(&mut batch))?;
    write_chunks(&mut batch, keys::DECISION_CHUNK, &stray)?;
    // Pending marks: one list per interval.
    for (interval, marks) in by_interval(db, keys::LEGACY_PENDING, Some(&mut batch))? {
        let machines: Vec<u64> = marks.into_iter().map(|(machine, _)| machine).collect();
        batch.insert(
            keys::key(keys::PENDING_INTERVAL, &[interval]),
            encode(&machines)?,
        );
    }
    batch.remove(keys::LEGACY_DECISION_INDEX_BUILT);
    batch.insert(keys::SCHEMA, &4u32.to_be_bytes());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// A schema-3 prefix keyed by (machine, interval), grouped by interval as
/// `(machine, value)` in machine order; each key is also removed in `remove_in`, if given.
fn by_interval(
    db: &sled::Db,
    prefix: &[u8],
    mut remove_in: Option<&mut Batch>,
) -> StoreResult<BTreeMap<u64, Vec<(u64, sled::IVec)>>> {
    let mut grouped: BTreeMap<u64, Vec<(u64, sled::IVec)>> = BTreeMap::new();
    for item in db.scan_prefix(prefix) {
        let (k, v) = item?;
        let (machine, interval) = machine_interval(prefix, &k)?;
        grouped.entry(interval).or_default().push((machine, v));
        if let Some(batch) = remove_in.as_deref_mut() {
            batch.remove(k);
        }
    }
    Ok(grouped)
}

/// Adds the chunks of each interval's `(machine, record bytes)` (sorted by machine here).
fn write_chunks(
    batch: &mut Batch,
    prefix: &[u8],
    by_interval: &BTreeMap<u64, Vec<(u64, sled::IVec)>>,
) -> StoreResult<()> {
    for (interval, records) in by_interval {
        let mut borrowed: Vec<(u64, &[u8])> =
            records.iter().map(|(m, v)| (*m, v.as_ref())).collect();
        borrowed.sort_by_key(|(machine, _)| *machine);
        crate::decision_chunks::write_encoded(batch, prefix, *interval, &borrowed)?;
    }
    Ok(())
}

/// The two big-endian ids after `prefix` in a key.
fn machine_interval(prefix: &[u8], k: &[u8]) -> StoreResult<(u64, u64)> {
    let tail = k.get(prefix.len()..).unwrap_or_default();
    Ok((
        read_u64(k, tail.get(..8).unwrap_or_default())?,
        read_u64(k, tail.get(8..).unwrap_or_default())?,
    ))
}

/// Version 3 added the CPU's cores and threads to a machine's facts and the read-back
/// of each setting to its live state: every machine record is rewritten with those
/// unknown (0 and none) until its agent reports them.
fn v2_to_v3(db: &sled::Db) -> StoreResult<()> {
    let mut batch = Batch::default();
    for item in db.scan_prefix(keys::MACHINE) {
        let (k, v) = item?;
        let old: MachineV2 = decode(&k, &v)?;
        batch.insert(k, encode(&old.upgrade())?);
    }
    batch.insert(keys::SCHEMA, &3u32.to_be_bytes());
    db.apply_batch(batch)?;
    Ok(())
}

/// A machine as schema version 2 stored it.
#[derive(Deserialize)]
struct MachineV2 {
    id: u64,
    host: u64,
    facts: FactsV2,
    gpus: Vec<Gpu>,
    energy_price_usd_per_kwh: f64,
    reserve_price: Amount,
    max_rental_length_s: u64,
    live: LiveV2,
}

#[derive(Deserialize)]
struct FactsV2 {
    cpu: String,
    ram_gib: u32,
    cuda: String,
    country: String,
}

#[derive(Deserialize)]
struct LiveV2 {
    online: bool,
    working: bool,
    cached_images: Vec<String>,
    measured_power_w: Vec<u32>,
    running_bid: Option<u64>,
    applied_settings: Vec<GpuOc>,
    workload: Option<WorkloadStatus>,
    last_error: Option<String>,
}

impl MachineV2 {
    /// The record as versions 3 to 5 stored it (version 6 rewrites it again).
    fn upgrade(self) -> MachineV5 {
        MachineV5 {
            id: self.id,
            host: self.host,
            facts: MachineFacts {
                cpu: self.facts.cpu,
                ram_gib: self.facts.ram_gib,
                cuda: self.facts.cuda,
                country: self.facts.country,
                cores: 0,
                threads: 0,
            },
            gpus: self.gpus,
            energy_price_usd_per_kwh: self.energy_price_usd_per_kwh,
            reserve_price: self.reserve_price,
            max_rental_length_s: self.max_rental_length_s,
            live: LiveV5 {
                online: self.live.online,
                working: self.live.working,
                cached_images: self.live.cached_images,
                measured_power_w: self.live.measured_power_w,
                running_bid: self.live.running_bid,
                applied_settings: self.live.applied_settings,
                workload: self.live.workload,
                last_error: self.live.last_error,
                verification: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::machine::Machine;
    use serde::Serialize;

    #[test]
    fn a_version_5_machine_gets_no_background_job_and_keeps_its_ceilings() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let gpu = |ceiling_w| Gpu {
            model: "NVIDIA GeForce RTX 4090".into(),
            uuid: "GPU-1".into(),
            card_min_w: 150,
            card_max_w: 450,
            ceiling_w,
        };
        let old = |id, ceiling_w| MachineV5 {
            id,
            host: 3,
            facts: MachineFacts::default(),
            gpus: vec![gpu(ceiling_w)],
            energy_price_usd_per_kwh: 0.2,
            reserve_price: Amount::clore(5),
            max_rental_length_s: 3600,
            live: LiveV5 {
                online: true,
                working: true,
                cached_images: vec!["img:1".into()],
                measured_power_w: vec![300],
                running_bid: Some(9),
                applied_settings: vec![],
                workload: None,
                last_error: None,
                verification: vec![],
            },
        };
        // One host lowered its ceiling, the other left the card's maximum.
        for (id, ceiling) in [(7, 400), (8, 450)] {
            let k = crate::keys::key(keys::MACHINE, &[id]);
            db.insert(&k, encode(&old(id, ceiling)).unwrap()).unwrap();
        }
        migrate(&db, 5).unwrap();
        for (id, ceiling, explicit) in [(7, 400, true), (8, 450, false)] {
            let k = crate::keys::key(keys::MACHINE, &[id]);
            let m: Machine = decode(&k, &db.get(&k).unwrap().unwrap()).unwrap();
            assert_eq!(m.gpus[0].ceiling_w, ceiling);
            assert_eq!(m.explicit_ceilings, explicit);
            assert_eq!(m.background, None);
            assert_eq!(m.background_earnings, Amount::ZERO);
            assert_eq!(m.live.running_bid, Some(9));
            assert_eq!(m.reserve_price, Amount::clore(5));
        }
        assert_eq!(
            db.get(keys::SCHEMA).unwrap().unwrap().as_ref(),
            &keys::SCHEMA_VERSION.to_be_bytes()
        );
    }

    /// The version 2 live state, field by field (postcard writes a struct as a tuple).
    type LiveTupleV2 = (
        bool,
        bool,
        Vec<String>,
        Vec<u32>,
        Option<u64>,
        Vec<GpuOc>,
        Option<WorkloadStatus>,
        Option<String>,
    );

    /// The version 2 layout, to write a store as that version did.
    #[derive(Serialize)]
    struct WriteV2<'a> {
        id: u64,
        host: u64,
        facts: (&'a str, u32, &'a str, &'a str),
        gpus: Vec<Gpu>,
        energy_price_usd_per_kwh: f64,
        reserve_price: Amount,
        max_rental_length_s: u64,
        live: LiveTupleV2,
    }

    #[test]
    fn a_version_2_machine_is_rewritten_with_unknown_cores_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let old = WriteV2 {
            id: 7,
            host: 3,
            facts: ("EPYC", 256, "12.4", "DE"),
            gpus: vec![Gpu {
                model: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-1".into(),
                card_min_w: 200,
                card_max_w: 700,
                ceiling_w: 650,
            }],
            energy_price_usd_per_kwh: 0.2,
            reserve_price: Amount::clore(5),
            max_rental_length_s: 3600,
            live: (
                true,
                true,
                vec!["img:1".into()],
                vec![300],
                Some(9),
                vec![],
                None,
                Some("x".into()),
            ),
        };
        let k = crate::keys::key(keys::MACHINE, &[7]);
        db.insert(&k, encode(&old).unwrap()).unwrap();
        migrate(&db, 2).unwrap();
        let m: Machine = decode(&k, &db.get(&k).unwrap().unwrap()).unwrap();
        assert_eq!(m.facts.cpu, "EPYC");
        assert_eq!(m.facts.country, "DE");
        assert_eq!((m.facts.cores, m.facts.threads), (0, 0));
        assert_eq!(m.gpus[0].ceiling_w, 650);
        assert_eq!(m.reserve_price, Amount::clore(5));
        assert_eq!(m.live.running_bid, Some(9));
        assert_eq!(m.live.last_error.as_deref(), Some("x"));
        assert!(m.live.verification.is_empty());
        assert_eq!(
            db.get(keys::SCHEMA).unwrap().unwrap().as_ref(),
            &keys::SCHEMA_VERSION.to_be_bytes()
        );
    }

    fn decision(machine: u64, interval: u64) -> gigaspot_market::clearing::Decision {
        gigaspot_market::clearing::Decision {
            machine,
            interval,
            input_digest: format!("sha256:{machine}-{interval}"),
            strategy: None,
            validators: vec![],
            verdicts: vec![],
            winner: None,
            previous: Some(machine * 100 + interval),
            switched: false,
            faults: vec![],
            idle_reason: Some("no acceptable bid".into()),
        }
    }

    #[test]
    fn version_3_decision_records_move_into_chunks_with_their_bytes() {
        use crate::keys::key;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        // 40 intervals × 70 machines of full records (more than one batch of intervals,
        // more than one chunk per interval), one interval without its index entries (a
        // store from before the index), and compact records of two older intervals.
        let machines: Vec<u64> = (0..70).map(|i| 1000 + 3 * i).collect();
        for interval in 100..140 {
            for &m in &machines {
                db.insert(
                    key(keys::LEGACY_DECISION, &[m, interval]),
                    encode(&decision(m, interval)).unwrap(),
                )
                .unwrap();
                if interval != 139 {
                    db.insert(key(keys::LEGACY_DECISION_BY_INTERVAL, &[interval, m]), &[])
                        .unwrap();
                }
            }
        }
        db.insert(keys::LEGACY_DECISION_INDEX_BUILT, &[]).unwrap();
        for interval in [98, 99] {
            for &m in &machines {
                db.insert(
                    key(keys::LEGACY_DECISION_COMPACT, &[m, interval]),
                    format!("compact {m} {interval}").as_bytes(),
                )
                .unwrap();
            }
        }
        for interval in 118..122 {
            for &m in &machines {
                db.insert(
                    key(keys::LEGACY_ASSIGNMENT, &[m, interval]),
                    format!("asg {m} {interval}").as_bytes(),
                )
                .unwrap();
            }
        }
        for (m, interval) in [(machines[1], 120), (machines[0], 120), (machines[2], 121)] {
            db.insert(key(keys::LEGACY_PENDING, &[m, interval]), &[])
                .unwrap();
        }
        db.insert(keys::SCHEMA, &3u32.to_be_bytes()).unwrap();
        migrate(&db, 3).unwrap();

        let pending = |interval: u64| -> Vec<u64> {
            let k = key(keys::PENDING_INTERVAL, &[interval]);
            decode(&k, &db.get(&k).unwrap().unwrap()).unwrap()
        };
        assert_eq!(pending(120), vec![machines[0], machines[1]]);
        assert_eq!(pending(121), vec![machines[2]]);
        assert_eq!(db.scan_prefix(keys::PENDING_INTERVAL).count(), 2);
        for interval in 118..122 {
            for &m in &machines {
                let k = key(keys::ASSIGNMENT_CHUNK, &[interval, m]);
                let (chunk_key, value) = db
                    .range(key(keys::ASSIGNMENT_CHUNK, &[interval, 0])..=k)
                    .next_back()
                    .unwrap()
                    .unwrap();
                let entries = crate::decision_chunks::entries(&chunk_key, &value).unwrap();
                let (_, bytes) = entries.iter().find(|(id, _)| *id == m).unwrap();
                assert_eq!(*bytes, format!("asg {m} {interval}").as_bytes());
            }
        }

        for interval in 100..140 {
            for &m in &machines {
                let d: gigaspot_market::clearing::Decision =
                    crate::decision_chunks::get(&db, keys::DECISION_CHUNK, m, interval)
                        .unwrap()
                        .unwrap();
                assert_eq!(d, decision(m, interval));
            }
            assert!(
                crate::decision_chunks::get::<gigaspot_market::clearing::Decision>(
                    &db,
                    keys::DECISION_CHUNK,
                    machines[0] + 1,
                    interval
                )
                .unwrap()
                .is_none()
            );
        }
        let newest: Vec<(u64, gigaspot_market::clearing::Decision)> =
            crate::decision_chunks::newest(&db, keys::DECISION_CHUNK, machines[5], 3).unwrap();
        assert_eq!(
            newest.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![139, 138, 137]
        );
        for interval in [98, 99] {
            for &m in &machines {
                let k = key(keys::DECISION_COMPACT_CHUNK, &[interval, machines[0]]);
                let chunk_key = db
                    .range(k.clone()..=key(keys::DECISION_COMPACT_CHUNK, &[interval, m]))
                    .next_back()
                    .unwrap()
                    .unwrap();
                let entries = crate::decision_chunks::entries(&chunk_key.0, &chunk_key.1).unwrap();
                let (_, bytes) = entries.iter().find(|(id, _)| *id == m).unwrap();
                assert_eq!(*bytes, format!("compact {m} {interval}").as_bytes());
            }
        }
        for legacy in [
            keys::LEGACY_ASSIGNMENT,
            keys::LEGACY_PENDING,
            keys::LEGACY_DECISION,
            keys::LEGACY_DECISION_BY_INTERVAL,
            keys::LEGACY_DECISION_COMPACT,
        ] {
            assert_eq!(db.scan_prefix(legacy).count(), 0);
        }
        assert!(!db.contains_key(keys::LEGACY_DECISION_INDEX_BUILT).unwrap());
        assert_eq!(
            db.get(keys::SCHEMA).unwrap().unwrap().as_ref(),
            &keys::SCHEMA_VERSION.to_be_bytes()
        );
        // 70 machines in chunks of 64: two chunks per interval.
        assert_eq!(db.scan_prefix(keys::DECISION_CHUNK).count(), 80);
    }

    #[test]
    fn version_4_marks_are_keyed_by_interval_first_with_their_bytes() {
        use crate::keys::key;
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        // More marks of each kind than one batch moves.
        let marks = |m: u64, i: u64, kind: &str| format!("{kind} {m} {i}").into_bytes();
        for m in 0..110u64 {
            for interval in 500..600 {
                db.insert(
                    key(keys::LEGACY_SERVED, &[m, interval]),
                    marks(m, interval, "srv"),
                )
                .unwrap();
                db.insert(
                    key(keys::LEGACY_SERVED_TIME, &[m, interval]),
                    marks(m, interval, "srvt"),
                )
                .unwrap();
            }
            db.insert(key(keys::LEGACY_UNSERVED, &[m, 7]), marks(m, 7, "unsrv"))
                .unwrap();
        }
        db.insert(keys::SCHEMA, &4u32.to_be_bytes()).unwrap();
        migrate(&db, 4).unwrap();
        for m in 0..110u64 {
            for interval in [500, 555, 599] {
                let get = |prefix| db.get(keys::mark(prefix, m, interval)).unwrap().unwrap();
                assert_eq!(get(keys::SERVED).as_ref(), marks(m, interval, "srv"));
                assert_eq!(get(keys::SERVED_TIME).as_ref(), marks(m, interval, "srvt"));
            }
            let unserved = db.get(keys::mark(keys::UNSERVED, m, 7)).unwrap().unwrap();
            assert_eq!(unserved.as_ref(), marks(m, 7, "unsrv"));
        }
        assert_eq!(db.scan_prefix(keys::SERVED).count(), 11_000);
        assert_eq!(db.scan_prefix(keys::SERVED_TIME).count(), 11_000);
        assert_eq!(db.scan_prefix(keys::UNSERVED).count(), 110);
        for legacy in [
            keys::LEGACY_SERVED,
            keys::LEGACY_SERVED_TIME,
            keys::LEGACY_UNSERVED,
        ] {
            assert_eq!(db.scan_prefix(legacy).count(), 0);
        }
        assert_eq!(
            db.get(keys::SCHEMA).unwrap().unwrap().as_ref(),
            &keys::SCHEMA_VERSION.to_be_bytes()
        );
    }
}
