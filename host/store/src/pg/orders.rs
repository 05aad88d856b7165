//! Standing orders on PostgreSQL (`standing_orders`), as the sled store keeps them
//! (`ordr/` keys): one record per order, changed in one transaction.

use gigaspot_market::account::{AccountId, Role};
use gigaspot_market::standing_order::{OrderId, OrderSpec, StandingOrder};

use super::accounts::{account, next_id};
use super::{PgStore, Sql, db_int, decoded, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};

impl PgStore {
    pub(super) fn create_order(
        &self,
        owner: AccountId,
        spec: &OrderSpec,
        now: u64,
    ) -> StoreResult<StandingOrder> {
        self.write(async |tx| {
            let account = account(tx, owner).await?;
            checks::role(
                account.as_ref(),
                owner,
                Role::Client,
                "place standing orders",
            )?;
            let id = next_id(tx).await?;
            let order = checks::new_order(id, owner, spec, now)?;
            tx.exec(
                "INSERT INTO standing_orders (id, owner, record) VALUES ($1, $2, $3)",
                &[
                    &db_int("order", id)?,
                    &db_int("owner", owner)?,
                    &record(&order)?,
                ],
            )
            .await?;
            Ok(order)
        })
    }

    pub(super) fn order(&self, id: OrderId) -> StoreResult<Option<StandingOrder>> {
        self.read(async |c| {
            match c
                .qopt(
                    "SELECT record FROM standing_orders WHERE id = $1",
                    &[&db_int("order", id)?],
                )
                .await?
            {
                Some(row) => Ok(Some(decoded(&row, "record", "standing_orders")?)),
                None => Ok(None),
            }
        })
    }

    pub(super) fn orders(&self, owner: Option<AccountId>) -> StoreResult<Vec<StandingOrder>> {
        self.read(async |c| {
            let rows = match owner {
                Some(o) => {
                    c.q(
                        "SELECT record FROM standing_orders WHERE owner = $1 ORDER BY id",
                        &[&db_int("owner", o)?],
                    )
                    .await?
                }
                None => {
                    c.q("SELECT record FROM standing_orders ORDER BY id", &[])
                        .await?
                }
            };
            rows.iter()
                .map(|row| decoded(row, "record", "standing_orders"))
                .collect()
        })
    }

    pub(super) fn modify_order(
        &self,
        id: OrderId,
        change: &mut dyn FnMut(&mut StandingOrder) -> StoreResult<()>,
    ) -> StoreResult<StandingOrder> {
        // The change runs again on a retry, on the record as the retry reads it.
        let change = std::cell::RefCell::new(change);
        self.write(async |tx| {
            let row = tx
                .qopt(
                    "SELECT record FROM standing_orders WHERE id = $1 FOR UPDATE",
                    &[&db_int("order", id)?],
                )
                .await?
                .ok_or(StoreError::NotFound {
                    what: "standing order",
                    id,
                })?;
            let before: StandingOrder = decoded(&row, "record", "standing_orders")?;
            let mut after = before.clone();
            (change.borrow_mut())(&mut after)?;
            checks::order_change(&before, &after)?;
            if after != before {
                tx.exec(
                    "UPDATE standing_orders SET record = $2 WHERE id = $1",
                    &[&db_int("order", id)?, &record(&after)?],
                )
                .await?;
            }
            Ok(after)
        })
    }
}
