//! The plugins' recorded inputs on PostgreSQL (`clearing_inputs`, `clearing_books`), laid
//! out as the sled store's (`crate::plugin_inputs`): a record per machine and interval,
//! and each machine's book from the interval it changed. The digests of the last books
//! are read from the database in each tick's snapshot, so replicas that take turns at
//! clearing never skip a book the other did not write.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use gigaspot_market::clearing::Decision;
use gigaspot_market::machine::MachineId;
use gigaspot_market::plugin_input::{InputRecord, PluginInput};

use super::{PgResult, PgStore, Sql, db_int, decoded, from_db, record, u64_col};
use crate::error::{StoreError, StoreResult};
use crate::records::{RecordedClearing, TickCommit};

/// Each machine's newest book digest.
pub(super) async fn last_books(tx: &Transaction<'_>) -> PgResult<HashMap<MachineId, [u8; 32]>> {
    tx.q(
        "SELECT DISTINCT ON (machine) machine, digest FROM clearing_books \
         ORDER BY machine, since DESC",
        &[],
    )
    .await?
    .iter()
    .map(|row| {
        let digest: &[u8] = row.try_get("digest")?;
        Ok((
            u64_col(row, "machine")?,
            digest.try_into().unwrap_or([0; 32]),
        ))
    })
    .collect()
}

/// Writes a tick's input records and changed books.
pub(super) async fn write(tx: &Transaction<'_>, commit: &TickCommit) -> PgResult<()> {
    let interval = db_int("interval", commit.interval)?;
    if !commit.inputs.is_empty() {
        let machines: Vec<i64> = commit
            .inputs
            .iter()
            .map(|(m, _)| db_int("machine", *m))
            .collect::<PgResult<_>>()?;
        let records: Vec<Vec<u8>> = commit
            .inputs
            .iter()
            .map(|(_, r)| record(r))
            .collect::<PgResult<_>>()?;
        tx.exec(
            "INSERT INTO clearing_inputs (interval_no, machine, record) \
             SELECT $1, m, r FROM UNNEST($2::BIGINT[], $3::BYTEA[]) AS u (m, r)",
            &[&interval, &machines, &records],
        )
        .await?;
    }
    if !commit.books.is_empty() {
        let machines: Vec<i64> = commit
            .books
            .iter()
            .map(|b| db_int("machine", b.machine))
            .collect::<PgResult<_>>()?;
        let digests: Vec<&[u8]> = commit.books.iter().map(|b| &b.digest[..]).collect();
        let bodies: Vec<&[u8]> = commit.books.iter().map(|b| &b.body[..]).collect();
        tx.exec(
            "INSERT INTO clearing_books (machine, since, digest, body) \
             SELECT m, $1, d, b FROM UNNEST($2::BIGINT[], $3::BYTEA[], $4::BYTEA[]) AS u (m, d, b)",
            &[&interval, &machines, &digests, &bodies],
        )
        .await?;
    }
    Ok(())
}

/// Removes the input records of intervals before `before` (up to `limit`) and, when any
/// was removed, the books no record left can use. Returns the bytes removed.
pub(super) async fn prune(tx: &Transaction<'_>, before: u64, limit: i64) -> PgResult<u64> {
    let before = db_int("interval", before.min(i64::MAX as u64))?;
    let removed = tx
        .q(
            "DELETE FROM clearing_inputs WHERE (interval_no, machine) IN \
             (SELECT interval_no, machine FROM clearing_inputs WHERE interval_no < $1 \
              ORDER BY interval_no, machine LIMIT $2) \
             RETURNING interval_no, octet_length(record) AS bytes",
            &[&before, &limit],
        )
        .await?;
    if removed.is_empty() {
        return Ok(0);
    }
    let mut bytes: u64 = removed
        .iter()
        .map(|r| r.get::<_, i32>("bytes") as u64)
        .sum();
    // Every record of an interval before `gone` is gone.
    let gone = if (removed.len() as i64) < limit {
        before
    } else {
        removed
            .iter()
            .map(|r| r.get::<_, i64>("interval_no"))
            .max()
            .unwrap_or(0)
    };
    let books = tx
        .q(
            "DELETE FROM clearing_books b WHERE EXISTS (SELECT 1 FROM clearing_books n \
             WHERE n.machine = b.machine AND n.since > b.since AND n.since <= $1) \
             RETURNING octet_length(body) AS bytes",
            &[&gone],
        )
        .await?;
    bytes += books
        .iter()
        .map(|r| r.get::<_, i32>("bytes") as u64)
        .sum::<u64>();
    Ok(bytes)
}

/// The input record and the book in force of `machine` at `interval`.
async fn input(
    c: &impl Sql,
    machine: MachineId,
    interval: u64,
) -> PgResult<Option<(InputRecord, PluginInput)>> {
    let (m, i) = (db_int("machine", machine)?, db_int("interval", interval)?);
    let Some(row) = c
        .qopt(
            "SELECT record FROM clearing_inputs WHERE interval_no = $1 AND machine = $2",
            &[&i, &m],
        )
        .await?
    else {
        return Ok(None);
    };
    with_book(
        c,
        machine,
        interval,
        decoded(&row, "record", "clearing_inputs")?,
    )
    .await
    .map(Some)
}

/// `rec`'s input, rebuilt with the book in force at `interval`.
async fn with_book(
    c: &impl Sql,
    machine: MachineId,
    interval: u64,
    rec: InputRecord,
) -> PgResult<(InputRecord, PluginInput)> {
    let (m, i) = (db_int("machine", machine)?, db_int("interval", interval)?);
    let book = c
        .qopt(
            "SELECT digest, body FROM clearing_books WHERE machine = $1 AND since <= $2 \
             ORDER BY since DESC LIMIT 1",
            &[&m, &i],
        )
        .await?;
    match book {
        Some(row) if row.try_get::<_, &[u8]>("digest")? == rec.book => {
            let book: PluginInput = decoded(&row, "body", "clearing_books")?;
            Ok((rec, PluginInput::from_book(book, &rec)))
        }
        _ => Err(StoreError::Corrupt {
            path: format!("clearing_books/{machine}/{interval}"),
            detail: "the book in force does not match the input record's digest".into(),
        }
        .into()),
    }
}

impl PgStore {
    pub(super) fn recorded_input(
        &self,
        machine: MachineId,
        interval: u64,
    ) -> StoreResult<Option<(InputRecord, PluginInput)>> {
        self.read(async |c| input(c, machine, interval).await)
    }

    pub(super) fn recorded_intervals(&self) -> StoreResult<Option<(u64, u64)>> {
        self.read(async |c| {
            let row = c
                .q1(
                    "SELECT min(interval_no) AS first, max(interval_no) AS last \
                     FROM clearing_inputs",
                    &[],
                )
                .await?;
            let first: Option<i64> = row.try_get("first")?;
            let last: Option<i64> = row.try_get("last")?;
            Ok(first.zip(last).map(|(f, l)| (from_db(f), from_db(l))))
        })
    }

    pub(super) fn recorded_clearings(&self, interval: u64) -> StoreResult<Vec<RecordedClearing>> {
        self.read(async |c| {
            let i = db_int("interval", interval)?;
            let rows = c
                .q(
                    "SELECT d.machine, d.record, r.record AS input \
                     FROM decisions d LEFT JOIN clearing_inputs r \
                     ON r.interval_no = d.interval_no AND r.machine = d.machine \
                     WHERE d.interval_no = $1 AND d.full_record ORDER BY d.machine",
                    &[&i],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let decision: Decision = decoded(row, "record", "decisions")?;
                let input = match row.try_get::<_, Option<&[u8]>>("input")? {
                    Some(_) => {
                        let rec = decoded(row, "input", "clearing_inputs")?;
                        let machine = from_db(row.try_get("machine")?);
                        Some(with_book(c, machine, interval, rec).await?)
                    }
                    None => None,
                };
                out.push(RecordedClearing { decision, input });
            }
            Ok(out)
        })
    }
}
