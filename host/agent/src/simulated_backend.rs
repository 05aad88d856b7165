//! The simulated GPU backend: a named product feature for demos and for machines without
//! NVIDIA GPUs (CI). It models the cards honestly — NVML's power-limit constraints, the
//! refusal of out-of-range values, clocks that need support — and can inject driver
//! errors so that the fail-closed paths can be exercised.

use crate::gpu_control::{GpuControl, GpuError, GpuInfo, Inventory};

/// Known models: (spec name, NVML name, min W, max W, default W, support for memory locks
/// and clock offsets). Data-centre cards have neither: a real H100 refuses memory locks as
/// unsupported and answers offsets with an internal error (docs/agent.md).
const MODELS: [(&str, &str, u32, u32, u32, bool); 4] = [
    ("RTX4090", "NVIDIA GeForce RTX 4090", 150, 600, 450, true),
    ("RTX3090", "NVIDIA GeForce RTX 3090", 100, 400, 350, true),
    ("A100", "NVIDIA A100-SXM4-80GB", 100, 400, 400, false),
    ("H100", "NVIDIA H100 80GB HBM3", 200, 700, 700, false),
];

#[derive(Debug, Clone)]
struct SimGpu {
    info: GpuInfo,
    consumer_clocks: bool,
    power_limit_w: u32,
    core_lock: Option<u32>,
    mem_lock: Option<u32>,
    core_offset: i32,
    mem_offset: i32,
}

/// An injected driver failure: the next `times` calls of `operation` on `gpu` fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The operation name, e.g. `set_power_limit`.
    pub operation: &'static str,
    /// The GPU.
    pub gpu: u32,
    /// How many calls fail.
    pub times: u32,
}

/// Simulated GPUs.
#[derive(Debug, Clone)]
pub struct SimulatedGpus {
    gpus: Vec<SimGpu>,
    injections: Vec<Injection>,
}

impl SimulatedGpus {
    /// Parses a spec such as `4xRTX4090` or `2xA100,1xH100`.
    pub fn from_spec(spec: &str) -> Result<SimulatedGpus, String> {
        let mut gpus = Vec::new();
        for part in spec.split(',').map(str::trim) {
            let (count, model) = part
                .split_once('x')
                .ok_or_else(|| format!("{part:?}: expected <count>x<model>, e.g. 4xRTX4090"))?;
            let count: u32 = count
                .parse()
                .map_err(|_| format!("{part:?}: {count:?} is not a count"))?;
            let &(_, name, min, max, default, mem_lock) = MODELS
                .iter()
                .find(|m| m.0.eq_ignore_ascii_case(model))
                .ok_or_else(|| {
                    let known: Vec<&str> = MODELS.iter().map(|m| m.0).collect();
                    format!(
                        "{part:?}: unknown model {model:?} (known: {})",
                        known.join(", ")
                    )
                })?;
            for _ in 0..count {
                let index = gpus.len() as u32;
                gpus.push(SimGpu {
                    info: GpuInfo {
                        index,
                        model: name.into(),
                        uuid: format!("GPU-sim-{index:04}"),
                        min_power_w: min,
                        max_power_w: max,
                        default_power_w: default,
                    },
                    consumer_clocks: mem_lock,
                    power_limit_w: default,
                    core_lock: None,
                    mem_lock: None,
                    core_offset: 0,
                    mem_offset: 0,
                });
            }
        }
        if gpus.is_empty() || gpus.len() > 16 {
            return Err(format!("{spec:?}: a machine has 1 to 16 GPUs"));
        }
        Ok(SimulatedGpus {
            gpus,
            injections: Vec::new(),
        })
    }

    /// Makes the next `injection.times` calls of an operation fail like a driver error.
    pub fn inject(&mut self, injection: Injection) {
        self.injections.push(injection);
    }

    /// The locked clocks and offsets of a GPU: (core lock, memory lock, core offset,
    /// memory offset).
    pub fn clocks(&self, gpu: u32) -> Option<(Option<u32>, Option<u32>, i32, i32)> {
        self.gpus
            .get(gpu as usize)
            .map(|g| (g.core_lock, g.mem_lock, g.core_offset, g.mem_offset))
    }

    fn gpu(&mut self, gpu: u32, operation: &'static str) -> Result<&mut SimGpu, GpuError> {
        if let Some(i) = self
            .injections
            .iter()
            .position(|j| j.operation == operation && j.gpu == gpu && j.times > 0)
        {
            self.injections[i].times -= 1;
            return Err(GpuError::Driver {
                gpu,
                operation,
                message: "injected error (simulated GPU backend)".into(),
            });
        }
        self.gpus
            .get_mut(gpu as usize)
            .ok_or(GpuError::NoSuchGpu(gpu))
    }
}

impl GpuControl for SimulatedGpus {
    fn inventory(&self) -> Result<Inventory, GpuError> {
        Ok(Inventory {
            driver_version: "simulated".into(),
            cuda_version: "12.4".into(),
            gpus: self.gpus.iter().map(|g| g.info.clone()).collect(),
        })
    }

    fn set_power_limit(&mut self, gpu: u32, watts: u32) -> Result<(), GpuError> {
        let g = self.gpu(gpu, "set_power_limit")?;
        // NVML refuses out-of-range limits with INVALID_ARGUMENT; so does the model.
        if !(g.info.min_power_w..=g.info.max_power_w).contains(&watts) {
            return Err(GpuError::OutOfRange {
                gpu,
                what: "power limit (W)",
                value: watts.into(),
                min: g.info.min_power_w.into(),
                max: g.info.max_power_w.into(),
            });
        }
        g.power_limit_w = watts;
        Ok(())
    }

    fn power_limit(&self, gpu: u32) -> Result<u32, GpuError> {
        self.gpus
            .get(gpu as usize)
            .map(|g| g.power_limit_w)
            .ok_or(GpuError::NoSuchGpu(gpu))
    }

    fn read_settings(&self, gpu: u32) -> Result<crate::gpu_control::ReadSettings, GpuError> {
        // The simulation knows its locks and offsets exactly.
        let g = self
            .gpus
            .get(gpu as usize)
            .ok_or(GpuError::NoSuchGpu(gpu))?;
        Ok(crate::gpu_control::ReadSettings {
            core_clock_mhz: g.core_lock,
            mem_clock_mhz: g.mem_lock,
            core_offset_mhz: Some(g.core_offset),
            mem_offset_mhz: Some(g.mem_offset),
        })
    }

    fn lock_core_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError> {
        self.gpu(gpu, "lock_core_clock")?.core_lock = Some(mhz);
        Ok(())
    }

    fn lock_mem_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError> {
        let g = self.gpu(gpu, "lock_mem_clock")?;
        if !g.consumer_clocks {
            return Err(GpuError::Unsupported {
                gpu,
                what: "memory clock lock",
            });
        }
        g.mem_lock = Some(mhz);
        Ok(())
    }

    fn set_core_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError> {
        let g = self.gpu(gpu, "set_core_offset")?;
        if !g.consumer_clocks {
            return Err(GpuError::Driver {
                gpu,
                operation: "core clock offset",
                message: "an internal driver error occurred".into(),
            });
        }
        g.core_offset = mhz;
        Ok(())
    }

    fn set_mem_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError> {
        let g = self.gpu(gpu, "set_mem_offset")?;
        if !g.consumer_clocks {
            return Err(GpuError::Driver {
                gpu,
                operation: "memory clock offset",
                message: "an internal driver error occurred".into(),
            });
        }
        g.mem_offset = mhz;
        Ok(())
    }

    fn reset(&mut self, gpu: u32) -> Result<(), GpuError> {
        let g = self.gpu(gpu, "reset")?;
        g.power_limit_w = g.info.default_power_w;
        g.core_lock = None;
        g.mem_lock = None;
        g.core_offset = 0;
        g.mem_offset = 0;
        Ok(())
    }

    fn power_usage(&self, gpu: u32) -> Result<u32, GpuError> {
        // A busy card draws close to its limit.
        self.power_limit(gpu).map(|limit| limit * 95 / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu_control::apply;
    use gigaspot_market::context::GpuOc;

    fn oc(pl: u32) -> GpuOc {
        GpuOc {
            power_limit_w: pl,
            core_lock_mhz: Some(2000),
            mem_lock_mhz: None,
            core_offset_mhz: Some(100),
            mem_offset_mhz: None,
        }
    }

    #[test]
    fn specs_parse_into_cards_with_nvml_constraints() {
        let sim = SimulatedGpus::from_spec("2xRTX4090,1xA100").unwrap();
        let inventory = sim.inventory().unwrap();
        assert_eq!(inventory.gpus.len(), 3);
        assert_eq!(inventory.gpus[2].model, "NVIDIA A100-SXM4-80GB");
        assert_eq!(
            (inventory.gpus[0].min_power_w, inventory.gpus[0].max_power_w),
            (150, 600)
        );
        for bad in ["", "4x", "xRTX4090", "4xGTX480", "17xRTX4090"] {
            assert!(SimulatedGpus::from_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_applied_and_read_back() {
        let mut sim = SimulatedGpus::from_spec("2xRTX4090").unwrap();
        apply(&mut sim, &[oc(300), oc(320)]).unwrap();
        assert_eq!(sim.power_limit(1).unwrap(), 320);
        assert_eq!(sim.clocks(0), Some((Some(2000), None, 100, 0)));
        assert_eq!(sim.power_usage(1).unwrap(), 304);
    }

    #[test]
    fn out_of_range_limits_are_refused_before_anything_changes() {
        let mut sim = SimulatedGpus::from_spec("2xRTX4090").unwrap();
        apply(&mut sim, &[oc(300), oc(300)]).unwrap();
        let err = apply(&mut sim, &[oc(310), oc(601)]).unwrap_err();
        assert!(
            matches!(
                err,
                GpuError::OutOfRange {
                    gpu: 1,
                    value: 601,
                    ..
                }
            ),
            "{err}"
        );
        // The first GPU kept its previous setting: nothing was touched.
        assert_eq!(sim.power_limit(0).unwrap(), 300);
    }

    #[test]
    fn an_injected_driver_error_fails_closed_and_resets_every_gpu() {
        let mut sim = SimulatedGpus::from_spec("2xRTX3090").unwrap();
        sim.inject(Injection {
            operation: "set_power_limit",
            gpu: 1,
            times: 1,
        });
        let err = apply(&mut sim, &[oc(200), oc(200)]).unwrap_err();
        assert!(matches!(err, GpuError::Driver { gpu: 1, .. }), "{err}");
        assert_eq!(sim.power_limit(0).unwrap(), 350, "reset to the default");
        assert_eq!(sim.clocks(0), Some((None, None, 0, 0)));
        // The injection is spent: the next attempt works.
        apply(&mut sim, &[oc(200), oc(200)]).unwrap();
    }

    #[test]
    fn unsupported_memory_locks_are_reported_clearly() {
        let mut sim = SimulatedGpus::from_spec("1xA100").unwrap();
        let settings = GpuOc {
            mem_lock_mhz: Some(1593),
            ..oc(300)
        };
        let err = apply(&mut sim, &[settings]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gpu 0: memory clock lock is not supported by this driver or card"
        );
    }

    #[test]
    fn data_centre_cards_take_zero_offsets_and_refuse_others_like_an_h100() {
        let mut sim = SimulatedGpus::from_spec("1xH100").unwrap();
        let zero = GpuOc {
            core_offset_mhz: Some(0),
            mem_offset_mhz: Some(0),
            ..oc(500)
        };
        apply(&mut sim, &[zero]).unwrap();
        assert_eq!(sim.power_limit(0).unwrap(), 500);
        let err = apply(
            &mut sim,
            &[GpuOc {
                core_offset_mhz: Some(100),
                ..zero
            }],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("core clock offset failed"),
            "{err}"
        );
        assert_eq!(sim.power_limit(0).unwrap(), 700, "failed closed: reset");
    }
}
