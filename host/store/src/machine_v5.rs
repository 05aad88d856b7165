//! A machine record as schema versions 3 to 5 (sled) and 1 to 2 (PostgreSQL) stored it,
//! before the host's background job: read by the migrations that rewrite each record in
//! the current layout.

use gigaspot_market::agent_protocol::{SettingsCheck, WorkloadStatus};
use gigaspot_market::context::GpuOc;
use gigaspot_market::machine::{Gpu, LiveState, Machine, MachineFacts};
use gigaspot_market::money::Amount;
use serde::{Deserialize, Serialize};

/// The earlier machine record (postcard writes a struct as its fields in order).
#[derive(Serialize, Deserialize)]
pub(crate) struct MachineV5 {
    pub(crate) id: u64,
    pub(crate) host: u64,
    pub(crate) facts: MachineFacts,
    pub(crate) gpus: Vec<Gpu>,
    pub(crate) energy_price_usd_per_kwh: f64,
    pub(crate) reserve_price: Amount,
    pub(crate) max_rental_length_s: u64,
    pub(crate) live: LiveV5,
}

/// The earlier live state, without the background job's status.
#[derive(Serialize, Deserialize)]
pub(crate) struct LiveV5 {
    pub(crate) online: bool,
    pub(crate) working: bool,
    pub(crate) cached_images: Vec<String>,
    pub(crate) measured_power_w: Vec<u32>,
    pub(crate) running_bid: Option<u64>,
    pub(crate) applied_settings: Vec<GpuOc>,
    pub(crate) workload: Option<WorkloadStatus>,
    pub(crate) last_error: Option<String>,
    pub(crate) verification: Vec<SettingsCheck>,
}

impl MachineV5 {
    /// The record in the current layout: no background job, no declared earnings, and
    /// the ceilings explicit where the host lowered any below its card's maximum (a
    /// ceiling left at the maximum follows a background job the host sets later).
    pub(crate) fn upgrade(self) -> Machine {
        let explicit_ceilings = self.gpus.iter().any(|g| g.ceiling_w != g.card_max_w);
        Machine {
            id: self.id,
            host: self.host,
            facts: self.facts,
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
                verification: self.live.verification,
                background: None,
            },
            background: None,
            background_earnings: Amount::ZERO,
            explicit_ceilings,
        }
    }
}
