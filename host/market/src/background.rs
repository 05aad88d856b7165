//! The host's background job: what a machine runs when no bid wins (its own mining or
//! batch work), with the settings whose power limits are the ceilings a bid may ask for.
//!
//! The rules (docs/market-core.md, "Background job"):
//! - each GPU's settings are checked against the card's own range and the clock table,
//!   like a bid's (the host's ceiling does not bound its own job);
//! - unless the host set explicit ceilings, each GPU's bid range is [card minimum, the
//!   background job's power limit on it] ([`crate::machine::Machine::follow_background`]);
//! - the agent runs it only while no bid is assigned ([`wanted`]); it is never charged;
//! - what it earns (`background_earnings`) is a floor of the machine's minimum bid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::admission::{Refusal, RefusalReason, check_env, check_oc_values, refuse};
use crate::agent_protocol::Workload;
use crate::bid::OcRequest;
use crate::context::{GpuOc, RangeU32};
use crate::gpu_ranges::GpuRangeTable;
use crate::image_ref;
use crate::machine::{Gpu, Machine};

/// A machine's background job as the host set it, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackgroundJob {
    /// Container image reference.
    pub image: String,
    /// Container environment (shown to nobody but the agent: it may hold the host's
    /// wallet or credentials).
    pub env: BTreeMap<String, String>,
    /// Per-GPU settings; the power limit is mandatory.
    pub oc: Vec<GpuOc>,
}

/// A background job as a host sends it: the power limits may be missing (refused).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackgroundRequest {
    /// Container image reference.
    pub image: String,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// One entry per GPU.
    pub oc: Vec<OcRequest>,
}

/// The prefix of every field a refused background job names.
const FIELD: &str = "background_job";

impl BackgroundRequest {
    /// Checks the job against the machine's GPUs and the clock table: one entry per GPU,
    /// a power limit on each within the card's [minimum, maximum], clocks within the
    /// model's ranges, an environment and image a bid could have. Refusals name the field
    /// under `background_job.` (e.g. `background_job.oc[1].pl`).
    pub fn admit(&self, gpus: &[Gpu], table: &GpuRangeTable) -> Result<BackgroundJob, Refusal> {
        let prefixed = |mut r: Refusal| {
            r.field = format!("{FIELD}.{}", r.field);
            r
        };
        if self.oc.len() != gpus.len() {
            return refuse(
                format!("{FIELD}.oc"),
                self.oc.len(),
                RefusalReason::WrongOcCount {
                    expected: gpus.len(),
                },
            );
        }
        let oc = self
            .oc
            .iter()
            .zip(gpus)
            .enumerate()
            .map(|(i, (request, gpu))| {
                let card = RangeU32 {
                    min: gpu.card_min_w,
                    max: gpu.card_max_w,
                };
                check_oc_values(i, request, card, table.get(&gpu.model))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(prefixed)?;
        check_env(&self.env).map_err(prefixed)?;
        if let Some(why) = image_ref::problem(&self.image) {
            return refuse(
                format!("{FIELD}.image"),
                &self.image,
                RefusalReason::BadImage(why.into()),
            );
        }
        Ok(BackgroundJob {
            image: self.image.clone(),
            env: self.env.clone(),
            oc,
        })
    }
}

impl BackgroundJob {
    /// A short digest of everything the agent runs (image, environment, settings): the
    /// agent labels the container with it and restarts the job when the host changes it.
    pub fn revision(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.image.as_bytes());
        hash.update([0]);
        for (key, value) in &self.env {
            hash.update((key.len() as u64).to_be_bytes());
            hash.update(key.as_bytes());
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value.as_bytes());
        }
        hash.update([0]);
        for oc in &self.oc {
            hash.update(oc.power_limit_w.to_be_bytes());
            for lock in [oc.core_lock_mhz, oc.mem_lock_mhz] {
                hash.update(lock.map_or([0xff; 5], |v| with_tag(v.to_be_bytes())));
            }
            for offset in [oc.core_offset_mhz, oc.mem_offset_mhz] {
                hash.update(offset.map_or([0xff; 5], |v| with_tag(v.to_be_bytes())));
            }
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// Whether the job's settings still fit the GPUs (after the agent reported other
    /// cards): one entry per GPU, each power limit within the card's range.
    pub fn fits(&self, gpus: &[Gpu]) -> bool {
        self.oc.len() == gpus.len()
            && self
                .oc
                .iter()
                .zip(gpus)
                .all(|(oc, g)| (g.card_min_w..=g.card_max_w).contains(&oc.power_limit_w))
    }
}

fn with_tag(bytes: [u8; 4]) -> [u8; 5] {
    [0, bytes[0], bytes[1], bytes[2], bytes[3]]
}

/// The background job the agent should run: the machine's, while no bid is assigned to
/// it; none while one is (the bid's workload runs, or nothing while it cannot).
pub fn wanted(machine: &Machine, assigned: Option<&Workload>) -> Option<BackgroundJob> {
    match assigned {
        Some(_) => None,
        None => machine
            .background
            .clone()
            .filter(|job| job.fits(&machine.gpus)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::machine;

    fn request(pl: u32) -> BackgroundRequest {
        BackgroundRequest {
            image: "miner:1".into(),
            env: BTreeMap::from([("WALLET".into(), "x".into())]),
            oc: vec![
                OcRequest {
                    pl: Some(pl),
                    ..OcRequest::default()
                };
                4
            ],
        }
    }

    #[test]
    fn a_job_is_checked_against_the_card_not_the_ceiling() {
        let m = machine();
        let table = GpuRangeTable::defaults();
        // The host ceiling is 400 W; its own job may use the card's 450 W.
        let job = request(450).admit(&m.gpus, &table).unwrap();
        assert_eq!(job.oc[3].power_limit_w, 450);
        let refused = request(451).admit(&m.gpus, &table).unwrap_err();
        assert_eq!(refused.field, "background_job.oc[0].pl");
        let mut missing = request(300);
        missing.oc[2].pl = None;
        assert_eq!(
            missing.admit(&m.gpus, &table).unwrap_err().field,
            "background_job.oc[2].pl"
        );
        let mut short = request(300);
        short.oc.pop();
        assert_eq!(
            short.admit(&m.gpus, &table).unwrap_err().field,
            "background_job.oc"
        );
        let mut bad_image = request(300);
        bad_image.image = "no spaces allowed".into();
        assert_eq!(
            bad_image.admit(&m.gpus, &table).unwrap_err().field,
            "background_job.image"
        );
        let mut bad_env = request(300);
        bad_env.env.insert("K".repeat(200), "v".into());
        assert!(
            bad_env
                .admit(&m.gpus, &table)
                .unwrap_err()
                .field
                .starts_with("background_job.env.")
        );
        let mut clock = request(300);
        clock.oc[1].core_offset = Some(100_000);
        assert_eq!(
            clock.admit(&m.gpus, &table).unwrap_err().field,
            "background_job.oc[1].core_offset"
        );
    }

    #[test]
    fn the_revision_changes_with_anything_the_agent_runs() {
        let m = machine();
        let table = GpuRangeTable::defaults();
        let job = request(300).admit(&m.gpus, &table).unwrap();
        assert_eq!(job.revision(), job.clone().revision());
        assert_eq!(job.revision().len(), 16);
        let mut other = job.clone();
        other.oc[0].power_limit_w = 301;
        assert_ne!(other.revision(), job.revision());
        let mut other = job.clone();
        other.oc[0].core_offset_mhz = Some(0);
        assert_ne!(other.revision(), job.revision());
        let mut other = job.clone();
        other.env.insert("A".into(), "".into());
        assert_ne!(other.revision(), job.revision());
        let mut other = job.clone();
        other.image = "miner:2".into();
        assert_ne!(other.revision(), job.revision());
    }

    #[test]
    fn it_runs_only_while_no_bid_is_assigned() {
        let mut m = machine();
        assert_eq!(wanted(&m, None), None);
        let job = request(300)
            .admit(&m.gpus, &GpuRangeTable::defaults())
            .unwrap();
        m.background = Some(job.clone());
        assert_eq!(wanted(&m, None), Some(job.clone()));
        let bid = Workload {
            bid: 5,
            image: "app:1".into(),
            env: BTreeMap::new(),
            oc: job.oc.clone(),
        };
        assert_eq!(wanted(&m, Some(&bid)), None);
        // Cards that no longer fit the job: it does not run (the agent would be refused).
        m.gpus.pop();
        assert_eq!(wanted(&m, None), None);
    }
}
