//! The wire contract between the agent and the server: the heartbeat the agent sends
//! (inventory, telemetry, observed state) and the desired state the server answers.
//!
//! Both sides use these types, so they cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bid::BidId;
use crate::context::GpuOc;

/// `POST /api/v1/agent/heartbeat`: what an agent reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The GPU control and the container runtime are usable.
    pub working: bool,
    /// The bid whose workload runs now with its settings applied, if any.
    pub running_bid: Option<BidId>,
    /// The running bid's settings were applied and read back.
    #[serde(default)]
    pub applied: bool,
    /// Measured power per GPU, W.
    #[serde(default)]
    pub measured_power_w: Vec<u32>,
    /// Settings in force per GPU, as read back from the driver where it can be.
    #[serde(default)]
    pub applied_settings: Vec<GpuOc>,
    /// The workload's container as last observed.
    #[serde(default)]
    pub workload: Option<WorkloadStatus>,
    /// The agent's most recent failure, `None` once the last attempt succeeded.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Images present on the machine.
    #[serde(default)]
    pub cached_images: Vec<String>,
    /// Inventory: the GPUs as the driver reports them, in index order.
    #[serde(default)]
    pub gpus: Option<Vec<InventoryGpu>>,
    /// Why the workload the server asked for does not run, if it does not.
    #[serde(default)]
    pub unserved: Option<Unserved>,
    /// The host's CPU, memory and CUDA version, as the agent reads them.
    #[serde(default)]
    pub host: Option<HostInventory>,
    /// Per GPU, which of the running bid's settings were read back and confirmed.
    #[serde(default)]
    pub verification: Vec<SettingsCheck>,
    /// The host's background job, while the agent runs it (or tried to).
    #[serde(default)]
    pub background: Option<BackgroundStatus>,
}

/// The host's background job as the agent last observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackgroundStatus {
    /// The job's revision ([`crate::background::BackgroundJob::revision`]).
    pub revision: String,
    /// Created, running or exited.
    pub state: ContainerState,
    /// Its settings were applied and read back.
    #[serde(default)]
    pub applied: bool,
    /// Exit code once exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
}

/// Longest background revision an agent may report, in bytes.
pub const MAX_REVISION_BYTES: usize = 64;

/// What the agent reads about the server it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostInventory {
    /// CPU model.
    pub cpu: String,
    /// Physical cores.
    pub cores: u32,
    /// Hardware threads.
    pub threads: u32,
    /// Memory in GiB.
    pub ram_gib: u32,
    /// Highest CUDA version the driver supports, e.g. "12.4" (empty when unknown).
    pub cuda: String,
}

/// One setting's read-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The bid did not ask for it.
    NotRequested,
    /// Read back and equal to what was set.
    Verified,
    /// Set, but the driver offers no way to read it back (or reported another value at
    /// this moment, e.g. a locked clock on an idle card).
    Unverified,
}

/// Which of a GPU's settings were confirmed by reading them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SettingsCheck {
    /// Power limit (always read back; a mismatch stops the workload).
    pub power_limit: Check,
    /// Locked core clock.
    pub core_lock: Check,
    /// Locked memory clock.
    pub mem_lock: Check,
    /// Core clock offset.
    pub core_offset: Check,
    /// Memory clock offset.
    pub mem_offset: Check,
    /// Why anything is unverified, for people.
    #[serde(default)]
    pub note: String,
}

/// The agent's account of why the assigned bid is not being served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Unserved {
    /// The bid the server assigned.
    pub bid: BidId,
    /// Why it does not run.
    pub reason: UnservedReason,
    /// The runtime's or driver's words, for people.
    #[serde(default)]
    pub detail: String,
}

/// Why an assigned bid does not run, each reason owned by the bid or by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UnservedReason {
    /// The bid's image is missing and cannot be pulled (bid's fault).
    ImageUnavailable,
    /// The bid's container exited (non-zero, OOM-killed, or at all) before the interval
    /// ended (bid's fault).
    ExitedEarly,
    /// The card refused the bid's settings although they are inside the published ranges
    /// (bid's fault).
    SettingsRefused,
    /// An NVML or driver error (host's fault).
    DriverError,
    /// The container runtime is down or failed to create or start the container (host's
    /// fault).
    RuntimeError,
    /// A GPU is missing or unreadable (host's fault).
    GpuLost,
}

/// Whose fault an unserved interval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The bid's: counts towards its suspension.
    Bid,
    /// The host's: never charged, never counted against the bid; lowers the machine's
    /// reliability.
    Host,
}

impl UnservedReason {
    /// Who is to blame.
    pub fn fault(self) -> Fault {
        match self {
            UnservedReason::ImageUnavailable
            | UnservedReason::ExitedEarly
            | UnservedReason::SettingsRefused => Fault::Bid,
            UnservedReason::DriverError
            | UnservedReason::RuntimeError
            | UnservedReason::GpuLost => Fault::Host,
        }
    }

    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            UnservedReason::ImageUnavailable => "the image is missing and cannot be pulled",
            UnservedReason::ExitedEarly => "the container exited before the interval ended",
            UnservedReason::SettingsRefused => "the card refused the bid's settings",
            UnservedReason::DriverError => "an NVML or driver error on the host",
            UnservedReason::RuntimeError => "the host's container runtime failed",
            UnservedReason::GpuLost => "a GPU of the host is lost",
        }
    }
}

/// Most images an agent may report as cached.
pub const MAX_CACHED_IMAGES: usize = 256;
/// Longest image reference an agent may report, in bytes.
pub const MAX_IMAGE_BYTES: usize = 512;
/// Most GPUs a machine has (registration allows 1 to 16).
pub const MAX_GPUS: usize = 16;
/// Longest error text an agent may report, in bytes.
pub const MAX_ERROR_BYTES: usize = 2048;
/// Longest model or uuid string in an inventory, in bytes.
pub const MAX_GPU_TEXT_BYTES: usize = 128;

impl Heartbeat {
    /// Checks the sizes of everything an agent writes into the machine's public record;
    /// returns the offending field and why.
    pub fn check_bounds(&self) -> Result<(), (&'static str, String)> {
        let too_many = |field, n: usize, max: usize| {
            Err((field, format!("{n} entries, at most {max} are accepted")))
        };
        if self.cached_images.len() > MAX_CACHED_IMAGES {
            return too_many("cached_images", self.cached_images.len(), MAX_CACHED_IMAGES);
        }
        if let Some(long) = self
            .cached_images
            .iter()
            .find(|i| i.len() > MAX_IMAGE_BYTES)
        {
            return Err((
                "cached_images",
                format!(
                    "an image reference of {} bytes, at most {MAX_IMAGE_BYTES}",
                    long.len()
                ),
            ));
        }
        if self.measured_power_w.len() > MAX_GPUS {
            return too_many("measured_power_w", self.measured_power_w.len(), MAX_GPUS);
        }
        if self.applied_settings.len() > MAX_GPUS {
            return too_many("applied_settings", self.applied_settings.len(), MAX_GPUS);
        }
        if self.verification.len() > MAX_GPUS {
            return too_many("verification", self.verification.len(), MAX_GPUS);
        }
        if self
            .verification
            .iter()
            .any(|v| v.note.len() > MAX_ERROR_BYTES)
        {
            return Err((
                "verification",
                format!("a note longer than {MAX_ERROR_BYTES} bytes"),
            ));
        }
        if self
            .background
            .as_ref()
            .is_some_and(|b| b.revision.len() > MAX_REVISION_BYTES)
        {
            return Err((
                "background.revision",
                format!("longer than {MAX_REVISION_BYTES} bytes"),
            ));
        }
        if let Some(h) = &self.host
            && (h.cpu.len() > MAX_GPU_TEXT_BYTES || h.cuda.len() > MAX_GPU_TEXT_BYTES)
        {
            return Err((
                "host",
                format!("a cpu or cuda longer than {MAX_GPU_TEXT_BYTES} bytes"),
            ));
        }
        if let Some(gpus) = &self.gpus {
            if gpus.len() > MAX_GPUS {
                return too_many("gpus", gpus.len(), MAX_GPUS);
            }
            if gpus
                .iter()
                .any(|g| g.model.len() > MAX_GPU_TEXT_BYTES || g.uuid.len() > MAX_GPU_TEXT_BYTES)
            {
                return Err((
                    "gpus",
                    format!("a model or uuid longer than {MAX_GPU_TEXT_BYTES} bytes"),
                ));
            }
        }
        if self
            .unserved
            .as_ref()
            .is_some_and(|u| u.detail.len() > MAX_ERROR_BYTES)
        {
            return Err((
                "unserved.detail",
                format!("longer than {MAX_ERROR_BYTES} bytes"),
            ));
        }
        if self
            .last_error
            .as_ref()
            .is_some_and(|e| e.len() > MAX_ERROR_BYTES)
        {
            return Err(("last_error", format!("longer than {MAX_ERROR_BYTES} bytes")));
        }
        Ok(())
    }
}

/// One GPU of the agent's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InventoryGpu {
    /// Model name.
    pub model: String,
    /// Driver uuid.
    pub uuid: String,
    /// Card minimum power limit, W.
    pub card_min_w: u32,
    /// Card maximum power limit, W.
    pub card_max_w: u32,
}

/// The state of a workload's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkloadStatus {
    /// The bid the workload belongs to.
    pub bid: BidId,
    /// Running or exited.
    pub state: ContainerState,
    /// Exit code once exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
}

/// Whether a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Created but not started yet.
    Created,
    /// Running.
    Running,
    /// Stopped, crashed or finished.
    Exited,
}

/// The server's answer: what the machine should run. Level-triggered: complete every time,
/// so an agent that missed answers converges from the latest one alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DesiredState {
    /// The interval this applies to.
    pub interval: Option<u64>,
    /// The workload to run, `None` to run nothing.
    pub workload: Option<Workload>,
    /// Images of the best-placed losing bids, to pull ahead of a possible switch.
    #[serde(default)]
    pub prepull: Vec<String>,
    /// The host's background job, to run while no workload is assigned (`None` whenever
    /// `workload` is set, and when the host has none).
    #[serde(default)]
    pub background: Option<crate::background::BackgroundJob>,
}

/// A workload the agent must run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Workload {
    /// The bid.
    pub bid: BidId,
    /// Container image.
    pub image: String,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// Per-GPU settings.
    pub oc: Vec<GpuOc>,
}
