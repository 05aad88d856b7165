//! `gigaspot ledger audit`: the ledger audit for operators.

use std::path::Path;

use anyhow::{Context, Result};
use gigaspot_store::{SledStore, Store};

/// Opens the database in `data` and audits its ledger; an error names the broken invariant.
pub fn run(data: &Path) -> Result<()> {
    if !data.is_dir() {
        anyhow::bail!("{} is not a data directory", data.display());
    }
    let store = SledStore::open(data).with_context(|| format!("cannot open {}", data.display()))?;
    let report = store.audit()?;
    println!("ledger audit passed for {}", data.display());
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
