//! What agents report of the intervals not yet settled (served, time served, not served
//! and why), bids' runs of failures and machines' reliability, on PostgreSQL.

use std::collections::BTreeMap;

use super::Sql;
use gigaspot_market::agent_protocol::Unserved;
use gigaspot_market::bid::BidId;
use gigaspot_market::billing::ServedTime;
use gigaspot_market::machine::MachineId;
use gigaspot_market::suspension::{self, BidFailures, Tally};

use super::accounts::machine;
use super::config;
use super::u64_col;
use super::{PgResult, PgStore, db_int, decoded, record};
use crate::error::{StoreError, StoreResult};

/// Whether (machine, interval) was cleared with a winner and is not settled yet.
async fn is_pending(c: &impl Sql, machine: MachineId, interval: u64) -> PgResult<bool> {
    Ok(c.qopt(
        "SELECT 1 FROM pending WHERE machine = $1 AND interval_no = $2",
        &[&db_int("machine", machine)?, &db_int("interval", interval)?],
    )
    .await?
    .is_some())
}

/// A machine's tallies by (machine, day).
pub(crate) async fn tallies(
    c: &impl Sql,
    machine: Option<MachineId>,
) -> PgResult<BTreeMap<(MachineId, u64), Tally>> {
    let machine = machine.map(|m| db_int("machine", m)).transpose()?;
    c.q(
        "SELECT machine, day, assigned, served FROM tallies \
         WHERE $1::BIGINT IS NULL OR machine = $1",
        &[&machine],
    )
    .await?
    .iter()
    .map(|row| {
        let count = |column: &str| -> PgResult<u32> {
            Ok(u32::try_from(u64_col(row, column)?).unwrap_or(u32::MAX))
        };
        Ok((
            (u64_col(row, "machine")?, u64_col(row, "day")?),
            Tally {
                assigned: count("assigned")?,
                served: count("served")?,
            },
        ))
    })
    .collect()
}

impl PgStore {
    async fn known_machine(c: &impl Sql, id: MachineId) -> PgResult<()> {
        match machine(c, id).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound {
                what: "machine",
                id,
            }
            .into()),
        }
    }

    pub(super) fn record_served(&self, m: MachineId, interval: u64, bid: BidId) -> StoreResult<()> {
        self.write_changes(async |tx| {
            Self::known_machine(tx, m).await?;
            // Only an interval not yet settled takes a mark (a heartbeat racing the
            // boundary may report one just settled: it no longer counts); every
            // heartbeat of the interval reports it: only a change writes.
            let changed = is_pending(tx, m, interval).await?
                && tx
                    .exec(
                        "INSERT INTO served (machine, interval_no, bid) VALUES ($1, $2, $3) \
                         ON CONFLICT (interval_no, machine) DO UPDATE SET bid = excluded.bid \
                         WHERE served.bid <> excluded.bid",
                        &[
                            &db_int("machine", m)?,
                            &db_int("interval", interval)?,
                            &db_int("bid", bid)?,
                        ],
                    )
                    .await?
                    > 0;
            Ok(((), changed))
        })
    }

    pub(super) fn record_unserved(
        &self,
        m: MachineId,
        interval: u64,
        unserved: &Unserved,
    ) -> StoreResult<()> {
        self.write_changes(async |tx| {
            Self::known_machine(tx, m).await?;
            if !is_pending(tx, m, interval).await? {
                return Ok(((), false));
            }
            let stored = tx
                .qopt(
                    "SELECT record FROM unserved WHERE machine = $1 AND interval_no = $2",
                    &[&db_int("machine", m)?, &db_int("interval", interval)?],
                )
                .await?
                .map(|row| decoded::<Unserved>(&row, "record", "unserved"))
                .transpose()?;
            // The same report again: nothing to write.
            if stored.is_some_and(|s| s.bid == unserved.bid && s.reason == unserved.reason) {
                return Ok(((), false));
            }
            tx.exec(
                "INSERT INTO unserved (machine, interval_no, record) VALUES ($1, $2, $3) \
                 ON CONFLICT (interval_no, machine) DO UPDATE SET record = excluded.record",
                &[
                    &db_int("machine", m)?,
                    &db_int("interval", interval)?,
                    &record(unserved)?,
                ],
            )
            .await?;
            Ok(((), true))
        })
    }

    pub(super) fn unserved(&self, m: MachineId, interval: u64) -> StoreResult<Option<Unserved>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM unserved WHERE machine = $1 AND interval_no = $2",
                    &[&db_int("machine", m)?, &db_int("interval", interval)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "unserved")?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn record_served_times(
        &self,
        entries: &[(MachineId, u64, ServedTime)],
    ) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write_changes(async |tx| {
            let mut written = false;
            for (m, interval, served) in entries {
                if !is_pending(tx, *m, *interval).await? {
                    continue;
                }
                let stored = tx
                    .qopt(
                        "SELECT record FROM served_times WHERE machine = $1 AND interval_no = $2",
                        &[&db_int("machine", *m)?, &db_int("interval", *interval)?],
                    )
                    .await?
                    .map(|row| decoded::<ServedTime>(&row, "record", "served_times"))
                    .transpose()?;
                // A value never goes down.
                if stored.is_some_and(|s| s.bid == served.bid && s.seconds >= served.seconds) {
                    continue;
                }
                tx.exec(
                    "INSERT INTO served_times (machine, interval_no, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (interval_no, machine) DO UPDATE SET record = excluded.record",
                    &[
                        &db_int("machine", *m)?,
                        &db_int("interval", *interval)?,
                        &record(served)?,
                    ],
                )
                .await?;
                written = true;
            }
            Ok(((), written))
        })
    }

    pub(super) fn served_time(
        &self,
        m: MachineId,
        interval: u64,
    ) -> StoreResult<Option<ServedTime>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM served_times WHERE machine = $1 AND interval_no = $2",
                    &[&db_int("machine", m)?, &db_int("interval", interval)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "served_times")?)),
                None => Ok(None),
            }
        })
    }

    /// Removes up to `limit` marks of settled intervals; the time of an interval served
    /// for less than its length is kept (flagged, so it is not counted again).
    pub(super) fn prune_served_marks(&self, limit: usize) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(async |tx| {
            let Some(cleared) = config::get::<u64>(tx, config::CLEARED_THROUGH).await? else {
                return Ok(0);
            };
            let oldest = tx
                .q1("SELECT MIN(interval_no) FROM pending", &[])
                .await?
                .get::<_, Option<i64>>(0)
                .map(super::from_db);
            let before = db_int("interval", oldest.map_or(cleared, |p| p.min(cleared)))?;
            let clock: gigaspot_market::interval_clock::IntervalClock =
                config::required(tx, config::INTERVAL_CLOCK).await?;
            let mut removed = 0u64;
            for table in ["served", "unserved"] {
                let left = limit - removed as i64;
                if left <= 0 {
                    break;
                }
                removed += tx
                    .exec(
                        &format!(
                            "DELETE FROM {table} WHERE (interval_no, machine) IN \
                             (SELECT interval_no, machine FROM {table} WHERE interval_no < $1 \
                              ORDER BY interval_no, machine LIMIT $2)"
                        ),
                        &[&before, &left],
                    )
                    .await?;
            }
            let left = limit - removed as i64;
            if left > 0 {
                let rows = tx
                    .q(
                        "SELECT machine, interval_no, record FROM served_times \
                         WHERE interval_no < $1 AND NOT kept ORDER BY interval_no, machine LIMIT $2",
                        &[&before, &left],
                    )
                    .await?;
                for row in &rows {
                    let (m, interval) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
                    let served: ServedTime = decoded(row, "record", "served_times")?;
                    // A charge for part of an interval keeps its time for the ledger.
                    let sql = if served.seconds < clock.length_of(super::from_db(interval)) {
                        "UPDATE served_times SET kept = TRUE WHERE machine = $1 AND interval_no = $2"
                    } else {
                        "DELETE FROM served_times WHERE machine = $1 AND interval_no = $2"
                    };
                    tx.exec(sql, &[&m, &interval]).await?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    pub(super) fn record_heard(&self, heard: &[(MachineId, u64)]) -> StoreResult<()> {
        if heard.is_empty() {
            return Ok(());
        }
        let machines: Vec<i64> = heard
            .iter()
            .map(|(m, _)| db_int("machine", *m))
            .collect::<PgResult<_>>()?;
        let at: Vec<i64> = heard
            .iter()
            .map(|(_, t)| db_int("at", *t))
            .collect::<PgResult<_>>()?;
        // Not a change of the market: the generation stays.
        self.transaction(false, async |tx| {
            tx.exec(
                "INSERT INTO heartbeats (machine, at) SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[]) \
                 ON CONFLICT (machine) DO UPDATE SET at = GREATEST(heartbeats.at, excluded.at)",
                &[&machines, &at],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn last_heard(&self) -> StoreResult<BTreeMap<MachineId, u64>> {
        self.read(async |c| {
            c.q("SELECT machine, at FROM heartbeats", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "machine")?, u64_col(row, "at")?)))
                .collect()
        })
    }

    pub(super) fn bid_failures(&self, bid: BidId) -> StoreResult<Option<BidFailures>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM bid_failures WHERE bid = $1",
                    &[&db_int("bid", bid)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "bid_failures")?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn reliability(&self, m: MachineId, now: u64) -> StoreResult<f64> {
        self.read(async |c| {
            let tallies = tallies(c, Some(m)).await?;
            Ok(suspension::reliability_at(&tallies, m, now))
        })
    }
}
