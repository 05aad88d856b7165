//! Seeded random machines and bids for tests, demos and benchmarks (feature `sample`).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::context::{
    CandidateBid, GpuOc, GpuSlot, MachineContext, RangeS32, RangeU32, RunningBid,
};
use crate::economics::UNITS_PER_CLORE;

/// GPU models the generator draws from, with (card minimum, card maximum) power in W.
const MODELS: [(&str, u32, u32); 4] = [
    ("NVIDIA GeForce RTX 4090", 150, 600),
    ("NVIDIA GeForce RTX 3090", 100, 400),
    ("NVIDIA A100-SXM4-80GB", 100, 400),
    ("NVIDIA H100 80GB HBM3", 200, 700),
];

/// A deterministic generator of plausible market inputs.
pub struct SampleMarket {
    rng: StdRng,
    next_bid_id: u64,
}

impl SampleMarket {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        SampleMarket {
            rng: StdRng::seed_from_u64(seed),
            next_bid_id: 1,
        }
    }

    /// A machine with 1 to 8 GPUs of one model, with lock and offset ranges on most GPUs.
    pub fn machine(&mut self, id: u64) -> MachineContext {
        let (model, min_w, max_w) = MODELS[self.rng.random_range(0..MODELS.len())];
        let gpu_count = self.rng.random_range(1..=8u32);
        let ceiling = self.rng.random_range(min_w..=max_w);
        let clocks = self.rng.random_bool(0.8);
        let gpus = (0..gpu_count)
            .map(|index| GpuSlot {
                index,
                model: model.to_string(),
                power_limit_w: RangeU32 {
                    min: min_w,
                    max: ceiling,
                },
                core_lock_mhz: clocks.then_some(RangeU32 {
                    min: 210,
                    max: 3105,
                }),
                mem_lock_mhz: clocks.then_some(RangeU32 {
                    min: 405,
                    max: 10501,
                }),
                core_offset_mhz: clocks.then_some(RangeS32 {
                    min: -500,
                    max: 500,
                }),
                mem_offset_mhz: clocks.then_some(RangeS32 {
                    min: -2000,
                    max: 2000,
                }),
            })
            .collect();
        MachineContext {
            id,
            host_id: 1_000_000 + id,
            gpus,
            energy_price_usd_per_kwh: self.rng.random_range(0.0..0.40),
            clore_usd: self.rng.random_range(0.005..0.10),
            min_bid: self.rng.random_range(0..10 * UNITS_PER_CLORE),
            billing_interval_s: 60,
            reliability: self.rng.random_range(0.5..=1.0),
            running: None,
        }
    }

    /// `count` bids for `machine`, each with in-range settings on every GPU; when
    /// `count > 0` the machine is marked as running one of them.
    pub fn bids(&mut self, machine: &mut MachineContext, count: usize) -> Vec<CandidateBid> {
        let bids: Vec<CandidateBid> = (0..count).map(|_| self.bid(machine)).collect();
        machine.running = if bids.is_empty() {
            None
        } else {
            let pick = self.rng.random_range(0..bids.len());
            Some(RunningBid {
                bid_id: bids[pick].id,
                owner_id: bids[pick].owner_id,
                price_per_day: bids[pick].price_per_day,
                total_power_limit_w: Some(bids[pick].total_power_limit_w),
                running_for_s: self.rng.random_range(0..86_400),
            })
        };
        bids
    }

    fn bid(&mut self, machine: &MachineContext) -> CandidateBid {
        let id = self.next_bid_id;
        self.next_bid_id += 1;
        let oc: Vec<GpuOc> = machine
            .gpus
            .iter()
            .map(|gpu| GpuOc {
                power_limit_w: self
                    .rng
                    .random_range(gpu.power_limit_w.min..=gpu.power_limit_w.max),
                core_lock_mhz: gpu
                    .core_lock_mhz
                    .filter(|_| self.rng.random_bool(0.3))
                    .map(|r| self.rng.random_range(r.min..=r.max)),
                mem_lock_mhz: None,
                core_offset_mhz: gpu
                    .core_offset_mhz
                    .filter(|_| self.rng.random_bool(0.3))
                    .map(|r| self.rng.random_range(r.min..=r.max)),
                mem_offset_mhz: None,
            })
            .collect();
        let total_power_limit_w = oc.iter().map(|o| o.power_limit_w).sum();
        CandidateBid {
            id,
            owner_id: self.rng.random_range(1..500),
            price_per_day: self
                .rng
                .random_range(UNITS_PER_CLORE / 100..2_000 * UNITS_PER_CLORE),
            oc,
            total_power_limit_w,
            created_at: 1_790_000_000 + id,
            image: format!("registry.example/team{}/trainer:v{}", id % 7, id % 3),
            env_keys: vec!["MODEL".into(), "EPOCHS".into()],
        }
    }
}
