//! `gigaspot`: the GigaSPOT command-line tool.
//!
//! `gigaspot serve` runs the market; `gigaspot plugin check|bench <file.wasm>` and
//! `gigaspot plugin new NAME` are the plugin tools for authors and operators; `gigaspot ledger audit --data DIR` is the
//! operator's ledger audit; `gigaspot backup` / `gigaspot restore` copy a market and rebuild
//! a data folder from the copy.

mod backtest_cli;
mod backup_cli;
mod history_cli;
mod ledger_audit;
mod migrate_cli;
mod plugin_bench;
mod plugin_check;
mod plugin_edge_cases;
mod plugin_new;
mod replay_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the clearing's threads and the HTTP workers allocate small objects at a high
/// rate, and glibc's arenas spent a third of a tick's CPU time in malloc, free and their
/// locks (docs/market-core.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GigaSPOT: a self-hostable market for GPU power.
#[derive(Parser)]
#[command(name = "gigaspot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the market: HTTP API, agent endpoint and the interval clock.
    Serve {
        /// A TOML configuration file (see README for every key).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the file and GIGASPOT_BIND).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Data directory (overrides the file and GIGASPOT_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Work with plugins (WebAssembly components of the plugin contract, wit/since_vX.Y.Z/).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Inspect the market's ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Write a consistent copy of a market to a file: from a running service (--url, with
    /// GIGASPOT_OPERATOR_KEY set) or from a stopped one's data folder (--data-dir).
    Backup {
        /// The backup file to write (replaced only once the new copy is checked).
        #[arg(long)]
        out: PathBuf,
        /// The data folder of a stopped service.
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        data_dir: Option<PathBuf>,
        /// The base URL of a running service, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the OpenAPI document of every route (what docs/openapi.json holds).
    Openapi,
    /// Run a candidate strategy over a stopped market's recorded history and compare it
    /// with what the market decided: winners that would change, switches, host revenue
    /// (gross and net of energy), clients who would win or lose, faults and fuel. Never
    /// writes to the market.
    Backtest {
        #[command(flatten)]
        history: history_cli::HistoryArgs,
        /// The candidate strategy component (.wasm).
        #[arg(long)]
        strategy: PathBuf,
        /// The candidate strategy's configuration string.
        #[arg(long, default_value = "")]
        strategy_config: String,
        /// A candidate validator component, in running order (repeat for several; none:
        /// each clearing's recorded validators).
        #[arg(long = "validator")]
        validators: Vec<PathBuf>,
        /// The configuration of each `--validator`, in the same order.
        #[arg(long = "validator-config")]
        validator_configs: Vec<String>,
        /// How to print the report.
        #[arg(long, value_enum, default_value = "table")]
        format: backtest_cli::Format,
        /// Write the report to this file instead of the terminal.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-run the recorded plugin versions on the recorded inputs of a stopped market and
    /// check every decision bit for bit (input digest, plugin versions, scores,
    /// rejections, winner); exits non-zero on any difference.
    Replay {
        #[command(flatten)]
        history: history_cli::HistoryArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a stopped market from its sled data folder into an empty PostgreSQL database
    /// (accounts, keys, machines, bids, ledger, withdrawals, plugin versions, parameters and
    /// the intervals not yet settled), then audit the copy.
    Migrate {
        /// The data folder of the stopped service (sled).
        #[arg(long)]
        from_sled: PathBuf,
        /// The empty PostgreSQL database, postgres://user:password@host:port/db.
        #[arg(long, env = "GIGASPOT_DATABASE_URL")]
        to: String,
    },
    /// Rebuild a data folder from a backup file (the folder must not exist or be empty).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The data folder to create.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Recompute every balance from the transfers and check the ledger invariants.
    Audit {
        /// The market's data directory (the sled database).
        #[arg(
            long,
            alias = "data-dir",
            required_unless_present = "database_url",
            conflicts_with = "database_url"
        )]
        data: Option<PathBuf>,
        /// The market's PostgreSQL database instead (env `GIGASPOT_DATABASE_URL`).
        #[arg(long, env = "GIGASPOT_DATABASE_URL")]
        database_url: Option<String>,
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
    /// Write a new plugin project (Rust or Python, strategy or validator) that builds,
    /// tests and passes `gigaspot plugin check` as it is.
    New(plugin_new::NewArgs),
}

fn serve(
    file: Option<PathBuf>,
    bind: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config =
        gigaspot_server::config::Config::load(file.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(bind) = bind {
        config.bind = bind;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    gigaspot_server::logging::init(config.log_format)?;
    tokio::runtime::Runtime::new()?.block_on(gigaspot_server::serve::run(config))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            bind,
            data_dir,
        } => serve(config, bind, data_dir),
        Command::Plugin(PluginCommand::Check { file, config, bids }) => {
            plugin_check::run(&file, &config, bids)
        }
        Command::Plugin(PluginCommand::Bench {
            file,
            config,
            iterations,
        }) => plugin_bench::run(&file, &config, iterations),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Ledger(LedgerCommand::Audit { data, database_url }) => {
            ledger_audit::run(data.as_deref(), database_url.as_deref())
        }
        Command::Backup { out, data_dir, url } => match (data_dir, url) {
            (Some(dir), _) => backup_cli::backup(backup_cli::Source::DataDir(dir), &out),
            (None, Some(url)) => backup_cli::backup(backup_cli::Source::Url(url), &out),
            (None, None) => Err(anyhow::anyhow!("give --data-dir or --url")),
        },
        Command::Restore { from, data_dir } => backup_cli::restore(&from, &data_dir),
        Command::Migrate { from_sled, to } => migrate_cli::run(&from_sled, &to),
        Command::Backtest {
            history,
            strategy,
            strategy_config,
            validators,
            validator_configs,
            format,
            out,
        } => backtest_cli::run(
            &history,
            &backtest_cli::BacktestArgs {
                strategy: &strategy,
                strategy_config: &strategy_config,
                validators: &validators,
                validator_configs: &validator_configs,
                format,
                out: out.as_deref(),
            },
        ),
        Command::Replay { history, json } => match replay_cli::run(&history, json) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(3),
            Err(e) => Err(e),
        },
        Command::Openapi => {
            print!("{}", gigaspot_server::api_doc::document_json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
