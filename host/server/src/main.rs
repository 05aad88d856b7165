//! `gigaspot`: the GigaSPOT command-line tool.
//!
//! Today it carries the plugin tools for authors and operators
//! (`gigaspot plugin check|bench <file.wasm>`) and the operator's ledger audit
//! (`gigaspot ledger audit --data DIR`).

mod ledger_audit;
mod plugin_bench;
mod plugin_check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// GigaSPOT: a self-hostable market for GPU power.
#[derive(Parser)]
#[command(name = "gigaspot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with plugins (WebAssembly components of wit/plugin.wit).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Inspect the market's ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the transfers and check the ledger invariants.
    Audit {
        /// The market's data directory (the sled database).
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin, audit its imports, print its metadata and run it on sample input.
    Check {
        /// The component to check.
        file: PathBuf,
        /// The configuration string handed to the plugin's `configure`.
        #[arg(long, default_value = "")]
        config: String,
        /// Number of bids in the sample input.
        #[arg(long, default_value_t = 10)]
        bids: usize,
    },
    /// Measure per-call latency for 10, 100 and 1,000 bids, against the native reference.
    Bench {
        /// The component to measure.
        file: PathBuf,
        /// The configuration string handed to the plugin's `configure`.
        #[arg(long, default_value = "")]
        config: String,
        /// Calls measured per input size.
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(PluginCommand::Check { file, config, bids }) => {
            plugin_check::run(&file, &config, bids)
        }
        Command::Plugin(PluginCommand::Bench {
            file,
            config,
            iterations,
        }) => plugin_bench::run(&file, &config, iterations),
        Command::Ledger(LedgerCommand::Audit { data }) => ledger_audit::run(&data),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
