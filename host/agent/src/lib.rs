//! The GigaSPOT host agent: runs on each GPU server, applies each bid's power limits and
//! clocks through NVML (or the simulated backend) and runs its workload.
//!
//! This crate has the GPU side so far: [`gpu_control`] (the trait and the fail-closed
//! [`gpu_control::apply`]), the [`nvml_backend`] and the [`simulated_backend`].

pub mod gpu_control;
pub mod nvml_backend;
pub mod simulated_backend;

use gpu_control::{GpuControl, GpuError};

/// Opens the GPU backend named by `spec`: `nvml`, or `simulated:<count>x<model>[,...]`
/// (e.g. `simulated:4xRTX4090`).
pub fn open_gpus(spec: &str) -> Result<Box<dyn GpuControl>, GpuError> {
    match spec.split_once(':') {
        None if spec == "nvml" => Ok(Box::new(nvml_backend::NvmlGpus::init()?)),
        Some(("simulated", cards)) => simulated_backend::SimulatedGpus::from_spec(cards)
            .map(|s| Box::new(s) as Box<dyn GpuControl>)
            .map_err(GpuError::Unavailable),
        _ => Err(GpuError::Unavailable(format!(
            "unknown GPU backend {spec:?}: use `nvml` or `simulated:<count>x<model>`"
        ))),
    }
}
