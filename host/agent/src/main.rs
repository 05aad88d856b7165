//! `gigaspot-agent`: the host agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gigaspot_agent::config::{AgentConfig, parse_backend};
use gigaspot_agent::gpu_check::{self, CheckRequest};

/// The GigaSPOT host agent.
#[derive(Parser)]
#[command(name = "gigaspot-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: heartbeat to the server and converge to its desired state.
    /// Settings come from the config file, then GIGASPOT_AGENT_* variables, then flags.
    Run {
        /// TOML file with any of the settings below.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Server base URL.
        #[arg(long)]
        server: Option<String>,
        /// `nvml` or `simulated:<count>x<model>[,...]`.
        #[arg(long)]
        gpu: Option<String>,
        /// `docker` or `none`.
        #[arg(long)]
        containers: Option<String>,
        /// Docker socket.
        #[arg(long)]
        docker_socket: Option<String>,
        /// Network mode of workload containers.
        #[arg(long)]
        network: Option<String>,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long)]
        grace_s: Option<u64>,
        /// Seconds between heartbeats.
        #[arg(long)]
        heartbeat_s: Option<u64>,
        /// PEM file of certificate authorities to trust for an https:// server.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Allow a plain http:// server on another host (the token travels in cleartext).
        #[arg(long)]
        allow_insecure_http: bool,
    },
    /// Print the GPU inventory as JSON: models, uuids, power-limit constraints, driver.
    Inventory {
        /// `nvml`, or `simulated:<count>x<model>[,...]` (e.g. `simulated:4xRTX4090`).
        #[arg(long, default_value = "nvml")]
        gpu: String,
    },
    /// Exercise the GPU path on the cards: refuse an out-of-range limit, set a power limit
    /// and clock locks, read them back, reset. Prints a JSON report; exits 1 unless all
    /// steps behaved.
    GpuCheck {
        /// `nvml` or `simulated:<spec>`.
        #[arg(long, default_value = "nvml")]
        gpu: String,
        /// Power limit to set on every GPU, W (default: ¾ of the card's default).
        #[arg(long)]
        power_limit_w: Option<u32>,
        /// Core clock to lock, MHz.
        #[arg(long)]
        core_lock_mhz: Option<u32>,
        /// Memory clock to lock, MHz.
        #[arg(long)]
        mem_lock_mhz: Option<u32>,
        /// Core clock offset, MHz.
        #[arg(long, allow_hyphen_values = true)]
        core_offset_mhz: Option<i32>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run {
            config,
            server,
            gpu,
            containers,
            docker_socket,
            network,
            grace_s,
            heartbeat_s,
            ca_cert,
            allow_insecure_http,
        } => AgentConfig::load(config.as_deref()).and_then(|mut c| {
            c.server = server.unwrap_or(c.server);
            c.gpu = gpu.unwrap_or(c.gpu);
            if let Some(v) = containers {
                c.containers = parse_backend(&v)?;
            }
            c.docker_socket = docker_socket.unwrap_or(c.docker_socket);
            c.network = network.unwrap_or(c.network);
            c.grace_s = grace_s.unwrap_or(c.grace_s);
            c.heartbeat_s = heartbeat_s.unwrap_or(c.heartbeat_s);
            c.ca_cert = ca_cert.or(c.ca_cert);
            c.allow_insecure_http |= allow_insecure_http;
            run(c)
        }),
        Command::Inventory { gpu } => gigaspot_agent::open_gpus(&gpu)
            .and_then(|gpus| gpus.inventory())
            .map_err(anyhow::Error::from)
            .map(|inventory| print_json(&inventory)),
        Command::GpuCheck {
            gpu,
            power_limit_w,
            core_lock_mhz,
            mem_lock_mhz,
            core_offset_mhz,
        } => gpu_check_command(
            &gpu,
            CheckRequest {
                power_limit_w,
                core_lock_mhz,
                mem_lock_mhz,
                core_offset_mhz,
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn gpu_check_command(gpu: &str, request: CheckRequest) -> anyhow::Result<()> {
    let mut gpus = gigaspot_agent::open_gpus(gpu)?;
    let report = gpu_check::run(gpus.as_mut(), request).map_err(anyhow::Error::msg)?;
    print_json(&report);
    anyhow::ensure!(report.passed, "the GPU check did not pass (see the report)");
    Ok(())
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            // Ctrl-C or SIGTERM stops the agent; workloads keep running and are adopted
            // by the next start.
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        gigaspot_agent::run(config, stop).await
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
