//! Accounts, their API keys, machines and agent tokens on PostgreSQL.

use super::Sql;
use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::machine::{Machine, MachineId};

use super::{PgResult, PgStore, db_int, decoded, from_db, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};
use crate::records::MachineSpec;

/// Inserts a new account with the next id.
pub(crate) async fn insert_account(c: &impl Sql, name: &str, roles: &[Role]) -> PgResult<Account> {
    let id = next_id(c).await?;
    let account = Account {
        id,
        name: name.into(),
        roles: roles.to_vec(),
    };
    c.exec(
        "INSERT INTO accounts (id, name, record) VALUES ($1, $2, $3)",
        &[&db_int("account", id)?, &name, &record(&account)?],
    )
    .await?;
    Ok(account)
}

/// The next id of the market's one id sequence (accounts, machines, bids, withdrawals).
pub(crate) async fn next_id(c: &impl Sql) -> PgResult<u64> {
    let row = c.q1("SELECT nextval('ids')", &[]).await?;
    Ok(from_db(row.get(0)))
}

/// A machine by id.
pub(crate) async fn machine(c: &impl Sql, id: MachineId) -> PgResult<Option<Machine>> {
    match c
        .qopt(
            "SELECT record FROM machines WHERE id = $1",
            &[&db_int("machine", id)?],
        )
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "machines")?)),
        None => Ok(None),
    }
}

/// Reads an account by id inside a transaction or on a connection.
pub(crate) async fn account(c: &impl Sql, id: u64) -> PgResult<Option<Account>> {
    match c
        .qopt(
            "SELECT record FROM accounts WHERE id = $1",
            &[&db_int("account", id)?],
        )
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "accounts")?)),
        None => Ok(None),
    }
}

impl PgStore {
    pub(super) fn create_account(&self, name: &str, roles: &[Role]) -> StoreResult<Account> {
        checks::account_name(name)?;
        self.write(async |tx| insert_account(tx, name, roles).await)
    }

    pub(super) fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        self.read(async |c| account(c, id).await)
    }

    pub(super) fn add_api_key(&self, id: AccountId, key_sha256: [u8; 32]) -> StoreResult<()> {
        self.write(async |tx| {
            if account(tx, id).await?.is_none() {
                return Err(StoreError::NotFound {
                    what: "account",
                    id,
                }
                .into());
            }
            tx.exec(
                "INSERT INTO api_keys (key_sha256, account) VALUES ($1, $2) \
                 ON CONFLICT (key_sha256) DO UPDATE SET account = excluded.account",
                &[&&key_sha256[..], &db_int("account", id)?],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn account_by_key(&self, key_sha256: &[u8; 32]) -> StoreResult<Option<AccountId>> {
        self.read(async |c| {
            Ok(c.qopt(
                "SELECT account FROM api_keys WHERE key_sha256 = $1",
                &[&&key_sha256[..]],
            )
            .await?
            .map(|row| from_db(row.get(0))))
        })
    }

    pub(super) fn remove_api_key(&self, key_sha256: &[u8; 32]) -> StoreResult<bool> {
        self.write(async |tx| {
            Ok(tx
                .exec(
                    "DELETE FROM api_keys WHERE key_sha256 = $1",
                    &[&&key_sha256[..]],
                )
                .await?
                > 0)
        })
    }

    pub(super) fn has_api_key(&self, id: AccountId) -> StoreResult<bool> {
        self.read(async |c| {
            Ok(c.qopt(
                "SELECT 1 FROM api_keys WHERE account = $1 LIMIT 1",
                &[&db_int("account", id)?],
            )
            .await?
            .is_some())
        })
    }

    pub(super) fn set_agent_token(&self, id: MachineId, token_sha256: [u8; 32]) -> StoreResult<()> {
        self.write(async |tx| {
            if machine(tx, id).await?.is_none() {
                return Err(StoreError::NotFound {
                    what: "machine",
                    id,
                }
                .into());
            }
            tx.exec(
                "INSERT INTO agent_tokens (token_sha256, machine) VALUES ($1, $2) \
                 ON CONFLICT (token_sha256) DO UPDATE SET machine = excluded.machine",
                &[&&token_sha256[..], &db_int("machine", id)?],
            )
            .await?;
            Ok(())
        })
    }

    pub(super) fn machine_by_agent_token(
        &self,
        token_sha256: &[u8; 32],
    ) -> StoreResult<Option<MachineId>> {
        self.read(async |c| {
            Ok(c.qopt(
                "SELECT machine FROM agent_tokens WHERE token_sha256 = $1",
                &[&&token_sha256[..]],
            )
            .await?
            .map(|row| from_db(row.get(0))))
        })
    }

    pub(super) fn register_machine(&self, spec: MachineSpec) -> StoreResult<Machine> {
        checks::machine_spec(&spec)?;
        self.write(async |tx| {
            let host = account(tx, spec.host).await?;
            checks::role(host.as_ref(), spec.host, Role::Host, "register machines")?;
            let id = next_id(tx).await?;
            let machine = checks::new_machine(id, spec.clone());
            tx.exec(
                "INSERT INTO machines (id, host, record) VALUES ($1, $2, $3)",
                &[
                    &db_int("machine", id)?,
                    &db_int("host", machine.host)?,
                    &record(&machine)?,
                ],
            )
            .await?;
            Ok(machine)
        })
    }

    pub(super) fn modify_machine(
        &self,
        id: MachineId,
        change: &mut dyn FnMut(&mut Machine) -> StoreResult<()>,
    ) -> StoreResult<Machine> {
        // The change runs again on a retry, on the record as the retry reads it.
        let change = std::cell::RefCell::new(change);
        self.write_changes(async |tx| {
            let before = machine(tx, id).await?.ok_or(StoreError::NotFound {
                what: "machine",
                id,
            })?;
            let mut after = before.clone();
            (change.borrow_mut())(&mut after)?;
            checks::machine_change(&before, &after)?;
            // A record left equal is not written (a repeated heartbeat).
            let changed = after != before;
            if changed {
                tx.exec(
                    "UPDATE machines SET record = $2 WHERE id = $1",
                    &[&db_int("machine", id)?, &record(&after)?],
                )
                .await?;
            }
            Ok((after, changed))
        })
    }

    pub(super) fn machine(&self, id: MachineId) -> StoreResult<Option<Machine>> {
        self.read(async |c| machine(c, id).await)
    }

    pub(super) fn machines(&self) -> StoreResult<Vec<Machine>> {
        self.read(async |c| {
            c.q("SELECT record FROM machines ORDER BY id", &[])
                .await?
                .iter()
                .map(|row| decoded(row, "record", "machines"))
                .collect()
        })
    }
}
