//! The PostgreSQL store, for operators who run several service replicas on one database.
//!
//! Every read-modify-write is one serializable transaction, retried from the start when the
//! database reports a serialization failure (SQLSTATE 40001), a deadlock (40P01) or a
//! unique-key race (23505: the retry sees the row the other transaction wrote). Nothing
//! is kept in memory between calls, so a write through one replica is visible through
//! every other at once. Money is `BIGINT` base units; a transfer id is a unique key, so a
//! second booking of the same id fails inside the database.
//!
//! The [`crate::Store`] trait is synchronous. A `PgStore` owns a small Tokio runtime that
//! drives its connections (tokio-postgres with a deadpool pool) and waits for each
//! operation on the calling thread, so it can be called from any thread.

mod accounts;
mod bids;
mod config;
mod import;
mod inputs;
mod lab;
mod lease;
mod money;
mod orders;
pub mod schema;
mod service;
mod snapshots;
mod store_impl;
mod ticks;
mod withdrawals;

use std::future::Future;

use deadpool_postgres::{ClientWrapper, Transaction};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls, Row, Statement};

use crate::codec::{decode, encode};
use crate::error::{StoreError, StoreResult};

/// Attempts of one transaction before a conflict is reported as a failure.
const ATTEMPTS: u32 = 64;

/// The PostgreSQL implementation of [`crate::Store`].
pub struct PgStore {
    /// Drives the connections; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Where the database is, without credentials (for messages).
    shown: String,
    fee_account: u64,
    pending_withdrawals: u64,
    /// The last generation read (answered again, advanced, when the database cannot be
    /// reached, so that caches rebuild and report the failure).
    generation: std::sync::atomic::AtomicU64,
    /// The clearer's lease this store last took (holder, epoch): tick commits check it.
    fence: std::sync::Mutex<Option<(String, u64)>>,
    /// New bids, written in batches (one transaction each; see `crate::intake`).
    bid_intake: crate::intake::Intake<crate::intake::BidRequest, StoreResult<crate::PlacedBid>>,
}

/// Statements through the connection's cache of prepared statements: parsed and planned
/// once per connection, not once per call (a bid's transaction runs about ten).
#[allow(async_fn_in_trait)] // called on the store's own executor only
pub(crate) trait Sql {
    /// The prepared form of `sql`, from the cache.
    async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error>;
    /// The rows of `sql`.
    async fn q(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error>;
    /// The one row of `sql`.
    async fn q1(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error>;
    /// The row of `sql`, if any.
    async fn qopt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error>;
    /// Runs `sql`: the rows it changed.
    async fn exec(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>;
}

macro_rules! cached_sql {
    ($t:ty) => {
        impl Sql for $t {
            async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
                self.prepare_cached(sql).await
            }
            async fn q(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, tokio_postgres::Error> {
                let statement = self.prepared(sql).await?;
                self.query(&statement, params).await
            }
            async fn q1(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, tokio_postgres::Error> {
                let statement = self.prepared(sql).await?;
                self.query_one(&statement, params).await
            }
            async fn qopt(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, tokio_postgres::Error> {
                let statement = self.prepared(sql).await?;
                self.query_opt(&statement, params).await
            }
            async fn exec(
                &self,
                sql: &str,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, tokio_postgres::Error> {
                let statement = self.prepared(sql).await?;
                self.execute(&statement, params).await
            }
        }
    };
}

cached_sql!(ClientWrapper);
cached_sql!(Transaction<'_>);

/// Why a transaction body stopped: the database (maybe worth a retry) or the store's
/// own refusal (never retried).
pub(crate) enum Fail {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Db(e) => backend(&e),
            Fail::Store(e) => e,
        }
    }
}

pub(crate) type PgResult<T> = Result<T, Fail>;

fn backend(e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("PostgreSQL: {e}")),
    }
}

/// Whether running the transaction again may succeed.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// A `u64` (id, amount, time) as a `BIGINT`; values beyond `i64::MAX` are refused.
pub(crate) fn db_int(field: &'static str, v: u64) -> PgResult<i64> {
    i64::try_from(v).map_err(|_| {
        Fail::Store(StoreError::Invalid {
            field,
            reason: format!("{v} is beyond what the database stores ({})", i64::MAX),
        })
    })
}

/// A `BIGINT` read back as the `u64` it was written from.
pub(crate) fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// A `BIGINT` column of a row as `u64`.
pub(crate) fn u64_col(row: &Row, column: &str) -> PgResult<u64> {
    Ok(from_db(row.try_get::<_, i64>(column)?))
}

/// Encodes a record for a `BYTEA` column (postcard, as the sled store).
pub(crate) fn record<T: serde::Serialize>(value: &T) -> PgResult<Vec<u8>> {
    Ok(encode(value)?)
}

/// Decodes the `BYTEA` column `column` of `row`; `what` names it in errors.
pub(crate) fn decoded<T: serde::de::DeserializeOwned>(
    row: &Row,
    column: &str,
    what: &str,
) -> PgResult<T> {
    let bytes: &[u8] = row.try_get(column)?;
    Ok(decode(what.as_bytes(), bytes)?)
}

impl Drop for PgStore {
    /// Stops the connections' runtime without waiting for it, so that a store may be
    /// dropped anywhere, an async task included (the service drops it there at shutdown).
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), applies the
    /// schema migrations it lacks and creates the accounts a new market starts with. A
    /// database of a newer schema is refused and left untouched.
    pub fn open(url: &str) -> StoreResult<PgStore> {
        let mut store = PgStore::connect(url)?;
        let (fee, pending) = store.initialise()?;
        store.fee_account = fee;
        store.pending_withdrawals = pending;
        Ok(store)
    }

    /// Connects and applies the schema migrations, creating nothing else.
    fn connect(url: &str) -> StoreResult<PgStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Invalid {
            field: "database_url",
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        let shown = format!(
            "postgres://{}/{}",
            config
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default(),
            config.get_dbname().unwrap_or_default()
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gigaspot-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(32)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let store = PgStore {
            runtime: Some(runtime),
            pool,
            shown,
            fee_account: 0,
            pending_withdrawals: 0,
            generation: Default::default(),
            fence: Default::default(),
            bid_intake: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `work` to completion on the calling thread, with the store's runtime entered
    /// (its connections run there).
    fn block<T>(&self, work: impl Future<Output = T>) -> T {
        let _entered = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .enter();
        futures_executor::block_on(work)
    }

    /// Runs `body` in a serializable transaction and commits it, from the start again
    /// while the database reports a conflict.
    pub(crate) fn write<T>(
        &self,
        body: impl AsyncFn(&Transaction<'_>) -> PgResult<T>,
    ) -> StoreResult<T> {
        self.transaction(true, body)
    }

    /// [`PgStore::write`] for a body that may find nothing to change (a repeated
    /// heartbeat): it answers whether it wrote, and only then moves the generation.
    pub(crate) fn write_changes<T>(
        &self,
        body: impl AsyncFn(&Transaction<'_>) -> PgResult<(T, bool)>,
    ) -> StoreResult<T> {
        self.transaction(false, async |tx| {
            let (value, changed) = body(tx).await?;
            if changed {
                tx.execute("SELECT nextval('generation')", &[]).await?;
            }
            Ok(value)
        })
    }

    /// [`PgStore::write`], moving the generation or not (migrations run before the
    /// generation sequence exists).
    pub(crate) fn transaction<T>(
        &self,
        moves_generation: bool,
        body: impl AsyncFn(&Transaction<'_>) -> PgResult<T>,
    ) -> StoreResult<T> {
        self.block(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let outcome = async {
                    let mut client = self.pool.get().await.map_err(|e| {
                        Fail::Store(StoreError::Backend(format!(
                            "cannot reach the database {}: {e}",
                            self.shown
                        )))
                    })?;
                    let tx = client
                        .build_transaction()
                        .isolation_level(IsolationLevel::Serializable)
                        .start()
                        .await?;
                    // Every write moves the generation that caches compare (a sequence:
                    // never a conflict between writers).
                    if moves_generation {
                        tx.execute("SELECT nextval('generation')", &[]).await?;
                    }
                    let value = body(&tx).await?;
                    tx.commit().await?;
                    PgResult::Ok(value)
                }
                .await;
                match outcome {
                    Err(Fail::Db(e)) if retryable(&e) && attempt < ATTEMPTS => {
                        // Back off a little more each time, so contenders spread out.
                        let pause = std::time::Duration::from_micros(100 << attempt.min(10));
                        tokio::time::sleep(pause).await;
                    }
                    other => return other.map_err(StoreError::from),
                }
            }
        })
    }

    /// Runs `body` on a pooled connection without a transaction of its own (single
    /// statements, which PostgreSQL runs atomically).
    pub(crate) fn read<T>(
        &self,
        body: impl AsyncFn(&ClientWrapper) -> PgResult<T>,
    ) -> StoreResult<T> {
        self.block(async {
            let client = self.pool.get().await.map_err(|e| {
                StoreError::Backend(format!("cannot reach the database {}: {e}", self.shown))
            })?;
            let client: &ClientWrapper = &client;
            body(client).await.map_err(StoreError::from)
        })
    }

    /// A number that changes whenever the stored market may have changed, through any
    /// replica: the generation sequence's last value.
    pub(crate) fn generation_now(&self) -> u64 {
        use std::sync::atomic::Ordering;
        match self.read(async |c| {
            let row = c.q1("SELECT last_value FROM generation", &[]).await?;
            Ok(from_db(row.get(0)))
        }) {
            Ok(g) => {
                self.generation.store(g, Ordering::Release);
                g
            }
            Err(_) => self.generation.fetch_add(1, Ordering::AcqRel) + 1,
        }
    }

    fn migrate(&self) -> StoreResult<()> {
        let found = self.read(async |c| {
            c.batch_execute(schema::VERSION_TABLE).await?;
            let row = c
                .q1("SELECT COALESCE(MAX(version), 0) FROM gigaspot_schema", &[])
                .await?;
            Ok(row.get::<_, i32>(0) as u32)
        })?;
        if found > schema::SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.shown.clone(),
                found,
                supported: schema::SCHEMA_VERSION,
            });
        }
        for version in found + 1..=schema::SCHEMA_VERSION {
            // Replicas starting together race here: the version row's key lets one
            // apply the migration and the others retry and find it applied.
            self.transaction(false, async |tx| {
                let done = tx
                    .qopt(
                        "SELECT 1 FROM gigaspot_schema WHERE version = $1",
                        &[&(version as i32)],
                    )
                    .await?;
                if done.is_none() {
                    tx.batch_execute(schema::MIGRATIONS[version as usize - 1])
                        .await?;
                    schema::rewrite_records(tx, version).await?;
                    tx.execute(
                        "INSERT INTO gigaspot_schema (version) VALUES ($1)",
                        &[&(version as i32)],
                    )
                    .await?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}
