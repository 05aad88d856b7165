//! The PostgreSQL schema: versioned migrations applied at start, in order, each in its
//! own transaction with the version row it sets; a database of a newer version is refused
//! and left untouched, as the sled store does.
//!
//! The SQL keeps to what PostgreSQL and the PostgreSQL-compatible distributed databases
//! (CockroachDB, YugabyteDB) all run: plain tables, `BIGINT` money in base units with
//! `CHECK`s, unique keys, no triggers, no advisory locks, no `LISTEN/NOTIFY`.

/// The newest schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 4;

/// Migration `n` (1-based) brings a database from version `n - 1` to `n`, with the
/// records [`rewrite_records`] rewrites in the same transaction.
pub(crate) const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1, V2, V3, V4];

/// Version 4, standing orders: one record per order, found by owner.
const V4: &str = r#"
CREATE TABLE standing_orders (
    id     BIGINT PRIMARY KEY,
    owner  BIGINT NOT NULL REFERENCES accounts (id),
    record BYTEA NOT NULL
);
CREATE INDEX standing_orders_by_owner ON standing_orders (owner, id);
"#;

/// Version 3, the host's background job: no table changes; every machine record is
/// rewritten with the job, its declared earnings and whether the ceilings are the host's
/// own (see [`rewrite_records`]).
const V3: &str = "";

/// The record rewrites of migration `version`, in its transaction: version 3 reads each
/// machine in the earlier layout and writes it in the current one.
pub(crate) async fn rewrite_records(
    tx: &tokio_postgres::Transaction<'_>,
    version: u32,
) -> super::PgResult<()> {
    if version != 3 {
        return Ok(());
    }
    let rows = tx.query("SELECT id, record FROM machines", &[]).await?;
    for row in rows {
        let id: i64 = row.get(0);
        let old: crate::machine_v5::MachineV5 = super::decoded(&row, "record", "machines")?;
        tx.execute(
            "UPDATE machines SET record = $2 WHERE id = $1",
            &[&id, &super::record(&old.upgrade())?],
        )
        .await?;
    }
    Ok(())
}

/// Version 2, the strategy lab: what the plugins saw at each clearing (for replays,
/// backtests and "what would have won"): a record per machine and interval, and each
/// machine's book from the interval it changed (see `gigaspot_market::plugin_input`); the
/// clearing prices per GPU model of each interval; the shadow strategy's differences.
const V2: &str = r#"
CREATE TABLE clearing_inputs (
    interval_no BIGINT NOT NULL,
    machine     BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE TABLE clearing_books (
    machine BIGINT NOT NULL,
    since   BIGINT NOT NULL,
    digest  BYTEA NOT NULL,
    body    BYTEA NOT NULL,
    PRIMARY KEY (machine, since)
);
CREATE TABLE market_prices (
    interval_no BIGINT PRIMARY KEY,
    record      BYTEA NOT NULL
);
CREATE TABLE shadow_diffs (
    interval_no BIGINT PRIMARY KEY,
    record      BYTEA NOT NULL
);
"#;

/// Version 1: accounts and keys, machines, bids, the ledger, withdrawals, parameters and
/// plugins, the intervals (assignments, decisions, served marks, tallies, statistics) and
/// the clearer's lease.
const V1: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE SEQUENCE ids START WITH 1;
CREATE SEQUENCE generation START WITH 1;
CREATE TABLE accounts (
    id     BIGINT PRIMARY KEY,
    name   TEXT NOT NULL,
    record BYTEA NOT NULL
);
CREATE TABLE api_keys (
    key_sha256 BYTEA PRIMARY KEY,
    account    BIGINT NOT NULL REFERENCES accounts (id)
);
CREATE INDEX api_keys_by_account ON api_keys (account);
CREATE TABLE machines (
    id     BIGINT PRIMARY KEY,
    host   BIGINT NOT NULL REFERENCES accounts (id),
    record BYTEA NOT NULL
);
CREATE TABLE agent_tokens (
    token_sha256 BYTEA PRIMARY KEY,
    machine      BIGINT NOT NULL REFERENCES machines (id)
);
CREATE TABLE bids (
    id      BIGINT PRIMARY KEY,
    owner   BIGINT NOT NULL REFERENCES accounts (id),
    machine BIGINT NOT NULL REFERENCES machines (id),
    state   TEXT NOT NULL,
    price_per_day BIGINT NOT NULL CHECK (price_per_day >= 0),
    record  BYTEA NOT NULL
);
CREATE INDEX bids_by_machine ON bids (machine, id);
CREATE INDEX bids_by_owner ON bids (owner, id);
CREATE TABLE bid_keys (
    owner BIGINT NOT NULL,
    key   TEXT NOT NULL,
    bid   BIGINT NOT NULL REFERENCES bids (id),
    PRIMARY KEY (owner, key)
);
CREATE TABLE balances (
    account BIGINT PRIMARY KEY REFERENCES accounts (id),
    amount  BIGINT NOT NULL CHECK (amount >= 0)
);
CREATE TABLE ledger_head (
    one      BOOLEAN PRIMARY KEY CHECK (one),
    last_seq BIGINT NOT NULL
);
INSERT INTO ledger_head VALUES (TRUE, 0);
CREATE TABLE transfers (
    seq          BIGINT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    from_account BIGINT,
    to_account   BIGINT,
    amount       BIGINT NOT NULL CHECK (amount > 0),
    record       BYTEA NOT NULL
);
CREATE INDEX transfers_from ON transfers (from_account, seq);
CREATE INDEX transfers_to ON transfers (to_account, seq);
CREATE TABLE plugin_versions (
    digest TEXT PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE withdrawals (
    id      BIGINT PRIMARY KEY,
    account BIGINT NOT NULL REFERENCES accounts (id),
    state   TEXT NOT NULL,
    amount  BIGINT NOT NULL CHECK (amount > 0),
    record  BYTEA NOT NULL
);
CREATE INDEX withdrawals_by_account ON withdrawals (account, id);
CREATE TABLE withdrawal_keys (
    account    BIGINT NOT NULL,
    key        TEXT NOT NULL,
    withdrawal BIGINT NOT NULL REFERENCES withdrawals (id),
    PRIMARY KEY (account, key)
);
CREATE TABLE assignments (
    interval_no BIGINT NOT NULL,
    machine     BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE INDEX assignments_by_machine ON assignments (machine, interval_no);
CREATE TABLE latest_assignments (
    machine BIGINT PRIMARY KEY,
    record  BYTEA NOT NULL
);
CREATE TABLE pending (
    machine     BIGINT NOT NULL,
    interval_no BIGINT NOT NULL,
    owner       BIGINT NOT NULL,
    charge      BIGINT NOT NULL CHECK (charge >= 0),
    record      BYTEA NOT NULL,
    PRIMARY KEY (machine, interval_no)
);
CREATE INDEX pending_by_owner ON pending (owner);
CREATE TABLE decisions (
    interval_no BIGINT NOT NULL,
    machine     BIGINT NOT NULL,
    full_record BOOLEAN NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE INDEX decisions_by_machine ON decisions (machine, interval_no);
CREATE TABLE served (
    machine     BIGINT NOT NULL,
    interval_no BIGINT NOT NULL,
    bid         BIGINT NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE TABLE served_times (
    machine     BIGINT NOT NULL,
    interval_no BIGINT NOT NULL,
    kept        BOOLEAN NOT NULL DEFAULT FALSE,
    record      BYTEA NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE TABLE unserved (
    machine     BIGINT NOT NULL,
    interval_no BIGINT NOT NULL,
    record      BYTEA NOT NULL,
    PRIMARY KEY (interval_no, machine)
);
CREATE TABLE bid_failures (
    bid    BIGINT PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE tallies (
    machine  BIGINT NOT NULL,
    day      BIGINT NOT NULL,
    assigned BIGINT NOT NULL,
    served   BIGINT NOT NULL,
    PRIMARY KEY (machine, day)
);
CREATE TABLE interval_stats (
    interval_no BIGINT PRIMARY KEY,
    record      BYTEA NOT NULL
);
CREATE TABLE heartbeats (
    machine BIGINT PRIMARY KEY,
    at      BIGINT NOT NULL
);
CREATE TABLE snapshots (
    ts   BIGINT PRIMARY KEY,
    body BYTEA NOT NULL
);
CREATE TABLE clearer_lease (
    one           BOOLEAN PRIMARY KEY CHECK (one),
    holder        TEXT NOT NULL,
    epoch         BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
"#;

/// The table that holds the schema version (created before any migration).
pub(crate) const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS gigaspot_schema (version INTEGER PRIMARY KEY)";
