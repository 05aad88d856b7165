//! Backups: a consistent copy of every key and value of a store in one file, and a data
//! folder rebuilt from one.
//!
//! The file: the magic line `GIGASPOT-BACKUP\n` (16 bytes), the format version and the
//! store's schema version (u32, big-endian), then each entry as the key's length (u32 BE),
//! the key, the value's length (u32 BE) and the value; a length of `u32::MAX` ends the
//! entries, and the sha256 of every byte before it follows (32 bytes). A damaged or
//! truncated file is refused before the data folder is created.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{StoreError, StoreResult};
use crate::keys;

const MAGIC: &[u8; 16] = b"GIGASPOT-BACKUP\n";
const FORMAT: u32 = 1;
const END: u32 = u32::MAX;
/// Entries per write batch while restoring.
const BATCH: usize = 1024;

/// What a backup or a restore copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Keys copied.
    pub entries: u64,
    /// Bytes of the backup file.
    pub bytes: u64,
    /// The store's schema version.
    pub schema: u32,
}

fn damaged(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Backup(format!(
        "the backup is damaged or not a GigaSPOT backup: {detail}"
    ))
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backup(e.to_string())
}

/// A writer that hashes what passes through it and counts it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> StoreResult<()> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.inner.write_all(bytes).map_err(io)
    }

    fn put_len(&mut self, len: usize) -> StoreResult<()> {
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l != END)
            .ok_or_else(|| StoreError::Backup("an entry is larger than 4 GiB".into()))?;
        self.put(&len.to_be_bytes())
    }
}

/// Writes every entry of `entries` (all the store's keys, read while no write can apply)
/// to `out`.
pub(crate) fn write(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    schema: u32,
    out: &mut dyn Write,
) -> StoreResult<BackupSummary> {
    let mut w = Hashing {
        inner: out,
        hash: Sha256::new(),
        bytes: 0,
    };
    w.put(MAGIC)?;
    w.put(&FORMAT.to_be_bytes())?;
    w.put(&schema.to_be_bytes())?;
    let mut count = 0;
    for entry in entries {
        let (key, value) = entry?;
        w.put_len(key.len())?;
        w.put(&key)?;
        w.put_len(value.len())?;
        w.put(&value)?;
        count += 1;
    }
    w.put(&END.to_be_bytes())?;
    let digest = w.hash.clone().finalize();
    w.inner.write_all(&digest).map_err(io)?;
    w.inner.flush().map_err(io)?;
    Ok(BackupSummary {
        entries: count,
        bytes: w.bytes + 32,
        schema,
    })
}

/// A reader that hashes what it reads.
struct Reading<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Reading<R> {
    fn take(&mut self, n: usize) -> StoreResult<Vec<u8>> {
        let mut buf = vec![0; n];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| damaged(format!("it ends early ({e})")))?;
        self.hash.update(&buf);
        self.bytes += n as u64;
        Ok(buf)
    }

    fn take_u32(&mut self) -> StoreResult<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("four bytes")))
    }
}

/// Reads a whole backup from `input`, handing each entry to `each`, and checks its
/// checksum at the end.
fn read_all(
    input: &mut dyn Read,
    mut each: impl FnMut(Vec<u8>, Vec<u8>) -> StoreResult<()>,
) -> StoreResult<BackupSummary> {
    let mut r = Reading {
        inner: input,
        hash: Sha256::new(),
        bytes: 0,
    };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(damaged("no backup header"));
    }
    let format = r.take_u32()?;
    if format != FORMAT {
        return Err(damaged(format!(
            "format version {format}, this build reads {FORMAT}"
        )));
    }
    let schema = r.take_u32()?;
    if schema > keys::SCHEMA_VERSION {
        return Err(StoreError::Backup(format!(
            "the backup has schema version {schema}, newer than the {} this build understands; \
             restore it with a newer gigaspot",
            keys::SCHEMA_VERSION
        )));
    }
    let mut entries = 0;
    loop {
        let key_len = r.take_u32()?;
        if key_len == END {
            break;
        }
        let key = r.take(key_len as usize)?;
        let value_len = r.take_u32()?;
        if value_len == END {
            return Err(damaged("an entry has no value"));
        }
        let value = r.take(value_len as usize)?;
        each(key, value)?;
        entries += 1;
    }
    let expected = r.hash.clone().finalize();
    let mut found = [0u8; 32];
    r.inner
        .read_exact(&mut found)
        .map_err(|e| damaged(format!("the checksum is missing ({e})")))?;
    if found[..] != expected[..] {
        return Err(damaged("the checksum does not match"));
    }
    Ok(BackupSummary {
        entries,
        bytes: r.bytes + 32,
        schema,
    })
}

/// Reads a whole backup and checks it (header, every entry, checksum) without restoring.
pub fn verify(input: &mut dyn Read) -> StoreResult<BackupSummary> {
    read_all(input, |_, _| Ok(()))
}

/// Reads a backup from `input`, checks it whole, and only then puts the new data folder at
/// `data_dir` (which must not exist or be empty). The new folder is opened once as a store,
/// so a backup of an older schema is migrated like any data folder.
pub fn restore(input: &mut dyn Read, data_dir: &Path) -> StoreResult<BackupSummary> {
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(StoreError::Backup(format!(
            "{} is not empty; restore into a new folder",
            data_dir.display()
        )));
    }
    // Built beside the target and renamed into place once the checksum has matched.
    let building = sibling(data_dir, "restoring");
    let _ = std::fs::remove_dir_all(&building);
    let result = (|| {
        let db = sled::Config::new().path(&building).open()?;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        let summary = read_all(input, |key, value| {
            batch.insert(key, value);
            pending += 1;
            if pending == BATCH {
                db.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
            Ok(())
        })?;
        db.apply_batch(batch)?;
        db.flush()?;
        Ok(summary)
    })();
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
    };
    if data_dir.exists() {
        std::fs::remove_dir(data_dir).map_err(io)?;
    }
    std::fs::rename(&building, data_dir).map_err(io)?;
    // Open it once: checks the schema, migrates an older one, and builds the indexes.
    let store = crate::SledStore::open(data_dir)?;
    store.close()?;
    Ok(summary)
}

/// `dir` with `.suffix` appended to its last component.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}
