//! `gigaspot-demo`: a live local market in one command (see `scripts/demo`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gigaspot_demo::{DemoOptions, start};

/// A complete local GigaSPOT market: server, simulated agents, simulated clients.
#[derive(Parser)]
#[command(name = "gigaspot-demo", version, about)]
struct Cli {
    /// Holds the market and the demo's keys; a second start reuses both.
    #[arg(long, default_value = "demo-data")]
    data_dir: PathBuf,
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Billing interval in seconds (10 at least).
    #[arg(long, default_value_t = 10)]
    interval_s: u32,
    /// Folder of the plugin components; without it the built-in price-per-watt ranks.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Run the market in this PostgreSQL database (postgres://…) with two replicas of the
    /// service, agents and clients spread over both; the keys stay in --data-dir.
    #[arg(long, env = "GIGASPOT_DATABASE_URL")]
    database_url: Option<String>,
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let options = DemoOptions {
        data_dir: cli.data_dir,
        bind: cli.bind,
        interval_s: cli.interval_s,
        plugins: cli.plugins,
        clients: true,
        database_url: cli.database_url,
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(options)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let demo = start(options).await?;
    let k = &demo.keys;
    println!();
    println!("  GigaSPOT demo market is live");
    println!("  dashboard:     {}/dashboard/", demo.url);
    if demo.urls.len() > 1 {
        println!(
            "  replicas:      {} (one PostgreSQL database; agents and clients use both)",
            demo.urls.join(", ")
        );
    }
    println!(
        "  API:           {}/api/v1  (OpenAPI at /api/v1/openapi.json)",
        demo.url
    );
    println!("  operator key:  {}", k.operator);
    for p in k.hosts.iter().chain(&k.clients) {
        println!("  {:<14} {}", format!("{}:", p.name), p.key);
    }
    println!(
        "  {} machines with simulated agents; keys saved in {}",
        k.machines.len(),
        data_dir.join("demo-keys.json").display()
    );
    println!(
        "  {} buys through a standing order (2 × RTX 4090, at most {} CLORE/day per kW)",
        gigaspot_demo::clients::ORDER_CLIENT,
        gigaspot_demo::clients::ORDER_MAX_PRICE_PER_KW
    );
    println!(
        "  Paste a key into the dashboard to see its balance, bids, standing orders and ledger. Ctrl-C stops."
    );
    println!();
    tokio::signal::ctrl_c().await?;
    println!("stopping…");
    demo.shutdown().await;
    println!("stopped; run again to continue this market");
    Ok(())
}
