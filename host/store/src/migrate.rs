//! Schema migrations: each rewrites a store of one version into the next, in one atomic
//! batch that also writes the new version (so an interrupted migration leaves the old
//! version, which is migrated again on the next open).

use gigaspot_market::agent_protocol::WorkloadStatus;
use gigaspot_market::context::GpuOc;
use gigaspot_market::machine::{Gpu, LiveState, Machine, MachineFacts};
use gigaspot_market::money::Amount;
use serde::Deserialize;
use sled::Batch;

use crate::codec::{decode, encode};
use crate::error::StoreResult;
use crate::keys;

/// Migrates the store in `db` from schema `found` up to the current version.
pub fn migrate(db: &sled::Db, found: u32) -> StoreResult<()> {
    if found == 2 {
        v2_to_v3(db)?;
    }
    Ok(())
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
    db.flush()?;
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
    fn upgrade(self) -> Machine {
        Machine {
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
            live: LiveState {
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
    use serde::Serialize;

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
            &3u32.to_be_bytes()
        );
    }
}
