//! `gigaspot backup` and `gigaspot restore`.
//!
//! A backup is taken from the running service (`--url`, with the operator key in
//! `GIGASPOT_OPERATOR_KEY`), which copies the store while it serves, or from the data folder
//! of a stopped one (`--data-dir`: sled lets one process at a time open a database). Either
//! way the file is checked whole before it replaces `--out`.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gigaspot_store::{BackupSummary, SledStore};

/// Where a backup is taken from.
pub enum Source {
    /// The data folder of a stopped service.
    DataDir(PathBuf),
    /// A running service's base URL.
    Url(String),
}

fn partial(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn print(what: &str, summary: &BackupSummary, path: &Path) {
    println!(
        "{what} {}: {} entries, {} bytes, schema {}",
        path.display(),
        summary.entries,
        summary.bytes,
        summary.schema
    );
}

/// `gigaspot backup --out FILE (--data-dir DIR | --url URL)`.
pub fn backup(source: Source, out: &Path) -> Result<()> {
    let tmp = partial(out);
    let result = (|| -> Result<()> {
        match &source {
            Source::DataDir(dir) => {
                if !dir.is_dir() {
                    bail!("{} is not a data directory", dir.display());
                }
                let store = SledStore::open(dir).with_context(|| {
                    format!(
                        "cannot open {} (while the service runs, take the backup with --url)",
                        dir.display()
                    )
                })?;
                let mut file = BufWriter::new(std::fs::File::create(&tmp)?);
                store.backup(&mut file)?;
                file.into_inner()?.sync_all()?;
                store.close()?;
            }
            Source::Url(url) => {
                let key = std::env::var("GIGASPOT_OPERATOR_KEY")
                    .context("set GIGASPOT_OPERATOR_KEY to the operator's API key")?;
                let url = format!("{}/api/v1/backup", url.trim_end_matches('/'));
                let bytes = tokio::runtime::Runtime::new()?.block_on(async {
                    let resp = reqwest::Client::new()
                        .get(&url)
                        .bearer_auth(key.trim())
                        .send()
                        .await
                        .with_context(|| format!("cannot reach {url}"))?;
                    let status = resp.status();
                    if !status.is_success() {
                        let body = resp.text().await.unwrap_or_default();
                        bail!("{url} answered {status}: {body}");
                    }
                    Ok(resp.bytes().await?)
                })?;
                std::fs::write(&tmp, &bytes)?;
                std::fs::File::open(&tmp)?.sync_all()?;
            }
        }
        // Check the file whole before it takes the place of `out`.
        let summary = gigaspot_store::verify(&mut BufReader::new(std::fs::File::open(&tmp)?))?;
        std::fs::rename(&tmp, out)?;
        print("backup written to", &summary, out);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `gigaspot restore --from FILE --data-dir DIR`.
pub fn restore(from: &Path, data_dir: &Path) -> Result<()> {
    let file =
        std::fs::File::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    let summary = gigaspot_store::restore(&mut BufReader::new(file), data_dir)?;
    print("restored into", &summary, data_dir);
    println!(
        "check it with: gigaspot ledger audit --data {}",
        data_dir.display()
    );
    Ok(())
}
