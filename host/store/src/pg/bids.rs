//! Bids on PostgreSQL: admission inside the transaction that writes them, idempotency
//! keys as a unique key per owner, edits and cancels as read-modify-writes.

use gigaspot_market::account::{AccountId, Role};
use gigaspot_market::bid::{Bid, BidChange, BidId, BidState, BidTerms};
use gigaspot_market::machine::MachineId;
use tokio_postgres::GenericClient;

use super::accounts::{machine, next_id};
use super::config::{self, account, required};
use super::money::balance;
use super::{PgResult, PgStore, db_int, decoded, record};
use crate::checks;
use crate::error::StoreResult;
use crate::store::PlacedBid;

/// The name a bid state is stored under.
fn state_name(state: BidState) -> &'static str {
    match state {
        BidState::Active => "active",
        BidState::Cancelled => "cancelled",
        BidState::Expired => "expired",
        BidState::Suspended => "suspended",
    }
}

/// A bid by id.
pub(crate) async fn bid(c: &impl GenericClient, id: BidId) -> PgResult<Option<Bid>> {
    match c
        .query_opt(
            "SELECT record FROM bids WHERE id = $1",
            &[&db_int("bid", id)?],
        )
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "bids")?)),
        None => Ok(None),
    }
}

/// Writes `bid` (new or changed).
pub(crate) async fn put_bid(c: &impl GenericClient, bid: &Bid) -> PgResult<()> {
    c.execute(
        "INSERT INTO bids (id, owner, machine, state, price_per_day, record) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
         price_per_day = excluded.price_per_day, record = excluded.record",
        &[
            &db_int("bid", bid.id)?,
            &db_int("owner", bid.owner)?,
            &db_int("machine", bid.machine)?,
            &state_name(bid.state),
            &db_int("price", bid.price_per_day.0)?,
            &record(bid)?,
        ],
    )
    .await?;
    Ok(())
}

impl PgStore {
    pub(super) fn place_bid_keyed(
        &self,
        owner: AccountId,
        terms: &BidTerms,
        now: u64,
        idempotency_key: Option<&str>,
    ) -> StoreResult<PlacedBid> {
        checks::idempotency_key(idempotency_key)?;
        self.write(async |tx| {
            if let Some(key) = idempotency_key
                && let Some(row) = tx
                    .query_opt(
                        "SELECT b.record FROM bid_keys k JOIN bids b ON b.id = k.bid \
                         WHERE k.owner = $1 AND k.key = $2",
                        &[&db_int("owner", owner)?, &key],
                    )
                    .await?
            {
                return Ok(PlacedBid {
                    bid: decoded(&row, "record", "bids")?,
                    replayed: true,
                });
            }
            let holder = account(tx, owner).await?;
            checks::role(holder.as_ref(), owner, Role::Client, "place bids")?;
            let machine = machine(tx, terms.machine).await?;
            let table = required(tx, config::GPU_TABLE).await?;
            let params = required(tx, config::PARAMS).await?;
            let funds = balance(tx, owner).await?;
            let at = checks::Against {
                machine: machine.as_ref(),
                table: &table,
                params: &params,
                balance: funds,
            };
            // Admission first: a refused bid takes no id.
            checks::new_bid(0, owner, terms, now, &at)?;
            let bid = checks::new_bid(next_id(tx).await?, owner, terms, now, &at)?;
            put_bid(tx, &bid).await?;
            if let Some(key) = idempotency_key {
                tx.execute(
                    "INSERT INTO bid_keys (owner, key, bid) VALUES ($1, $2, $3)",
                    &[&db_int("owner", owner)?, &key, &db_int("bid", bid.id)?],
                )
                .await?;
            }
            Ok(PlacedBid {
                bid,
                replayed: false,
            })
        })
    }

    pub(super) fn edit_bid(
        &self,
        owner: AccountId,
        id: BidId,
        change: &BidChange,
        now: u64,
    ) -> StoreResult<Bid> {
        self.write(async |tx| {
            let current = checks::own_changeable(bid(tx, id).await?, owner, id, now)?;
            let machine = machine(tx, current.machine).await?;
            let table = required(tx, config::GPU_TABLE).await?;
            let params = required(tx, config::PARAMS).await?;
            let funds = balance(tx, owner).await?;
            let at = checks::Against {
                machine: machine.as_ref(),
                table: &table,
                params: &params,
                balance: funds,
            };
            let edited = checks::edited_bid(&current, change, &at)?;
            put_bid(tx, &edited).await?;
            // The owner changed the bid: its run of failures starts again.
            tx.execute(
                "DELETE FROM bid_failures WHERE bid = $1",
                &[&db_int("bid", id)?],
            )
            .await?;
            Ok(edited)
        })
    }

    pub(super) fn cancel_bid(&self, owner: AccountId, id: BidId, now: u64) -> StoreResult<Bid> {
        self.write(async |tx| {
            let current = checks::own_changeable(bid(tx, id).await?, owner, id, now)?;
            let cancelled = Bid {
                state: BidState::Cancelled,
                ..current
            };
            put_bid(tx, &cancelled).await?;
            Ok(cancelled)
        })
    }

    pub(super) fn bid(&self, id: BidId) -> StoreResult<Option<Bid>> {
        self.read(async |c| bid(c, id).await)
    }

    pub(super) fn bids_on(&self, machine: MachineId) -> StoreResult<Vec<Bid>> {
        self.read(async |c| {
            c.query(
                "SELECT record FROM bids WHERE machine = $1 ORDER BY id",
                &[&db_int("machine", machine)?],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "bids"))
            .collect()
        })
    }

    pub(super) fn bids_of(&self, owner: AccountId) -> StoreResult<Vec<Bid>> {
        self.read(async |c| {
            c.query(
                "SELECT record FROM bids WHERE owner = $1 ORDER BY id",
                &[&db_int("owner", owner)?],
            )
            .await?
            .iter()
            .map(|row| decoded(row, "record", "bids"))
            .collect()
        })
    }
}
