//! Machines, their GPUs and what their agent reports.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::context::{GpuSlot, MachineContext, RangeU32, RunningBid};
use crate::economics::{UNITS_PER_CLORE, energy_cost_usd_per_day};
use crate::gpu_ranges::GpuRangeTable;
use crate::money::Amount;
use crate::params::MarketParams;

/// A machine id.
pub type MachineId = u64;

/// One GPU of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Model name as NVML reports it.
    pub model: String,
    /// NVML uuid.
    pub uuid: String,
    /// The card's minimum power limit in W (NVML constraint).
    pub card_min_w: u32,
    /// The card's maximum power limit in W (NVML constraint).
    pub card_max_w: u32,
    /// The host's ceiling in W; never above `card_max_w`.
    pub ceiling_w: u32,
}

impl Gpu {
    /// The power limits a bid may request: [card minimum, min(host ceiling, card maximum)].
    pub fn power_limit_range(&self) -> RangeU32 {
        RangeU32 {
            min: self.card_min_w,
            max: self.ceiling_w.min(self.card_max_w),
        }
    }
}

/// Facts about the machine shown to bidders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineFacts {
    /// CPU model.
    pub cpu: String,
    /// RAM in GiB.
    pub ram_gib: u32,
    /// CUDA version the driver supports.
    pub cuda: String,
    /// ISO country code.
    pub country: String,
}

/// What the machine's agent last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The agent heartbeats.
    pub online: bool,
    /// The agent reports the machine fit to run workloads.
    pub working: bool,
    /// Images present on the machine.
    pub cached_images: Vec<String>,
    /// Measured power per GPU in W.
    pub measured_power_w: Vec<u32>,
    /// The bid whose workload runs with its settings applied, as the agent reports it.
    pub running_bid: Option<crate::bid::BidId>,
    /// Settings in force per GPU, read back by the agent.
    pub applied_settings: Vec<crate::context::GpuOc>,
    /// The workload's container as last observed.
    pub workload: Option<crate::agent_protocol::WorkloadStatus>,
    /// The agent's most recent failure, if its last attempt failed.
    pub last_error: Option<String>,
}

/// A machine on the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Machine id.
    pub id: MachineId,
    /// The owning host account.
    pub host: AccountId,
    /// Facts for bidders.
    pub facts: MachineFacts,
    /// GPUs in order.
    pub gpus: Vec<Gpu>,
    /// The host's electricity price in USD per kWh.
    pub energy_price_usd_per_kwh: f64,
    /// The host's reserve price per day.
    pub reserve_price: Amount,
    /// Longest rental the host accepts, in seconds.
    pub max_rental_length_s: u64,
    /// The agent's last report.
    pub live: LiveState,
}

impl Machine {
    /// The larger of the reserve price and the energy floor: the energy cost of a day at
    /// the GPUs' minimum power limits, in CLORE at the market rate, rounded up to a unit.
    pub fn min_bid(&self, params: &MarketParams) -> Amount {
        let min_power: u32 = self.gpus.iter().map(|g| g.card_min_w).sum();
        let usd = energy_cost_usd_per_day(min_power, self.energy_price_usd_per_kwh);
        let floor = if params.clore_usd > 0.0 {
            let units = (usd / params.clore_usd * UNITS_PER_CLORE as f64).ceil();
            // `as` saturates: an absurd energy price gives an unreachable floor, not a wrap.
            Amount(units as u64)
        } else {
            Amount(u64::MAX)
        };
        floor.max(self.reserve_price)
    }

    /// Whether the machine can run a workload this interval.
    pub fn available(&self) -> bool {
        self.live.online && self.live.working
    }

    /// The machine as plugins see it.
    pub fn context(
        &self,
        table: &GpuRangeTable,
        params: &MarketParams,
        running: Option<RunningBid>,
    ) -> MachineContext {
        MachineContext {
            id: self.id,
            host_id: self.host,
            gpus: self
                .gpus
                .iter()
                .enumerate()
                .map(|(index, gpu)| {
                    let clocks = table.get(&gpu.model);
                    GpuSlot {
                        index: index as u32,
                        model: gpu.model.clone(),
                        power_limit_w: gpu.power_limit_range(),
                        core_lock_mhz: clocks.and_then(|c| c.core_lock_range()),
                        mem_lock_mhz: clocks.and_then(|c| c.mem_lock_range()),
                        core_offset_mhz: clocks.map(|c| c.core_offset),
                        mem_offset_mhz: clocks.map(|c| c.mem_offset),
                    }
                })
                .collect(),
            energy_price_usd_per_kwh: self.energy_price_usd_per_kwh,
            clore_usd: params.clore_usd,
            min_bid: self.min_bid(params).0,
            billing_interval_s: params.billing_interval_s,
            running,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 4-GPU RTX 4090 machine (150–450 W each, host ceiling 400 W) of host 10.
    pub(crate) fn machine() -> Machine {
        Machine {
            id: 1,
            host: 10,
            facts: MachineFacts::default(),
            gpus: (0..4)
                .map(|i| Gpu {
                    model: "NVIDIA GeForce RTX 4090".into(),
                    uuid: format!("GPU-{i}"),
                    card_min_w: 150,
                    card_max_w: 450,
                    ceiling_w: 400,
                })
                .collect(),
            energy_price_usd_per_kwh: 0.125,
            reserve_price: Amount::ZERO,
            max_rental_length_s: 30 * 86_400,
            live: LiveState {
                online: true,
                working: true,
                ..LiveState::default()
            },
        }
    }

    #[test]
    fn min_bid_is_the_larger_of_reserve_and_energy_floor() {
        let params = MarketParams {
            clore_usd: 0.0625,
            ..MarketParams::default()
        };
        let mut m = machine();
        // 4 × 150 W = 600 W → 14.4 kWh/day × 0.125 = 1.8 USD = 28.8 CLORE.
        assert_eq!(m.min_bid(&params), Amount(2_880_000_000));
        m.reserve_price = Amount::clore(50);
        assert_eq!(m.min_bid(&params), Amount::clore(50));
    }

    #[test]
    fn the_power_range_never_exceeds_the_card() {
        let mut gpu = machine().gpus[0].clone();
        assert_eq!(gpu.power_limit_range(), RangeU32 { min: 150, max: 400 });
        gpu.ceiling_w = 999;
        assert_eq!(gpu.power_limit_range().max, 450);
    }
}
