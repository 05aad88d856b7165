//! The GigaSPOT host agent: runs on each GPU server, applies each bid's power limits and
//! clocks through NVML (or the simulated backend) and runs its workload in Docker.
//!
//! - [`gpu_control`]: the GPU trait and the fail-closed [`gpu_control::apply`], with the
//!   [`nvml_backend`] and the [`simulated_backend`];
//! - [`container_runtime`]: the container trait, with the [`docker_runtime`] and the
//!   [`no_containers`] backend;
//! - [`reconciler`]: converges the machine to the server's desired state;
//! - [`heartbeat_loop`]: observe → heartbeat → converge, every few seconds;
//! - [`config`]: the agent's settings;
//! - [`gpu_check`]: the operator's check of the GPU path on a real card.

pub mod config;
pub mod container_runtime;
pub mod docker_runtime;
pub mod gpu_check;
pub mod gpu_control;
pub mod heartbeat_loop;
pub mod host_facts;
pub mod no_containers;
pub mod nvml_backend;
pub mod reconciler;
pub mod simulated_backend;

use anyhow::{Context, Result};
use tokio::sync::watch;

use config::{AgentConfig, ContainerBackend};
use container_runtime::ContainerRuntime;
use gpu_control::{GpuControl, GpuError};
use reconciler::{Reconciler, ReconcilerOptions};

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

/// The reconciler options `config` implies.
pub fn reconciler_options(config: &AgentConfig) -> ReconcilerOptions {
    ReconcilerOptions {
        owner: heartbeat_loop::owner_label(&config.token),
        grace: config.grace(),
        network: config.network.clone(),
        // Simulated GPUs have nothing to hand to a container.
        pass_gpus: config.gpu == "nvml",
    }
}

/// Runs the agent with `config` until `stop` turns true. The GPUs must open (a missing
/// driver is an error unless the simulated backend was asked for); the container runtime
/// may come and go, and is reported as not working meanwhile.
pub async fn run(config: AgentConfig, stop: watch::Receiver<bool>) -> Result<()> {
    config.check()?;
    let gpus = open_gpus(&config.gpu)?;
    match config.containers {
        ContainerBackend::Docker => {
            let runtime = docker_runtime::DockerRuntime::new(&config.docker_socket, config.grace());
            run_with(config, gpus, runtime, stop).await
        }
        ContainerBackend::None => {
            run_with(config, gpus, no_containers::NoContainers::default(), stop).await
        }
    }
}

async fn run_with<R: ContainerRuntime>(
    config: AgentConfig,
    gpus: Box<dyn GpuControl>,
    runtime: R,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let ca = match &config.ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("ca_cert: cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let server =
        heartbeat_loop::ServerClient::with_ca(&config.server, &config.token, ca.as_deref())?;
    let mut reconciler = Reconciler::new(gpus, runtime, reconciler_options(&config));
    let every = std::time::Duration::from_secs(config.heartbeat_s);
    heartbeat_loop::run(&mut reconciler, &server, every, stop).await;
    Ok(())
}
