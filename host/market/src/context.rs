//! What a strategy or validator is told about a machine and its candidate bids.
//!
//! These types carry everything the newest plugin contract (`wit/since_v0.3.0/`) hands a
//! plugin, so that native and WebAssembly plugins see exactly the same input; the runtime
//! lays them out for each contract version.

use serde::{Deserialize, Serialize};

/// An inclusive range of unsigned values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeU32 {
    /// Smallest allowed value.
    pub min: u32,
    /// Largest allowed value.
    pub max: u32,
}

/// An inclusive range of signed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RangeS32 {
    /// Smallest allowed value.
    pub min: i32,
    /// Largest allowed value.
    pub max: i32,
}

/// One GPU of a machine with the ranges a bid must respect on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuSlot {
    /// Position in the machine, 0-based.
    pub index: u32,
    /// Model name as NVML reports it.
    pub model: String,
    /// Allowed power limit in W: [card minimum, host ceiling].
    pub power_limit_w: RangeU32,
    /// Allowed locked core clock in MHz; `None` when locks are not allowed.
    pub core_lock_mhz: Option<RangeU32>,
    /// Allowed locked memory clock in MHz; `None` when locks are not allowed.
    pub mem_lock_mhz: Option<RangeU32>,
    /// Allowed core clock offset in MHz; `None` when offsets are not allowed.
    pub core_offset_mhz: Option<RangeS32>,
    /// Allowed memory clock offset in MHz; `None` when offsets are not allowed.
    pub mem_offset_mhz: Option<RangeS32>,
}

/// The bid a machine runs now (the winner of the interval before), its terms and for how
/// long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningBid {
    /// Id of the running bid.
    pub bid_id: u64,
    /// Account id of its owner.
    pub owner_id: u64,
    /// The price it pays now (its price when it last won), in CLORE base units per day.
    pub price_per_day: u64,
    /// Its total power limit in W; `None` when the bid is no longer live.
    pub total_power_limit_w: Option<u32>,
    /// Seconds it has run without interruption.
    pub running_for_s: u64,
}

/// The machine being cleared, as plugins see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MachineContext {
    /// Machine id.
    pub id: u64,
    /// Account id of the owning host.
    pub host_id: u64,
    /// GPUs in order.
    pub gpus: Vec<GpuSlot>,
    /// Host's electricity price in USD per kWh.
    pub energy_price_usd_per_kwh: f64,
    /// Price of one CLORE in USD.
    pub clore_usd: f64,
    /// Minimum bid in CLORE base units per day.
    pub min_bid: u64,
    /// Billing interval in seconds.
    pub billing_interval_s: u32,
    /// Intervals served ÷ intervals assigned over the reliability window (1.0 when none
    /// was assigned).
    pub reliability: f64,
    /// The bid running now, if any.
    pub running: Option<RunningBid>,
}

/// A bid's settings for one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuOc {
    /// Power limit in W.
    pub power_limit_w: u32,
    /// Locked core clock in MHz.
    pub core_lock_mhz: Option<u32>,
    /// Locked memory clock in MHz.
    pub mem_lock_mhz: Option<u32>,
    /// Core clock offset in MHz.
    pub core_offset_mhz: Option<i32>,
    /// Memory clock offset in MHz.
    pub mem_offset_mhz: Option<i32>,
}

/// A bid that passed admission and is a candidate for the machine this interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CandidateBid {
    /// Bid id; older bids have lower ids.
    pub id: u64,
    /// Bidder's account id.
    pub owner_id: u64,
    /// Price in CLORE base units per day.
    pub price_per_day: u64,
    /// One entry per GPU, in the machine's GPU order.
    pub oc: Vec<GpuOc>,
    /// Sum of the per-GPU power limits in W.
    pub total_power_limit_w: u32,
    /// Creation time in unix seconds.
    pub created_at: u64,
    /// Container image reference.
    pub image: String,
    /// Names of the environment variables the bid sets.
    pub env_keys: Vec<String>,
}
