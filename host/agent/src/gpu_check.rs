//! `gigaspot-agent gpu-check`: exercises the GPU path a workload start takes, on the real
//! cards, and reports every step: the refusal of an out-of-range limit, setting a power
//! limit and clock locks, reading them back, and the reset.

use gigaspot_market::context::GpuOc;
use serde::Serialize;

use crate::gpu_control::{GpuControl, Inventory, apply};

/// What to set on every GPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckRequest {
    /// Power limit in W; default: three quarters of the card's default, within its range.
    pub power_limit_w: Option<u32>,
    /// Locked core clock, MHz.
    pub core_lock_mhz: Option<u32>,
    /// Locked memory clock, MHz.
    pub mem_lock_mhz: Option<u32>,
    /// Core clock offset, MHz.
    pub core_offset_mhz: Option<i32>,
}

/// The GPUs' readings at one step.
#[derive(Debug, Serialize)]
pub struct Reading {
    /// Power limit read back per GPU, W.
    pub power_limit_w: Vec<Result<u32, String>>,
    /// Power draw per GPU, W.
    pub power_usage_w: Vec<Result<u32, String>>,
    /// Current (core, memory) clocks per GPU, MHz, where measured.
    pub clocks_mhz: Vec<Result<Option<(u32, u32)>, String>>,
}

/// Every step's outcome.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// The cards.
    pub inventory: Inventory,
    /// Before anything was changed.
    pub before: Reading,
    /// Applying a limit one watt above the card's maximum: must be refused.
    pub out_of_range: Result<(), String>,
    /// After the refusal: must equal `before`'s limits.
    pub after_refusal: Reading,
    /// The settings asked for.
    pub requested: Vec<GpuOc>,
    /// Applying them (set, lock, read back).
    pub apply: Result<(), String>,
    /// With them in force.
    pub applied: Reading,
    /// Resetting every GPU.
    pub reset: Result<(), String>,
    /// After the reset.
    pub after_reset: Reading,
    /// Everything behaved: the refusal came, the settings read back, the reset restored
    /// the default limits.
    pub passed: bool,
}

fn read(gpus: &dyn GpuControl, count: u32) -> Reading {
    let s = |e: crate::gpu_control::GpuError| e.to_string();
    Reading {
        power_limit_w: (0..count).map(|g| gpus.power_limit(g).map_err(s)).collect(),
        power_usage_w: (0..count).map(|g| gpus.power_usage(g).map_err(s)).collect(),
        clocks_mhz: (0..count).map(|g| gpus.clocks(g).map_err(s)).collect(),
    }
}

/// Runs the check on `gpus`.
pub fn run(gpus: &mut dyn GpuControl, request: CheckRequest) -> Result<CheckReport, String> {
    let inventory = gpus.inventory().map_err(|e| e.to_string())?;
    let count = inventory.gpus.len() as u32;
    let before = read(gpus, count);
    let too_high: Vec<GpuOc> = inventory
        .gpus
        .iter()
        .map(|g| oc(g.max_power_w + 1, CheckRequest::default()))
        .collect();
    let out_of_range = match apply(gpus, &too_high) {
        Ok(()) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    let after_refusal = read(gpus, count);
    let requested: Vec<GpuOc> = inventory
        .gpus
        .iter()
        .map(|g| {
            let pl = request
                .power_limit_w
                .unwrap_or((g.default_power_w * 3 / 4).clamp(g.min_power_w, g.max_power_w));
            oc(pl, request)
        })
        .collect();
    let apply_result = apply(gpus, &requested).map_err(|e| e.to_string());
    let applied = read(gpus, count);
    let mut reset = Ok(());
    for g in 0..count {
        if let Err(e) = gpus.reset(g) {
            reset = Err(e.to_string());
        }
    }
    let after_reset = read(gpus, count);
    let limits = |r: &Reading| -> Vec<Option<u32>> {
        r.power_limit_w
            .iter()
            .map(|l| l.as_ref().ok().copied())
            .collect()
    };
    let defaults: Vec<Option<u32>> = inventory
        .gpus
        .iter()
        .map(|g| Some(g.default_power_w))
        .collect();
    let passed = out_of_range.is_err()
        && limits(&after_refusal) == limits(&before)
        && apply_result.is_ok()
        && limits(&applied)
            == requested
                .iter()
                .map(|o| Some(o.power_limit_w))
                .collect::<Vec<_>>()
        && reset.is_ok()
        && limits(&after_reset) == defaults;
    Ok(CheckReport {
        inventory,
        before,
        out_of_range,
        after_refusal,
        requested,
        apply: apply_result,
        applied,
        reset,
        after_reset,
        passed,
    })
}

fn oc(power_limit_w: u32, request: CheckRequest) -> GpuOc {
    GpuOc {
        power_limit_w,
        core_lock_mhz: request.core_lock_mhz,
        mem_lock_mhz: request.mem_lock_mhz,
        core_offset_mhz: request.core_offset_mhz,
        mem_offset_mhz: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated_backend::SimulatedGpus;

    #[test]
    fn the_check_passes_on_cards_that_behave() {
        let mut gpus = SimulatedGpus::from_spec("2xRTX4090").unwrap();
        let report = run(
            &mut gpus,
            CheckRequest {
                power_limit_w: Some(300),
                core_lock_mhz: Some(2100),
                ..CheckRequest::default()
            },
        )
        .unwrap();
        assert!(report.out_of_range.is_err());
        assert_eq!(report.applied.power_limit_w, vec![Ok(300), Ok(300)]);
        assert_eq!(report.after_reset.power_limit_w, vec![Ok(450), Ok(450)]);
        assert!(report.passed, "{report:?}");
    }

    #[test]
    fn the_check_fails_when_a_setting_is_unsupported() {
        // The A100 model refuses memory locks, as the real card does.
        let mut gpus = SimulatedGpus::from_spec("1xA100").unwrap();
        let report = run(
            &mut gpus,
            CheckRequest {
                mem_lock_mhz: Some(1215),
                ..CheckRequest::default()
            },
        )
        .unwrap();
        assert!(
            report
                .apply
                .as_ref()
                .unwrap_err()
                .contains("memory clock lock")
        );
        assert!(!report.passed);
    }
}
