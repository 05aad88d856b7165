//! Moving a market into an empty PostgreSQL database (`gigaspot migrate`): every record of a
//! [`MarketExport`] with its own id, in one transaction, then the audit.

use deadpool_postgres::Transaction;
use gigaspot_market::ledger::Party;
use tokio_postgres::types::ToSql;

use super::Sql;
use super::config::{self, put};
use super::{PgResult, PgStore, db_int, record};
use crate::error::{StoreError, StoreResult};
use crate::export::MarketExport;

/// Rows per bulk statement.
const BATCH: usize = 5_000;

/// One column of a bulk insert.
enum Column {
    Int(Vec<i64>),
    MaybeInt(Vec<Option<i64>>),
    Text(Vec<String>),
    Bytes(Vec<Vec<u8>>),
}

impl Column {
    fn slice(&self, at: std::ops::Range<usize>) -> Box<dyn ToSql + Sync + Send + '_> {
        match self {
            Column::Int(v) => Box::new(&v[at]),
            Column::MaybeInt(v) => Box::new(&v[at]),
            Column::Text(v) => Box::new(&v[at]),
            Column::Bytes(v) => Box::new(&v[at]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::MaybeInt(v) => v.len(),
            Column::Text(v) => v.len(),
            Column::Bytes(v) => v.len(),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Column::Int(_) | Column::MaybeInt(_) => "BIGINT[]",
            Column::Text(_) => "TEXT[]",
            Column::Bytes(_) => "BYTEA[]",
        }
    }
}

/// Inserts the rows given as columns into `table (names)`, [`BATCH`] rows per statement.
async fn insert(
    tx: &Transaction<'_>,
    table: &str,
    names: &[&str],
    columns: &[Column],
) -> PgResult<()> {
    let rows = columns.first().map_or(0, Column::len);
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.sql_type()))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT * FROM UNNEST({})",
        names.join(", "),
        arrays.join(", ")
    );
    let mut at = 0;
    while at < rows {
        let end = (at + BATCH).min(rows);
        let values: Vec<Box<dyn ToSql + Sync + Send + '_>> =
            columns.iter().map(|c| c.slice(at..end)).collect();
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.exec(&sql, &params).await?;
        at = end;
    }
    Ok(())
}

fn ints(values: impl IntoIterator<Item = u64>, field: &'static str) -> PgResult<Column> {
    Ok(Column::Int(
        values
            .into_iter()
            .map(|v| db_int(field, v))
            .collect::<PgResult<_>>()?,
    ))
}

fn records<T: serde::Serialize>(values: impl IntoIterator<Item = T>) -> PgResult<Column> {
    Ok(Column::Bytes(
        values
            .into_iter()
            .map(|v| record(&v))
            .collect::<PgResult<_>>()?,
    ))
}

impl PgStore {
    /// Copies `market` into the empty database at `url` (its schema is created first) and
    /// audits the result. A database that holds a market already is refused untouched.
    pub fn import(url: &str, market: &MarketExport) -> StoreResult<PgStore> {
        let mut store = PgStore::connect(url)?;
        store.write(async |tx| {
            let used = tx
                .q1(
                    "SELECT (SELECT COUNT(*) FROM accounts) + (SELECT COUNT(*) FROM meta)",
                    &[],
                )
                .await?
                .get::<_, i64>(0);
            if used > 0 {
                return Err(StoreError::Invalid {
                    field: "to",
                    reason: "the database already holds a market; migrate into an empty one".into(),
                }
                .into());
            }
            copy(tx, market).await
        })?;
        store.fee_account = market.market.fee_account;
        store.pending_withdrawals = market.pending_withdrawals;
        let report = crate::Store::audit(&store)?;
        tracing::info!(transfers = report.transfers, "migrated market audited");
        if crate::Store::balances(&store)? != *market.balances() {
            return Err(StoreError::Corrupt {
                path: store.shown.clone(),
                detail: "the copied balances differ from the source's".into(),
            });
        }
        Ok(store)
    }
}

async fn copy(tx: &Transaction<'_>, m: &MarketExport) -> PgResult<()> {
    let s = &m.market;
    insert(
        tx,
        "accounts",
        &["id", "name", "record"],
        &[
            ints(m.accounts.iter().map(|a| a.id), "account")?,
            Column::Text(m.accounts.iter().map(|a| a.name.clone()).collect()),
            records(&m.accounts)?,
        ],
    )
    .await?;
    insert(
        tx,
        "api_keys",
        &["key_sha256", "account"],
        &[
            Column::Bytes(m.api_keys.iter().map(|(k, _)| k.to_vec()).collect()),
            ints(m.api_keys.iter().map(|(_, a)| *a), "account")?,
        ],
    )
    .await?;
    insert(
        tx,
        "machines",
        &["id", "host", "record"],
        &[
            ints(s.machines.iter().map(|x| x.id), "machine")?,
            ints(s.machines.iter().map(|x| x.host), "host")?,
            records(s.machines.iter().map(|x| x.as_ref()))?,
        ],
    )
    .await?;
    insert(
        tx,
        "agent_tokens",
        &["token_sha256", "machine"],
        &[
            Column::Bytes(m.agent_tokens.iter().map(|(k, _)| k.to_vec()).collect()),
            ints(m.agent_tokens.iter().map(|(_, x)| *x), "machine")?,
        ],
    )
    .await?;
    insert(
        tx,
        "bids",
        &["id", "owner", "machine", "state", "price_per_day", "record"],
        &[
            ints(m.bids.iter().map(|b| b.id), "bid")?,
            ints(m.bids.iter().map(|b| b.owner), "owner")?,
            ints(m.bids.iter().map(|b| b.machine), "machine")?,
            Column::Text(
                m.bids
                    .iter()
                    .map(|b| super::bids::state_name(b.state).into())
                    .collect(),
            ),
            ints(m.bids.iter().map(|b| b.price_per_day.0), "price")?,
            records(&m.bids)?,
        ],
    )
    .await?;
    insert(
        tx,
        "bid_keys",
        &["owner", "key", "bid"],
        &[
            ints(m.bid_keys.iter().map(|k| k.0), "owner")?,
            Column::Text(m.bid_keys.iter().map(|k| k.1.clone()).collect()),
            ints(m.bid_keys.iter().map(|k| k.2), "bid")?,
        ],
    )
    .await?;
    insert(
        tx,
        "balances",
        &["account", "amount"],
        &[
            ints(s.balances.keys().copied(), "account")?,
            ints(s.balances.values().map(|a| a.0), "amount")?,
        ],
    )
    .await?;
    let party = |p: Party| match p {
        Party::Account(a) => db_int("account", a).map(Some),
        _ => Ok(None),
    };
    insert(
        tx,
        "transfers",
        &[
            "seq",
            "id",
            "from_account",
            "to_account",
            "amount",
            "record",
        ],
        &[
            ints(1..=m.transfers.len() as u64, "seq")?,
            Column::Text(m.transfers.iter().map(|t| t.id.clone()).collect()),
            Column::MaybeInt(
                m.transfers
                    .iter()
                    .map(|t| party(t.from))
                    .collect::<PgResult<_>>()?,
            ),
            Column::MaybeInt(
                m.transfers
                    .iter()
                    .map(|t| party(t.to))
                    .collect::<PgResult<_>>()?,
            ),
            ints(m.transfers.iter().map(|t| t.amount.0), "amount")?,
            records(&m.transfers)?,
        ],
    )
    .await?;
    tx.exec(
        "UPDATE ledger_head SET last_seq = $1 WHERE one",
        &[&db_int("seq", m.transfers.len() as u64)?],
    )
    .await?;
    insert(
        tx,
        "withdrawals",
        &["id", "account", "state", "amount", "record"],
        &[
            ints(m.withdrawals.iter().map(|w| w.id), "withdrawal")?,
            ints(m.withdrawals.iter().map(|w| w.account), "account")?,
            Column::Text(
                m.withdrawals
                    .iter()
                    .map(|w| super::withdrawals::state_name(&w.state).into())
                    .collect(),
            ),
            ints(m.withdrawals.iter().map(|w| w.amount.0), "amount")?,
            records(&m.withdrawals)?,
        ],
    )
    .await?;
    insert(
        tx,
        "withdrawal_keys",
        &["account", "key", "withdrawal"],
        &[
            ints(m.withdrawal_keys.iter().map(|k| k.0), "account")?,
            Column::Text(m.withdrawal_keys.iter().map(|k| k.1.clone()).collect()),
            ints(m.withdrawal_keys.iter().map(|k| k.2), "withdrawal")?,
        ],
    )
    .await?;
    insert(
        tx,
        "plugin_versions",
        &["digest", "record"],
        &[
            Column::Text(m.plugin_versions.iter().map(|p| p.digest.clone()).collect()),
            records(&m.plugin_versions)?,
        ],
    )
    .await?;
    insert(
        tx,
        "interval_stats",
        &["interval_no", "record"],
        &[
            ints(m.interval_stats.iter().map(|x| x.interval), "interval")?,
            records(&m.interval_stats)?,
        ],
    )
    .await?;
    insert(
        tx,
        "latest_assignments",
        &["machine", "record"],
        &[
            ints(s.latest.keys().copied(), "machine")?,
            records(s.latest.values())?,
        ],
    )
    .await?;
    // The intervals not yet settled, with what agents reported of them.
    let pending: Vec<_> = s
        .pending
        .iter()
        .filter_map(|(a, served)| a.winner.map(|w| (a, w, *served)))
        .collect();
    insert(
        tx,
        "pending",
        &["machine", "interval_no", "owner", "charge", "record"],
        &[
            ints(pending.iter().map(|(a, _, _)| a.machine), "machine")?,
            ints(pending.iter().map(|(a, _, _)| a.interval), "interval")?,
            ints(pending.iter().map(|(_, w, _)| w.owner), "owner")?,
            ints(pending.iter().map(|(_, w, _)| w.charge.total.0), "charge")?,
            records(pending.iter().map(|(a, _, _)| *a))?,
        ],
    )
    .await?;
    let served: Vec<_> = pending
        .iter()
        .filter_map(|(a, _, s)| s.map(|bid| (a.machine, a.interval, bid)))
        .collect();
    insert(
        tx,
        "served",
        &["machine", "interval_no", "bid"],
        &[
            ints(served.iter().map(|x| x.0), "machine")?,
            ints(served.iter().map(|x| x.1), "interval")?,
            ints(served.iter().map(|x| x.2), "bid")?,
        ],
    )
    .await?;
    insert(
        tx,
        "served_times",
        &["machine", "interval_no", "record"],
        &[
            ints(s.served_time.keys().map(|k| k.0), "machine")?,
            ints(s.served_time.keys().map(|k| k.1), "interval")?,
            records(s.served_time.values())?,
        ],
    )
    .await?;
    insert(
        tx,
        "unserved",
        &["machine", "interval_no", "record"],
        &[
            ints(s.unserved.keys().map(|k| k.0), "machine")?,
            ints(s.unserved.keys().map(|k| k.1), "interval")?,
            records(s.unserved.values())?,
        ],
    )
    .await?;
    insert(
        tx,
        "bid_failures",
        &["bid", "record"],
        &[
            ints(s.failures.keys().copied(), "bid")?,
            records(s.failures.values())?,
        ],
    )
    .await?;
    insert(
        tx,
        "tallies",
        &["machine", "day", "assigned", "served"],
        &[
            ints(s.tallies.keys().map(|k| k.0), "machine")?,
            ints(s.tallies.keys().map(|k| k.1), "day")?,
            ints(
                s.tallies.values().map(|t| u64::from(t.assigned)),
                "assigned",
            )?,
            ints(s.tallies.values().map(|t| u64::from(t.served)), "served")?,
        ],
    )
    .await?;
    put(tx, config::FEE_ACCOUNT, &s.fee_account).await?;
    put(tx, config::PENDING_WITHDRAWALS, &m.pending_withdrawals).await?;
    put(tx, config::PARAMS, &s.params).await?;
    put(tx, config::GPU_TABLE, &s.table).await?;
    put(tx, config::INTERVAL_CLOCK, &s.clock).await?;
    if let Some(cleared) = s.cleared_through {
        put(tx, config::CLEARED_THROUGH, &cleared).await?;
    }
    put(tx, config::ACTIVE_PLUGINS, &m.active_plugins).await?;
    if let Some(state) = &m.plugin_state {
        put(tx, config::PLUGIN_STATE, state).await?;
    }
    tx.exec(
        "SELECT setval('ids', $1)",
        &[&db_int("last_id", m.last_id.max(1))?],
    )
    .await?;
    Ok(())
}
