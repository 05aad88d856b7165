//! The interval engine's reads and its one transaction per boundary on PostgreSQL, and
//! the records it leaves (assignments, decisions, statistics).
//!
//! A tick's writes go in bulk (`UNNEST` of arrays: a few statements for 10,000 machines,
//! not one per row). When the store clears under a lease ([`PgStore::clear_under`]), the
//! commit first checks in the same transaction that the lease is still its own: a
//! replica that lost it can never commit a tick or a charge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Sql;
use deadpool_postgres::Transaction;
use gigaspot_market::bid::{Bid, BidId, BidState};
use gigaspot_market::clearing::Decision;
use gigaspot_market::economics::price_per_kw;
use gigaspot_market::ledger::{Party, TransferKind};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;

use super::bids::put_bid;
use super::config;
use super::money::{book, transfer_by_id};
use super::service::tallies;
use super::u64_col;
use super::{Fail, PgResult, PgStore, db_int, decoded, from_db, record};
use crate::books::Book;
use crate::error::{StoreError, StoreResult};
use crate::records::{
    Assignment, Compaction, DecisionSummary, IntervalStats, TickCommit, TickSnapshot,
};

/// Bids by id.
async fn bids_by_id(c: &impl Sql, ids: &[BidId]) -> PgResult<HashMap<BidId, Bid>> {
    let ids: Vec<i64> = ids
        .iter()
        .map(|id| db_int("bid", *id))
        .collect::<PgResult<_>>()?;
    c.q("SELECT record FROM bids WHERE id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|row| {
            let bid: Bid = decoded(row, "record", "bids")?;
            Ok((bid.id, bid))
        })
        .collect()
}

/// The books of the bids in `state`, by machine, by id.
async fn books(c: &impl Sql, state: &str) -> PgResult<BTreeMap<MachineId, Book>> {
    let mut books: BTreeMap<MachineId, Vec<Arc<Bid>>> = BTreeMap::new();
    for row in c
        .q(
            "SELECT record FROM bids WHERE state = $1 ORDER BY machine, id",
            &[&state],
        )
        .await?
    {
        let bid: Bid = decoded(&row, "record", "bids")?;
        books.entry(bid.machine).or_default().push(Arc::new(bid));
    }
    Ok(books.into_iter().map(|(m, b)| (m, Arc::new(b))).collect())
}

/// Records by (machine, interval) of `table` for the intervals still pending.
async fn pending_marks<T: serde::de::DeserializeOwned>(
    c: &impl Sql,
    table: &str,
) -> PgResult<BTreeMap<(MachineId, u64), T>> {
    c.q(
        &format!(
            "SELECT t.machine, t.interval_no, t.record FROM {table} t \
             JOIN pending p ON p.machine = t.machine AND p.interval_no = t.interval_no"
        ),
        &[],
    )
    .await?
    .iter()
    .map(|row| {
        Ok((
            (u64_col(row, "machine")?, u64_col(row, "interval_no")?),
            decoded(row, "record", table)?,
        ))
    })
    .collect()
}

/// The statistics record of `interval` (empty when it has none yet).
async fn stats(c: &impl Sql, interval: u64) -> PgResult<IntervalStats> {
    Ok(
        match c
            .qopt(
                "SELECT record FROM interval_stats WHERE interval_no = $1",
                &[&db_int("interval", interval)?],
            )
            .await?
        {
            Some(row) => decoded(&row, "record", "interval_stats")?,
            None => IntervalStats {
                interval,
                ..IntervalStats::default()
            },
        },
    )
}

/// Many rows at once: `INSERT … SELECT * FROM UNNEST(…)` of one array per column.
async fn insert_rows(
    tx: &Transaction<'_>,
    sql: &str,
    machines: &[i64],
    intervals: &[i64],
    records: &[Vec<u8>],
) -> PgResult<()> {
    if !machines.is_empty() {
        tx.exec(sql, &[&machines, &intervals, &records]).await?;
    }
    Ok(())
}

impl PgStore {
    pub(super) fn tick_snapshot(&self) -> StoreResult<TickSnapshot> {
        // One consistent view: a read in a serializable transaction.
        self.transaction(false, async |tx| {
            let machines: Vec<Arc<Machine>> = tx
                .q("SELECT record FROM machines ORDER BY id", &[])
                .await?
                .iter()
                .map(|row| decoded(row, "record", "machines").map(Arc::new))
                .collect::<PgResult<_>>()?;
            let bids = books(tx, "active").await?;
            let mut active_price_sums: HashMap<u64, u128> = HashMap::new();
            for bid in bids.values().flat_map(|b| b.iter()) {
                *active_price_sums.entry(bid.owner).or_default() += u128::from(bid.price_per_day.0);
            }
            let balances = tx
                .q("SELECT account, amount FROM balances WHERE amount > 0", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "account")?, Amount(u64_col(row, "amount")?))))
                .collect::<PgResult<_>>()?;
            let latest = tx
                .q("SELECT machine, record FROM latest_assignments", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "machine")?, decoded(row, "record", "latest")?)))
                .collect::<PgResult<_>>()?;
            let pending = tx
                .q(
                    "SELECT p.record, s.bid FROM pending p LEFT JOIN served s \
                     ON s.machine = p.machine AND s.interval_no = p.interval_no \
                     ORDER BY p.machine, p.interval_no",
                    &[],
                )
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        decoded(row, "record", "pending")?,
                        row.try_get::<_, Option<i64>>("bid")?.map(from_db),
                    ))
                })
                .collect::<PgResult<_>>()?;
            let failures = tx
                .q("SELECT bid, record FROM bid_failures", &[])
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        u64_col(row, "bid")?,
                        decoded(row, "record", "bid_failures")?,
                    ))
                })
                .collect::<PgResult<_>>()?;
            Ok(TickSnapshot {
                params: config::required(tx, config::PARAMS).await?,
                clock: config::required(tx, config::INTERVAL_CLOCK).await?,
                table: config::required(tx, config::GPU_TABLE).await?,
                fee_account: self.fee_account,
                cleared_through: config::get(tx, config::CLEARED_THROUGH).await?,
                machines,
                bids,
                balances,
                latest,
                pending,
                served_time: pending_marks(tx, "served_times").await?,
                unserved: pending_marks(tx, "unserved").await?,
                failures,
                active_price_sums,
                suspended: books(tx, "suspended").await?,
                tallies: tallies(tx, None).await?,
                books: super::inputs::last_books(tx).await?,
            })
        })
    }

    pub(super) fn commit_tick(&self, commit: &TickCommit) -> StoreResult<()> {
        self.write(async |tx| {
            self.check_lease(tx).await?;
            if config::get::<u64>(tx, config::CLEARED_THROUGH)
                .await?
                .is_some_and(|c| c >= commit.interval)
            {
                return Err(StoreError::Invalid {
                    field: "interval",
                    reason: format!("interval {} was cleared already", commit.interval),
                }
                .into());
            }
            let interval = db_int("interval", commit.interval)?;
            let mut touched: BTreeMap<u64, IntervalStats> = BTreeMap::new();
            let hosts: HashMap<MachineId, u64> = tx
                .q("SELECT id, host FROM machines", &[])
                .await?
                .iter()
                .map(|row| Ok((u64_col(row, "id")?, u64_col(row, "host")?)))
                .collect::<PgResult<_>>()?;
            for s in &commit.settlements {
                let mut booked_before = false;
                for t in &s.transfers {
                    booked_before |= transfer_by_id(tx, &t.id).await?.is_some();
                }
                if !booked_before && !s.transfers.is_empty() {
                    match book(tx, &s.transfers).await {
                        Ok(_) => {
                            if let std::collections::btree_map::Entry::Vacant(slot) =
                                touched.entry(s.interval)
                            {
                                slot.insert(stats(tx, s.interval).await?);
                            }
                            let entry = touched.get_mut(&s.interval).expect("inserted above");
                            let host = hosts.get(&s.machine).copied();
                            for t in &s.transfers {
                                if t.kind == TransferKind::Charge
                                    && let Party::Account(to) = t.to
                                    && Some(to) == host
                                {
                                    let revenue = entry.revenue_by_host.entry(to).or_default();
                                    *revenue = revenue.checked_add(t.amount).unwrap_or(*revenue);
                                }
                            }
                        }
                        // Never a negative balance: an owner who cannot pay is not charged
                        // (the ledger refuses before anything is written).
                        Err(Fail::Store(StoreError::Ledger(e))) => {
                            tracing::warn!(
                                machine = s.machine,
                                interval = s.interval,
                                "interval settled without charge: {e}"
                            );
                        }
                        Err(other) => return Err(other),
                    }
                }
                tx.exec(
                    "DELETE FROM pending WHERE machine = $1 AND interval_no = $2",
                    &[
                        &db_int("machine", s.machine)?,
                        &db_int("interval", s.interval)?,
                    ],
                )
                .await?;
            }
            // History's statistics of the cleared interval: its winners.
            let winners: Vec<BidId> = commit
                .assignments
                .iter()
                .filter_map(|a| a.winner.map(|w| w.bid))
                .collect();
            let winning = bids_by_id(tx, &winners).await?;
            let mut cleared = match touched.remove(&commit.interval) {
                Some(s) => s,
                None => stats(tx, commit.interval).await?,
            };
            cleared.cleared = true;
            for w in commit.assignments.iter().filter_map(|a| a.winner) {
                let power_w = winning.get(&w.bid).map_or(0, |b| b.total_power_limit_w());
                cleared.running += 1;
                cleared.price_sum += u128::from(w.price_per_day.0);
                cleared.price_per_kw_sum += price_per_kw(w.price_per_day.as_clore(), power_w);
            }
            touched.insert(commit.interval, cleared);
            for (at, s) in &touched {
                tx.exec(
                    "INSERT INTO interval_stats (interval_no, record) VALUES ($1, $2) \
                     ON CONFLICT (interval_no) DO UPDATE SET record = excluded.record",
                    &[&db_int("interval", *at)?, &record(s)?],
                )
                .await?;
            }
            self.write_assignments(tx, commit, interval).await?;
            super::inputs::write(tx, commit).await?;
            let clock = match &commit.clock {
                Some(clock) => clock.clone(),
                None => config::required(tx, config::INTERVAL_CLOCK).await?,
            };
            super::lab::write_prices(tx, &clock, commit.interval, &commit.prices).await?;
            self.write_bid_changes(tx, commit).await?;
            if let Some(clock) = &commit.clock {
                config::put(tx, config::INTERVAL_CLOCK, clock).await?;
            }
            for ((machine, day), add) in &commit.tallies {
                tx.exec(
                    "INSERT INTO tallies (machine, day, assigned, served) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (machine, day) DO UPDATE SET \
                     assigned = tallies.assigned + excluded.assigned, \
                     served = tallies.served + excluded.served",
                    &[
                        &db_int("machine", *machine)?,
                        &db_int("day", *day)?,
                        &i64::from(add.assigned),
                        &i64::from(add.served),
                    ],
                )
                .await?;
            }
            config::put(tx, config::CLEARED_THROUGH, &commit.interval).await?;
            Ok(())
        })
    }

    /// The tick's assignments (all, the latest per machine, the pending ones with a
    /// winner) and decision records, in bulk.
    async fn write_assignments(
        &self,
        tx: &Transaction<'_>,
        commit: &TickCommit,
        interval: i64,
    ) -> PgResult<()> {
        for a in &commit.assignments {
            if a.interval != commit.interval {
                return Err(StoreError::Invalid {
                    field: "assignments",
                    reason: format!(
                        "every record must be of interval {}, not {}",
                        commit.interval, a.interval
                    ),
                }
                .into());
            }
        }
        for d in &commit.decisions {
            if d.interval != commit.interval {
                return Err(StoreError::Invalid {
                    field: "decisions",
                    reason: format!(
                        "every record must be of interval {}, not {}",
                        commit.interval, d.interval
                    ),
                }
                .into());
            }
        }
        let machines: Vec<i64> = commit
            .assignments
            .iter()
            .map(|a| db_int("machine", a.machine))
            .collect::<PgResult<_>>()?;
        let intervals = vec![interval; machines.len()];
        let records: Vec<Vec<u8>> = commit
            .assignments
            .iter()
            .map(record)
            .collect::<PgResult<_>>()?;
        insert_rows(
            tx,
            "INSERT INTO assignments (machine, interval_no, record) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[])",
            &machines,
            &intervals,
            &records,
        )
        .await?;
        insert_rows(
            tx,
            "INSERT INTO latest_assignments (machine, record) \
             SELECT m, r FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) AS u (m, i, r) \
             ON CONFLICT (machine) DO UPDATE SET record = excluded.record",
            &machines,
            &intervals,
            &records,
        )
        .await?;
        let (mut pm, mut owners, mut charges, mut precords) = (vec![], vec![], vec![], vec![]);
        for a in &commit.assignments {
            if let Some(w) = a.winner {
                pm.push(db_int("machine", a.machine)?);
                owners.push(db_int("owner", w.owner)?);
                charges.push(db_int("charge", w.charge.total.0)?);
                precords.push(record(a)?);
            }
        }
        if !pm.is_empty() {
            tx.exec(
                "INSERT INTO pending (machine, interval_no, owner, charge, record) \
                 SELECT m, $2, o, c, r FROM UNNEST($1::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BYTEA[]) \
                 AS u (m, o, c, r)",
                &[&pm, &interval, &owners, &charges, &precords],
            )
            .await?;
        }
        let machines: Vec<i64> = commit
            .decisions
            .iter()
            .map(|d| db_int("machine", d.machine))
            .collect::<PgResult<_>>()?;
        let intervals = vec![interval; machines.len()];
        let records: Vec<Vec<u8>> = commit
            .decisions
            .iter()
            .map(record)
            .collect::<PgResult<_>>()?;
        insert_rows(
            tx,
            "INSERT INTO decisions (machine, interval_no, full_record, record) \
             SELECT m, i, TRUE, r FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) AS u (m, i, r)",
            &machines,
            &intervals,
            &records,
        )
        .await?;
        Ok(())
    }

    /// Expiries, suspensions and failure runs, each applied only to the bid version the
    /// engine judged (an edit since then wins).
    async fn write_bid_changes(&self, tx: &Transaction<'_>, commit: &TickCommit) -> PgResult<()> {
        let mut ids: Vec<BidId> = commit.expired.clone();
        ids.extend(commit.failures.iter().map(|(b, _)| b.id));
        ids.extend(commit.suspend.iter().map(|b| b.id));
        let current = bids_by_id(tx, &ids).await?;
        for id in &commit.expired {
            // Only a bid still active and past its lifetime expires.
            if let Some(bid) = current.get(id)
                && bid.state == BidState::Active
                && commit.now >= bid.expires_at
            {
                put_bid(
                    tx,
                    &Bid {
                        state: BidState::Expired,
                        ..bid.clone()
                    },
                )
                .await?;
            }
        }
        for (seen, run) in &commit.failures {
            if current.get(&seen.id) != Some(seen.as_ref()) {
                continue;
            }
            let id = db_int("bid", seen.id)?;
            match run {
                Some(run) => {
                    tx.exec(
                        "INSERT INTO bid_failures (bid, record) VALUES ($1, $2) \
                         ON CONFLICT (bid) DO UPDATE SET record = excluded.record",
                        &[&id, &record(run)?],
                    )
                    .await?;
                }
                None => {
                    tx.exec("DELETE FROM bid_failures WHERE bid = $1", &[&id])
                        .await?;
                }
            }
        }
        for seen in &commit.suspend {
            if let Some(bid) = current.get(&seen.id)
                && bid == seen.as_ref()
                && bid.state == BidState::Active
            {
                put_bid(
                    tx,
                    &Bid {
                        state: BidState::Suspended,
                        ..bid.clone()
                    },
                )
                .await?;
            }
        }
        Ok(())
    }

    pub(super) fn assignment(&self, machine: MachineId) -> StoreResult<Option<Assignment>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM latest_assignments WHERE machine = $1",
                    &[&db_int("machine", machine)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "latest_assignments")?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn assignments_between(
        &self,
        machine: MachineId,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Assignment>> {
        if first > last {
            return Ok(Vec::new());
        }
        self.read(async |c| {
            c.q(
                "SELECT record FROM assignments WHERE machine = $1 \
                 AND interval_no BETWEEN $2 AND $3 ORDER BY interval_no",
                &[
                    &db_int("machine", machine)?,
                    &db_int("interval", first)?,
                    &db_int("interval", last.min(i64::MAX as u64))?,
                ],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "assignments"))
            .collect()
        })
    }

    pub(super) fn interval_stats(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalStats>> {
        if first > last {
            return Ok(Vec::new());
        }
        self.read(async |c| {
            c.q(
                "SELECT record FROM interval_stats WHERE interval_no BETWEEN $1 AND $2 \
                 ORDER BY interval_no",
                &[
                    &db_int("interval", first)?,
                    &db_int("interval", last.min(i64::MAX as u64))?,
                ],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "interval_stats"))
            .collect()
        })
    }

    pub(super) fn decision(
        &self,
        machine: MachineId,
        interval: u64,
    ) -> StoreResult<Option<Decision>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM decisions WHERE machine = $1 AND interval_no = $2 \
                     AND full_record",
                    &[&db_int("machine", machine)?, &db_int("interval", interval)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "decisions")?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn decisions(&self, machine: MachineId, limit: usize) -> StoreResult<Vec<Decision>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async |c| {
            c.q(
                "SELECT record FROM decisions WHERE machine = $1 AND full_record \
                 ORDER BY interval_no DESC LIMIT $2",
                &[&db_int("machine", machine)?, &limit],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "decisions"))
            .collect()
        })
    }

    pub(super) fn decision_summaries(
        &self,
        machine: MachineId,
        limit: usize,
    ) -> StoreResult<Vec<DecisionSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async |c| {
            c.q(
                "SELECT full_record, record FROM decisions WHERE machine = $1 \
                 ORDER BY interval_no DESC LIMIT $2",
                &[&db_int("machine", machine)?, &limit],
            )
            .await?
            .iter()
            .map(|row| {
                if row.try_get::<_, bool>("full_record")? {
                    let d: Decision = decoded(row, "record", "decisions")?;
                    Ok(DecisionSummary::of(&d))
                } else {
                    decoded(row, "record", "decisions")
                }
            })
            .collect()
        })
    }

    /// Replaces up to `limit` full decision records of intervals before `before` by their
    /// summaries, oldest first, in one transaction.
    pub(super) fn compact_decisions(&self, before: u64, limit: usize) -> StoreResult<Compaction> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(async |tx| {
            let rows = tx
                .q(
                    "SELECT machine, interval_no, record FROM decisions \
                     WHERE full_record AND interval_no < $1 \
                     ORDER BY interval_no, machine LIMIT $2",
                    &[&db_int("interval", before.min(i64::MAX as u64))?, &limit],
                )
                .await?;
            let mut report = Compaction::default();
            for row in &rows {
                let full: &[u8] = row.try_get("record")?;
                let d: Decision = decoded(row, "record", "decisions")?;
                let summary = DecisionSummary {
                    full: false,
                    ..DecisionSummary::of(&d)
                };
                let compact = record(&summary)?;
                report.records += 1;
                report.bytes_before += full.len() as u64;
                report.bytes_after += compact.len() as u64;
                tx.exec(
                    "UPDATE decisions SET full_record = FALSE, record = $3 \
                     WHERE machine = $1 AND interval_no = $2",
                    &[
                        &row.get::<_, i64>("machine"),
                        &row.get::<_, i64>("interval_no"),
                        &compact,
                    ],
                )
                .await?;
            }
            // The plugins' inputs go with the full records.
            report.bytes_before += super::inputs::prune(tx, before, limit).await?;
            Ok(report)
        })
    }
}
