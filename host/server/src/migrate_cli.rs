//! `gigaspot migrate --from-sled DIR --to postgres://…`: moves a stopped market from sled
//! into an empty PostgreSQL database, then audits the copy.

use std::path::Path;

use anyhow::{Context, Result};
use gigaspot_store::{PgStore, SledStore, Store};

/// Copies the market in `from` into the empty database at `to` and audits the result.
pub fn run(from: &Path, to: &str) -> Result<()> {
    if !from.is_dir() {
        anyhow::bail!("{} is not a data directory", from.display());
    }
    let source = SledStore::open(from).with_context(|| {
        format!(
            "cannot open {} (stop the service that uses it first)",
            from.display()
        )
    })?;
    source
        .audit()
        .context("the source market's ledger audit failed; nothing was copied")?;
    let market = source.export()?;
    let copied = PgStore::import(to, &market).context("the copy into PostgreSQL failed")?;
    let report = copied.audit()?;
    println!("migrated {} into PostgreSQL", from.display());
    println!("accounts:           {}", market.accounts.len());
    println!("machines:           {}", market.market.machines.len());
    println!("bids:               {}", market.bids.len());
    println!("transfers:          {} (audit passed)", report.transfers);
    println!("withdrawals:        {}", market.withdrawals.len());
    println!("plugin versions:    {}", market.plugin_versions.len());
    println!(
        "intervals pending:  {} (charged by the first boundary on PostgreSQL)",
        market.market.pending.len()
    );
    println!(
        "decision history is not copied (it stays in {})",
        from.display()
    );
    Ok(())
}
