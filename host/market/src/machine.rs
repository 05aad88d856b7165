//! Machines, their GPUs and what their agent reports.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::background::{BackgroundJob, BackgroundRequest};
use crate::context::{GpuSlot, MachineContext, RangeU32, RunningBid};
use crate::economics::{UNITS_PER_CLORE, energy_floor_units, nano_usd};
use crate::gpu_ranges::GpuRangeTable;
use crate::money::Amount;
use crate::params::MarketParams;

/// Highest electricity price a host may declare, USD per kWh.
pub const MAX_ENERGY_PRICE_USD_PER_KWH: f64 = 10.0;

/// Checks a host's electricity price: a number from 0 to
/// [`MAX_ENERGY_PRICE_USD_PER_KWH`] USD per kWh with at most 9 decimal places.
pub fn check_energy_price(usd_per_kwh: f64) -> Result<(), String> {
    let in_range =
        usd_per_kwh.is_finite() && (0.0..=MAX_ENERGY_PRICE_USD_PER_KWH).contains(&usd_per_kwh);
    if !in_range {
        return Err(format!(
            "{usd_per_kwh} must be a number from 0 to {MAX_ENERGY_PRICE_USD_PER_KWH} USD per kWh"
        ));
    }
    match nano_usd(usd_per_kwh) {
        Some(nano) if (nano as f64 / 1e9 - usd_per_kwh).abs() <= 1e-12 => Ok(()),
        _ => Err(format!("{usd_per_kwh} has more than 9 decimal places")),
    }
}

/// A machine id.
pub type MachineId = u64;

/// One GPU of a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineFacts {
    /// CPU model.
    pub cpu: String,
    /// RAM in GiB.
    pub ram_gib: u32,
    /// CUDA version the driver supports.
    pub cuda: String,
    /// ISO country code.
    pub country: String,
    /// Physical CPU cores, as the agent reads them (0 = unknown).
    pub cores: u32,
    /// CPU threads, as the agent reads them (0 = unknown).
    pub threads: u32,
}

/// What the machine's agent last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Per GPU, which of the running bid's settings the agent read back and confirmed,
    /// and which it could not verify.
    pub verification: Vec<crate::agent_protocol::SettingsCheck>,
    /// The host's background job as last observed, while the agent runs it.
    pub background: Option<crate::agent_protocol::BackgroundStatus>,
}

/// A machine on the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The host's background job, run while no bid is assigned (`None`: the machine idles).
    pub background: Option<BackgroundJob>,
    /// What the background job earns the host per day, declared by the host: a floor of
    /// the machine's minimum bid (zero when not declared).
    pub background_earnings: Amount,
    /// The host set each GPU's ceiling itself; otherwise the ceilings follow the
    /// background job's power limits (the card maximum without one).
    pub explicit_ceilings: bool,
}

impl Machine {
    /// The energy cost of a day at `power_w` watts on this machine, in CLORE at the market
    /// rate, rounded up to a base unit, computed in integers
    /// ([`energy_floor_units`]); an unusable rate makes it unreachable.
    pub fn energy_floor(&self, power_w: u64, params: &MarketParams) -> Amount {
        Amount(
            energy_floor_units(power_w, self.energy_price_usd_per_kwh, params.clore_usd)
                .unwrap_or(u64::MAX),
        )
    }

    /// The machine's minimum bid: the largest of the reserve price, the energy floor at
    /// the GPUs' minimum power limits and the background job's declared earnings.
    pub fn min_bid(&self, params: &MarketParams) -> Amount {
        self.min_bid_basis(params).min_bid()
    }

    /// The three floors the minimum bid is the largest of, for people to see why it is
    /// where it is.
    pub fn min_bid_basis(&self, params: &MarketParams) -> MinBidBasis {
        let min_power: u64 = self.gpus.iter().map(|g| u64::from(g.card_min_w)).sum();
        MinBidBasis {
            reserve_price: self.reserve_price,
            energy_floor: self.energy_floor(min_power, params),
            background_earnings: self.background_earnings,
        }
    }

    /// The lowest price a bid with a total power limit of `total_pl_w` may offer: the
    /// largest of the reserve price, the background job's earnings and the energy cost of
    /// a day at the bid's own limits.
    pub fn bid_floor(&self, total_pl_w: u64, params: &MarketParams) -> Amount {
        self.energy_floor(total_pl_w, params)
            .max(self.reserve_price)
            .max(self.background_earnings)
    }

    /// Sets each GPU's ceiling from the background job's power limit on it (the card
    /// maximum without a job), unless the host set explicit ceilings; a ceiling always
    /// stays within the card's range. Called after every change of the job, the ceilings
    /// or the cards.
    pub fn follow_background(&mut self) {
        let job = self.background.as_ref();
        for (i, gpu) in self.gpus.iter_mut().enumerate() {
            if !self.explicit_ceilings {
                gpu.ceiling_w = job
                    .and_then(|j| j.oc.get(i))
                    .map_or(gpu.card_max_w, |oc| oc.power_limit_w);
            }
            gpu.ceiling_w = gpu
                .ceiling_w
                .clamp(gpu.card_min_w, gpu.card_max_w.max(gpu.card_min_w));
        }
    }

    /// What one watt of power limit adds to a bid's floor, in CLORE per day
    /// (`24 / 1000 × energy_price / clore_usd`), for display: clients compute their
    /// floor as `max(reserve_price, Σ pl × floor_per_watt)` rounded up to 10^-8.
    pub fn floor_per_watt(&self, params: &MarketParams) -> f64 {
        self.energy_floor(1_000_000, params).0 as f64 / 1e6 / UNITS_PER_CLORE as f64
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
        reliability: f64,
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
            reliability,
            running,
        }
    }
}

/// The floors a machine's minimum bid is the largest of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinBidBasis {
    /// The host's reserve price per day.
    pub reserve_price: Amount,
    /// The energy cost of a day at the cards' minimum power limits.
    pub energy_floor: Amount,
    /// What the host's background job earns per day, as the host declared it.
    pub background_earnings: Amount,
}

impl MinBidBasis {
    /// The minimum bid: the largest floor.
    pub fn min_bid(&self) -> Amount {
        self.reserve_price
            .max(self.energy_floor)
            .max(self.background_earnings)
    }

    /// Which floor sets the minimum bid: `reserve_price`, `energy_floor` or
    /// `background_earnings` (the first of these on a tie).
    pub fn binding(&self) -> &'static str {
        let min_bid = self.min_bid();
        if self.reserve_price == min_bid {
            "reserve_price"
        } else if self.energy_floor == min_bid {
            "energy_floor"
        } else {
            "background_earnings"
        }
    }
}

/// What a host may change on its own machine; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostChange {
    /// Electricity price, USD per kWh.
    pub energy_price_usd_per_kwh: Option<f64>,
    /// Reserve price per day.
    pub reserve_price: Option<Amount>,
    /// Power ceiling per GPU in W, one per GPU, each within the card's range;
    /// `Some(None)` drops explicit ceilings so they follow the background job again.
    pub ceilings_w: Option<Option<Vec<u32>>>,
    /// A new background job; `Some(None)` removes it.
    pub background: Option<Option<BackgroundRequest>>,
    /// What the background job earns per day, at most [`crate::admission::MAX_PRICE`].
    pub background_earnings: Option<Amount>,
}

/// A host change that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostChangeError {
    /// A machine setting: the field and why.
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The background job, refused as a bid's settings would be (its field is under
    /// `background_job.`).
    Background(crate::admission::Refusal),
}

impl HostChange {
    /// Applies the change to `machine`, or refuses it whole (the machine is unchanged
    /// then). Lowering a ceiling (or the background job's power limit the ceilings
    /// follow) below a live bid's limit does not touch the bid: the clearing finds it
    /// ineligible with the reason.
    pub fn apply(
        &self,
        machine: &mut Machine,
        table: &GpuRangeTable,
    ) -> Result<(), HostChangeError> {
        let fail = |field, reason| Err(HostChangeError::Invalid { field, reason });
        if let Some(price) = self.energy_price_usd_per_kwh
            && let Err(reason) = check_energy_price(price)
        {
            return fail("energy_price", reason);
        }
        if let Some(earnings) = self.background_earnings
            && earnings > crate::admission::MAX_PRICE
        {
            return fail(
                "background_earnings",
                format!(
                    "{earnings} CLORE/day is above the highest price a bid may offer, {}",
                    crate::admission::MAX_PRICE
                ),
            );
        }
        let background = match &self.background {
            None => None,
            Some(None) => Some(None),
            Some(Some(request)) => match request.admit(&machine.gpus, table) {
                Ok(job) => Some(Some(job)),
                Err(refusal) => return Err(HostChangeError::Background(refusal)),
            },
        };
        if let Some(Some(ceilings)) = &self.ceilings_w {
            if ceilings.len() != machine.gpus.len() {
                return fail(
                    "ceilings_w",
                    format!("{} values for {} GPUs", ceilings.len(), machine.gpus.len()),
                );
            }
            for (i, (gpu, ceiling)) in machine.gpus.iter().zip(ceilings).enumerate() {
                if !(gpu.card_min_w..=gpu.card_max_w).contains(ceiling) {
                    return fail(
                        "ceilings_w",
                        format!(
                            "gpu {i}: {ceiling} W is outside the card's [{}, {}]",
                            gpu.card_min_w, gpu.card_max_w
                        ),
                    );
                }
            }
            for (gpu, ceiling) in machine.gpus.iter_mut().zip(ceilings) {
                gpu.ceiling_w = *ceiling;
            }
        }
        match &self.ceilings_w {
            Some(Some(_)) => machine.explicit_ceilings = true,
            Some(None) => machine.explicit_ceilings = false,
            None => {}
        }
        if let Some(job) = background {
            machine.background = job;
        }
        if let Some(earnings) = self.background_earnings {
            machine.background_earnings = earnings;
        }
        machine.follow_background();
        if let Some(price) = self.energy_price_usd_per_kwh {
            machine.energy_price_usd_per_kwh = price;
        }
        if let Some(reserve) = self.reserve_price {
            machine.reserve_price = reserve;
        }
        Ok(())
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
            background: None,
            background_earnings: Amount::ZERO,
            explicit_ceilings: true,
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
    fn floors_are_exact_and_follow_the_bid_s_own_limits() {
        let params = MarketParams {
            clore_usd: 0.02,
            ..MarketParams::default()
        };
        let mut m = machine();
        m.energy_price_usd_per_kwh = 0.17;
        // 100 W at 0.17 USD/kWh and 0.02 USD/CLORE: 20.4 CLORE, exactly.
        assert_eq!(m.energy_floor(100, &params), Amount(2_040_000_000));
        // A bid at 4 × 300 W must cover 1200 W: 244.8 CLORE/day.
        assert_eq!(m.bid_floor(1200, &params), Amount(24_480_000_000));
        m.reserve_price = Amount::clore(300);
        assert_eq!(m.bid_floor(1200, &params), Amount::clore(300));
        assert!((m.floor_per_watt(&params) - 0.204).abs() < 1e-12);
        assert!(check_energy_price(0.17).is_ok());
        assert!(check_energy_price(10.0).is_ok());
        assert!(check_energy_price(10.000001).is_err());
        assert!(check_energy_price(1e308).is_err());
        assert!(check_energy_price(-0.1).is_err());
        assert!(check_energy_price(0.1234567891).is_err());
    }

    #[test]
    fn the_ceilings_and_the_plugins_context_follow_the_background_job() {
        let params = MarketParams {
            clore_usd: 0.0625,
            ..MarketParams::default()
        };
        let table = GpuRangeTable::defaults();
        let mut m = machine();
        m.explicit_ceilings = false;
        let job = |pl: u32| BackgroundRequest {
            image: "miner:1".into(),
            oc: vec![
                crate::bid::OcRequest {
                    pl: Some(pl),
                    ..Default::default()
                };
                4
            ],
            ..Default::default()
        };
        HostChange {
            background: Some(Some(job(350))),
            background_earnings: Some(Amount::clore(40)),
            ..HostChange::default()
        }
        .apply(&mut m, &table)
        .unwrap();
        let context = m.context(&table, &params, None, 1.0);
        assert_eq!(
            context.gpus[0].power_limit_w,
            RangeU32 { min: 150, max: 350 }
        );
        // 4 × 150 W costs 28.8 CLORE a day; the job earns 40.
        assert_eq!(context.min_bid, Amount::clore(40).0);
        assert_eq!(m.min_bid_basis(&params).binding(), "background_earnings");
        assert_eq!(m.bid_floor(600, &params), Amount::clore(40));
        // A refused job changes nothing.
        let before = m.clone();
        let refused = HostChange {
            background: Some(Some(job(451))),
            energy_price_usd_per_kwh: Some(0.2),
            ..HostChange::default()
        }
        .apply(&mut m, &table)
        .unwrap_err();
        assert!(
            matches!(&refused, HostChangeError::Background(r) if r.field == "background_job.oc[0].pl")
        );
        assert_eq!(m, before);
        // Explicit ceilings hold whatever the job; dropping them follows it again.
        HostChange {
            ceilings_w: Some(Some(vec![420; 4])),
            ..HostChange::default()
        }
        .apply(&mut m, &table)
        .unwrap();
        assert_eq!(m.gpus[2].power_limit_range().max, 420);
        HostChange {
            ceilings_w: Some(None),
            ..HostChange::default()
        }
        .apply(&mut m, &table)
        .unwrap();
        assert_eq!(m.gpus[2].power_limit_range().max, 350);
        HostChange {
            background: Some(None),
            ..HostChange::default()
        }
        .apply(&mut m, &table)
        .unwrap();
        assert_eq!(m.gpus[2].power_limit_range().max, 450);
    }

    #[test]
    fn the_power_range_never_exceeds_the_card() {
        let mut gpu = machine().gpus[0].clone();
        assert_eq!(gpu.power_limit_range(), RangeU32 { min: 150, max: 400 });
        gpu.ceiling_w = 999;
        assert_eq!(gpu.power_limit_range().max, 450);
    }
}
