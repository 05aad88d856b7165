//! Bids: what a client offers for a machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::context::{CandidateBid, GpuOc};
use crate::machine::MachineId;
use crate::money::Amount;

/// A bid id; older bids have lower ids.
pub type BidId = u64;

/// Where a bid is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BidState {
    /// Competes every interval until cancelled or expired.
    Active,
    /// Cancelled by its owner.
    Cancelled,
    /// Past its expiry time.
    Expired,
    /// Taken out of clearing after intervals it could not be served by its own fault;
    /// an edit by its owner puts it back (see `suspension`).
    Suspended,
}

/// A client's settings request for one GPU, as received: the power limit may be missing
/// (which admission refuses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OcRequest {
    /// Power limit in W (mandatory).
    pub pl: Option<u32>,
    /// Locked core clock in MHz.
    pub core_lock: Option<u32>,
    /// Locked memory clock in MHz.
    pub mem_lock: Option<u32>,
    /// Core clock offset in MHz.
    pub core_offset: Option<i32>,
    /// Memory clock offset in MHz.
    pub mem_offset: Option<i32>,
}

impl From<GpuOc> for OcRequest {
    /// The request that admits exactly these settings again.
    fn from(o: GpuOc) -> Self {
        OcRequest {
            pl: Some(o.power_limit_w),
            core_lock: o.core_lock_mhz,
            mem_lock: o.mem_lock_mhz,
            core_offset: o.core_offset_mhz,
            mem_offset: o.mem_offset_mhz,
        }
    }
}

/// What a client asks for when placing or editing a bid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidTerms {
    /// The machine bid on.
    pub machine: MachineId,
    /// Price per day.
    pub price_per_day: Amount,
    /// Container image reference.
    pub image: String,
    /// Environment of the container.
    pub env: BTreeMap<String, String>,
    /// One entry per GPU of the machine.
    pub oc: Vec<OcRequest>,
    /// How long the bid stays active.
    pub lifetime: Lifetime,
}

/// What an owner changes in an edit: price and settings always, image and environment
/// when given. Any edit of a suspended bid puts it back in the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidChange {
    /// The new price per day.
    pub price_per_day: Amount,
    /// The new settings, one per GPU.
    pub oc: Vec<OcRequest>,
    /// A new image, if any.
    pub image: Option<String>,
    /// A new environment, if any.
    pub env: Option<BTreeMap<String, String>>,
}

/// How long a bid asks to stay active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Lifetime {
    /// The client asked for this many seconds: refused when 0 or longer than the
    /// machine's maximum rental length or 20 days.
    Explicit(u64),
    /// The surface's default (seconds): clamped to the machine's maximum, never refused.
    Default(u64),
}

/// A bid on the market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bid {
    /// Bid id.
    pub id: BidId,
    /// The bidder.
    pub owner: AccountId,
    /// The machine bid on.
    pub machine: MachineId,
    /// Price per day.
    pub price_per_day: Amount,
    /// Container image reference.
    pub image: String,
    /// Environment of the container.
    pub env: BTreeMap<String, String>,
    /// Per-GPU settings, one per GPU of the machine.
    pub oc: Vec<GpuOc>,
    /// Creation time, unix seconds.
    pub created_at: u64,
    /// Expiry time, unix seconds.
    pub expires_at: u64,
    /// Life-cycle state.
    pub state: BidState,
}

impl Bid {
    /// Sum of the per-GPU power limits in W.
    pub fn total_power_limit_w(&self) -> u32 {
        self.oc
            .iter()
            .fold(0u32, |sum, oc| sum.saturating_add(oc.power_limit_w))
    }

    /// Whether the bid competes at `now`: active and not yet expired.
    pub fn is_live(&self, now: u64) -> bool {
        self.state == BidState::Active && now < self.expires_at
    }

    /// The bid's state at `now`: an active bid past its lifetime is expired, whether or
    /// not the store has written that yet.
    pub fn state_at(&self, now: u64) -> BidState {
        match self.state {
            BidState::Active | BidState::Suspended if now >= self.expires_at => BidState::Expired,
            state => state,
        }
    }

    /// Whether its owner may still edit or cancel it at `now`: only an active bid within
    /// its lifetime; cancelled and expired bids are final.
    pub fn check_changeable(&self, now: u64) -> Result<(), String> {
        match self.state_at(now) {
            BidState::Active | BidState::Suspended => Ok(()),
            BidState::Cancelled => Err(format!("bid {} is cancelled", self.id)),
            BidState::Expired => Err(format!(
                "bid {} expired at {} and can no longer be changed",
                self.id, self.expires_at
            )),
        }
    }

    /// The bid as plugins see it.
    pub fn candidate(&self) -> CandidateBid {
        CandidateBid {
            id: self.id,
            owner_id: self.owner,
            price_per_day: self.price_per_day.0,
            oc: self.oc.clone(),
            total_power_limit_w: self.total_power_limit_w(),
            created_at: self.created_at,
            image: self.image.clone(),
            env_keys: self.env.keys().cloned().collect(),
        }
    }
}
