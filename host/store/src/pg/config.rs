//! What an operator sets, kept in the `meta` table (parameters, the clock range table, the
//! interval clock, plugin versions and the plugin registry's state), and the records a
//! new market starts with.

use super::Sql;
use gigaspot_market::account::Role;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::params::MarketParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{PgResult, PgStore, decoded, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};
use crate::records::{ActivePlugins, PluginState, PluginVersionRecord};

pub(crate) const FEE_ACCOUNT: &str = "fee_account";
pub(crate) const PENDING_WITHDRAWALS: &str = "pending_withdrawals";
pub(crate) const PARAMS: &str = "params";
pub(crate) const GPU_TABLE: &str = "gpu_table";
pub(crate) const INTERVAL_CLOCK: &str = "interval_clock";
pub(crate) const CLEARED_THROUGH: &str = "cleared_through";
pub(crate) const ACTIVE_PLUGINS: &str = "active_plugins";
pub(crate) const PLUGIN_STATE: &str = "plugin_state";

/// The `meta` record `key`, if set.
pub(crate) async fn get<T: DeserializeOwned>(c: &impl Sql, key: &str) -> PgResult<Option<T>> {
    match c
        .qopt("SELECT value FROM meta WHERE key = $1", &[&key])
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "value", key)?)),
        None => Ok(None),
    }
}

/// The `meta` record `key`, which every initialised database has.
pub(crate) async fn required<T: DeserializeOwned>(c: &impl Sql, key: &str) -> PgResult<T> {
    get(c, key).await?.ok_or_else(|| {
        StoreError::Corrupt {
            path: format!("meta/{key}"),
            detail: "a required record is missing".into(),
        }
        .into()
    })
}

/// Sets the `meta` record `key`.
pub(crate) async fn put<T: Serialize>(c: &impl Sql, key: &str, value: &T) -> PgResult<()> {
    c.exec(
        "INSERT INTO meta (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &record(value)?],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// Creates what a new market starts with (the operator's fee account, the account
    /// that holds requested withdrawals, default parameters and clock table), once;
    /// returns the two accounts' ids.
    pub(super) fn initialise(&self) -> StoreResult<(u64, u64)> {
        self.write(async |tx| {
            if let (Some(fee), Some(pending)) = (
                get::<u64>(tx, FEE_ACCOUNT).await?,
                get::<u64>(tx, PENDING_WITHDRAWALS).await?,
            ) {
                return Ok((fee, pending));
            }
            let mut ids = Vec::new();
            for (name, roles) in [
                ("operator fees", vec![Role::Operator]),
                ("pending withdrawals", Vec::new()),
            ] {
                let id = super::accounts::insert_account(tx, name, &roles).await?;
                ids.push(id.id);
            }
            put(tx, FEE_ACCOUNT, &ids[0]).await?;
            put(tx, PENDING_WITHDRAWALS, &ids[1]).await?;
            let params = MarketParams::default();
            put(tx, PARAMS, &params).await?;
            put(tx, GPU_TABLE, &GpuRangeTable::defaults()).await?;
            put(
                tx,
                INTERVAL_CLOCK,
                &IntervalClock::uniform(params.billing_interval_s),
            )
            .await?;
            Ok((ids[0], ids[1]))
        })
    }

    pub(super) fn params(&self) -> StoreResult<MarketParams> {
        self.read(async |c| required(c, PARAMS).await)
    }

    pub(super) fn set_params(&self, params: &MarketParams) -> StoreResult<()> {
        checks::params(params)?;
        self.write(async |tx| {
            put(tx, PARAMS, params).await?;
            // Before the first clearing no interval was numbered yet: a new length
            // applies to the clock at once. Afterwards the engine opens a new epoch at
            // the next boundary.
            if get::<u64>(tx, CLEARED_THROUGH).await?.is_none() {
                put(
                    tx,
                    INTERVAL_CLOCK,
                    &IntervalClock::uniform(params.billing_interval_s),
                )
                .await?;
            }
            Ok(())
        })
    }

    pub(super) fn interval_clock(&self) -> StoreResult<IntervalClock> {
        self.read(async |c| required(c, INTERVAL_CLOCK).await)
    }

    pub(super) fn cleared_through(&self) -> StoreResult<Option<u64>> {
        self.read(async |c| get(c, CLEARED_THROUGH).await)
    }

    pub(super) fn gpu_table(&self) -> StoreResult<GpuRangeTable> {
        self.read(async |c| required(c, GPU_TABLE).await)
    }

    pub(super) fn set_gpu_table(&self, table: &GpuRangeTable) -> StoreResult<()> {
        checks::gpu_table(table)?;
        self.write(async |tx| put(tx, GPU_TABLE, table).await)
    }

    pub(super) fn put_plugin_version(&self, version: &PluginVersionRecord) -> StoreResult<()> {
        self.write(async |tx| {
            tx.exec(
                "INSERT INTO plugin_versions (digest, record) VALUES ($1, $2) \
                 ON CONFLICT (digest) DO UPDATE SET record = excluded.record",
                &[&version.digest, &record(version)?],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn remove_plugin_version(&self, digest: &str) -> StoreResult<bool> {
        self.write(async |tx| {
            Ok(tx
                .exec("DELETE FROM plugin_versions WHERE digest = $1", &[&digest])
                .await?
                > 0)
        })
    }

    pub(super) fn plugin_versions(&self) -> StoreResult<Vec<PluginVersionRecord>> {
        self.read(async |c| {
            c.q("SELECT record FROM plugin_versions ORDER BY digest", &[])
                .await?
                .iter()
                .map(|row| decoded(row, "record", "plugin_versions"))
                .collect()
        })
    }

    pub(super) fn set_active_plugins(&self, active: &ActivePlugins) -> StoreResult<()> {
        self.write(async |tx| put(tx, ACTIVE_PLUGINS, active).await)
    }

    pub(super) fn active_plugins(&self) -> StoreResult<ActivePlugins> {
        self.read(async |c| Ok(get(c, ACTIVE_PLUGINS).await?.unwrap_or_default()))
    }

    pub(super) fn set_plugin_state(&self, state: &PluginState) -> StoreResult<()> {
        self.write(async |tx| put(tx, PLUGIN_STATE, state).await)
    }

    pub(super) fn plugin_state(&self) -> StoreResult<Option<PluginState>> {
        self.read(async |c| get(c, PLUGIN_STATE).await)
    }
}
