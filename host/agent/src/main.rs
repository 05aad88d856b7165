//! `gigaspot-agent`: the host agent's command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The GigaSPOT host agent.
#[derive(Parser)]
#[command(name = "gigaspot-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU inventory as JSON: models, uuids, power-limit constraints, driver.
    Inventory {
        /// `nvml`, or `simulated:<count>x<model>[,...]` (e.g. `simulated:4xRTX4090`).
        #[arg(long, default_value = "nvml")]
        gpu: String,
    },
}

fn main() -> ExitCode {
    let Command::Inventory { gpu } = Cli::parse().command;
    let result = gigaspot_agent::open_gpus(&gpu).and_then(|gpus| gpus.inventory());
    match result {
        Ok(inventory) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&inventory).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
