//! `gigaspot ledger audit`: the ledger audit for operators.

use std::path::Path;

use anyhow::{Context, Result};
use gigaspot_store::{PgStore, SledStore, Store};

/// Opens the market's database (the sled folder `data`, or the PostgreSQL database at
/// `database_url`) and audits its ledger; an error names the broken invariant.
pub fn run(data: Option<&Path>, database_url: Option<&str>) -> Result<()> {
    let (store, shown) = open(data, database_url)?;
    let report = store.audit()?;
    println!("ledger audit passed for {shown}");
    println!("transfers:          {}", report.transfers);
    println!("deposits:           {} CLORE", report.deposits);
    println!("withdrawals:        {} CLORE", report.withdrawals);
    println!(
        "sum of balances:    {} CLORE (= deposits − withdrawals)",
        report.total_balance
    );
    println!(
        "charged intervals:  {} (none twice)",
        report.charged_intervals
    );
    Ok(())
}

/// Opens a market's database for a command-line tool: the sled folder `data` of a
/// stopped service, or the PostgreSQL database at `database_url`; with the name to show.
pub fn open(data: Option<&Path>, database_url: Option<&str>) -> Result<(Box<dyn Store>, String)> {
    Ok(match (data, database_url) {
        (_, Some(url)) => (
            Box::new(PgStore::open(url).context("cannot open the PostgreSQL database")?),
            "the PostgreSQL database".into(),
        ),
        (Some(data), None) => {
            if !data.is_dir() {
                anyhow::bail!("{} is not a data directory", data.display());
            }
            let store =
                SledStore::open(data).with_context(|| format!("cannot open {}", data.display()))?;
            (Box::new(store), data.display().to_string())
        }
        (None, None) => anyhow::bail!("give --data-dir DIR or --database-url URL"),
    })
}
