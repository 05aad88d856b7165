//! Control of a machine's GPUs: the trait the reconciler drives, and applying a bid's
//! settings so that they are verified or not applied at all.

use gigaspot_market::agent_protocol::{Check, SettingsCheck};
use gigaspot_market::context::GpuOc;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Position on the machine.
    pub index: u32,
    /// Model name.
    pub model: String,
    /// Driver uuid.
    pub uuid: String,
    /// Smallest power limit the card accepts, W.
    pub min_power_w: u32,
    /// Largest power limit the card accepts, W.
    pub max_power_w: u32,
    /// The card's default power limit, W.
    pub default_power_w: u32,
}

/// The machine's GPUs and driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Driver version.
    pub driver_version: String,
    /// Highest CUDA version the driver supports, e.g. "12.4".
    pub cuda_version: String,
    /// GPUs in index order.
    pub gpus: Vec<GpuInfo>,
}

/// Why a GPU operation failed. Every failure leaves the workload stopped (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GpuError {
    /// The GPU library cannot be used at all (no driver, no permission to load it).
    #[error("GPU control is unavailable: {0}")]
    Unavailable(String),
    /// No GPU with this index.
    #[error("no GPU {0}")]
    NoSuchGpu(u32),
    /// A value outside what the card accepts; nothing was changed.
    #[error("gpu {gpu}: {what} {value} is outside the card's range [{min}, {max}]")]
    OutOfRange {
        /// The GPU.
        gpu: u32,
        /// Which setting.
        what: &'static str,
        /// The requested value.
        value: i64,
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// The driver or card does not support the setting.
    #[error("gpu {gpu}: {what} is not supported by this driver or card")]
    Unsupported {
        /// The GPU.
        gpu: u32,
        /// Which setting.
        what: &'static str,
    },
    /// The driver refused or failed an operation.
    #[error("gpu {gpu}: {operation} failed: {message}")]
    Driver {
        /// The GPU.
        gpu: u32,
        /// The operation.
        operation: &'static str,
        /// The driver's message.
        message: String,
    },
    /// A setting read back differs from what was set.
    #[error("gpu {gpu}: {what} reads back {read}, expected {expected}")]
    NotVerified {
        /// The GPU.
        gpu: u32,
        /// Which setting.
        what: &'static str,
        /// What was set.
        expected: i64,
        /// What was read.
        read: i64,
    },
}

/// Operations on a machine's GPUs. Implemented with NVML ([`crate::nvml_backend`]) and by
/// the simulated backend ([`crate::simulated_backend`]).
pub trait GpuControl: Send {
    /// The GPUs and driver.
    fn inventory(&self) -> Result<Inventory, GpuError>;
    /// Sets a GPU's power limit in W.
    fn set_power_limit(&mut self, gpu: u32, watts: u32) -> Result<(), GpuError>;
    /// Reads a GPU's power limit back, W.
    fn power_limit(&self, gpu: u32) -> Result<u32, GpuError>;
    /// Locks the core clock at `mhz`.
    fn lock_core_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError>;
    /// Locks the memory clock at `mhz`.
    fn lock_mem_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError>;
    /// Sets the core clock offset.
    fn set_core_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError>;
    /// Sets the memory clock offset.
    fn set_mem_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError>;
    /// Resets clocks, offsets and the power limit to the card's defaults.
    fn reset(&mut self, gpu: u32) -> Result<(), GpuError>;
    /// Measured power draw, W.
    fn power_usage(&self, gpu: u32) -> Result<u32, GpuError>;
    /// Current core and memory clocks in MHz, where the backend measures them.
    fn clocks(&self, _gpu: u32) -> Result<Option<(u32, u32)>, GpuError> {
        Ok(None)
    }
    /// The clock settings in force as the driver reports them, where it can.
    fn read_settings(&self, _gpu: u32) -> Result<ReadSettings, GpuError> {
        Ok(ReadSettings::default())
    }
}

/// What a backend can read back of a GPU's clock settings; `None` = cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSettings {
    /// The core clock: the locked value where the backend knows it, else the current
    /// clock (equal to a lock while the lock holds).
    pub core_clock_mhz: Option<u32>,
    /// The memory clock, likewise.
    pub mem_clock_mhz: Option<u32>,
    /// The core clock offset.
    pub core_offset_mhz: Option<i32>,
    /// The memory clock offset.
    pub mem_offset_mhz: Option<i32>,
}

/// Which of `wanted` the read-back confirms: the power limit `power_limit_w` as read, and
/// the clocks and offsets in `read`. A value that cannot be read, or reads differently
/// (a locked clock on an idle card may), is unverified, with a note saying which.
pub fn check_settings(wanted: &GpuOc, power_limit_w: u32, read: &ReadSettings) -> SettingsCheck {
    let mut notes = Vec::new();
    let mut check = |what: &str, want: Option<i64>, got: Option<i64>| match (want, got) {
        (None, _) => Check::NotRequested,
        (Some(w), Some(g)) if w == g => Check::Verified,
        (Some(w), Some(g)) => {
            notes.push(format!("{what} reads {g}, set {w}"));
            Check::Unverified
        }
        (Some(_), None) => {
            notes.push(format!("{what} cannot be read back on this driver"));
            Check::Unverified
        }
    };
    let power_limit = check(
        "power limit",
        Some(wanted.power_limit_w.into()),
        Some(power_limit_w.into()),
    );
    let core_lock = check(
        "core clock",
        wanted.core_lock_mhz.map(i64::from),
        read.core_clock_mhz.map(i64::from),
    );
    let mem_lock = check(
        "memory clock",
        wanted.mem_lock_mhz.map(i64::from),
        read.mem_clock_mhz.map(i64::from),
    );
    // An offset of 0 is the default the reset left.
    let core_offset = check(
        "core clock offset",
        wanted.core_offset_mhz.filter(|&o| o != 0).map(i64::from),
        read.core_offset_mhz.map(i64::from),
    );
    let mem_offset = check(
        "memory clock offset",
        wanted.mem_offset_mhz.filter(|&o| o != 0).map(i64::from),
        read.mem_offset_mhz.map(i64::from),
    );
    SettingsCheck {
        power_limit,
        core_lock,
        mem_lock,
        core_offset,
        mem_offset,
        note: notes.join("; "),
    }
}

/// Applies a bid's per-GPU settings: checks every value against the cards first (nothing
/// changes when one is out of range), resets each GPU, sets the new values and reads the
/// power limits back. On any failure every GPU is reset again and the error returned: a
/// workload whose settings are not verified must not start.
pub fn apply(gpus: &mut dyn GpuControl, oc: &[GpuOc]) -> Result<(), GpuError> {
    let inventory = gpus.inventory()?;
    if oc.len() != inventory.gpus.len() {
        return Err(GpuError::NoSuchGpu(
            oc.len().min(inventory.gpus.len()) as u32
        ));
    }
    for (settings, card) in oc.iter().zip(&inventory.gpus) {
        let pl = settings.power_limit_w;
        if !(card.min_power_w..=card.max_power_w).contains(&pl) {
            return Err(GpuError::OutOfRange {
                gpu: card.index,
                what: "power limit (W)",
                value: pl.into(),
                min: card.min_power_w.into(),
                max: card.max_power_w.into(),
            });
        }
    }
    let result = (|| {
        for (settings, card) in oc.iter().zip(&inventory.gpus) {
            let gpu = card.index;
            gpus.reset(gpu)?;
            gpus.set_power_limit(gpu, settings.power_limit_w)?;
            if let Some(mhz) = settings.core_lock_mhz {
                gpus.lock_core_clock(gpu, mhz)?;
            }
            if let Some(mhz) = settings.mem_lock_mhz {
                gpus.lock_mem_clock(gpu, mhz)?;
            }
            // An offset of 0 is what the reset left: asking the driver again would fail
            // on cards without offsets (the H100 answers an internal error).
            if let Some(mhz) = settings.core_offset_mhz.filter(|&mhz| mhz != 0) {
                gpus.set_core_offset(gpu, mhz)?;
            }
            if let Some(mhz) = settings.mem_offset_mhz.filter(|&mhz| mhz != 0) {
                gpus.set_mem_offset(gpu, mhz)?;
            }
            let read = gpus.power_limit(gpu)?;
            if read != settings.power_limit_w {
                return Err(GpuError::NotVerified {
                    gpu,
                    what: "power limit (W)",
                    expected: settings.power_limit_w.into(),
                    read: read.into(),
                });
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for card in &inventory.gpus {
            // Best effort: the error that matters is the one being returned.
            let _ = gpus.reset(card.index);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_that_cannot_be_read_back_is_reported_unverified() {
        let wanted = GpuOc {
            power_limit_w: 300,
            core_lock_mhz: Some(1410),
            mem_lock_mhz: None,
            core_offset_mhz: Some(100),
            mem_offset_mhz: Some(0),
        };
        // NVML on an idle card: the current clock is not the lock; offsets unreadable.
        let read = ReadSettings {
            core_clock_mhz: Some(345),
            mem_clock_mhz: Some(2619),
            core_offset_mhz: None,
            mem_offset_mhz: None,
        };
        let check = check_settings(&wanted, 300, &read);
        assert_eq!(check.power_limit, Check::Verified);
        assert_eq!(check.core_lock, Check::Unverified);
        assert_eq!(check.mem_lock, Check::NotRequested);
        assert_eq!(check.core_offset, Check::Unverified);
        assert_eq!(
            check.mem_offset,
            Check::NotRequested,
            "0 is the reset default"
        );
        assert!(
            check.note.contains("core clock reads 345, set 1410"),
            "{}",
            check.note
        );
        assert!(
            check.note.contains("core clock offset cannot be read back"),
            "{}",
            check.note
        );
    }
}
