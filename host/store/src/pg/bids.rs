//! Bids on PostgreSQL: admission inside the transaction that writes them, idempotency
//! keys as a unique key per owner, edits and cancels as read-modify-writes.

use super::Sql;
use std::collections::HashMap;
use std::sync::Arc;

use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::bid::{Bid, BidChange, BidId, BidState, BidTerms};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;

use super::accounts::machine;
use super::config::{self, required};
use super::money::balance;
use super::u64_col;
use super::{PgResult, PgStore, db_int, decoded, from_db, record};
use crate::checks;
use crate::error::{StoreError, StoreResult};
use crate::intake::{BidRequest, bid_batch_failed};
use crate::store::PlacedBid;

/// The name a bid state is stored under.
pub(crate) fn state_name(state: BidState) -> &'static str {
    match state {
        BidState::Active => "active",
        BidState::Cancelled => "cancelled",
        BidState::Expired => "expired",
        BidState::Suspended => "suspended",
    }
}

/// A bid by id.
pub(crate) async fn bid(c: &impl Sql, id: BidId) -> PgResult<Option<Bid>> {
    match c
        .qopt(
            "SELECT record FROM bids WHERE id = $1",
            &[&db_int("bid", id)?],
        )
        .await?
    {
        Some(row) => Ok(Some(decoded(&row, "record", "bids")?)),
        None => Ok(None),
    }
}

/// Inserts new bids in one statement.
async fn insert_bids(c: &impl Sql, bids: &[Bid]) -> PgResult<()> {
    if bids.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Bid) -> u64, name: &'static str| -> PgResult<Vec<i64>> {
        bids.iter().map(|b| db_int(name, f(b))).collect()
    };
    let states: Vec<&str> = bids.iter().map(|b| state_name(b.state)).collect();
    let records: Vec<Vec<u8>> = bids.iter().map(record).collect::<PgResult<_>>()?;
    c.exec(
        "INSERT INTO bids (id, owner, machine, state, price_per_day, record) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], $6::BYTEA[])",
        &[
            &column(&|b| b.id, "bid")?,
            &column(&|b| b.owner, "owner")?,
            &column(&|b| b.machine, "machine")?,
            &states,
            &column(&|b| b.price_per_day.0, "price")?,
            &records,
        ],
    )
    .await?;
    Ok(())
}

/// Writes `bid` (new or changed).
pub(crate) async fn put_bid(c: &impl Sql, bid: &Bid) -> PgResult<()> {
    c.exec(
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
        let request = BidRequest {
            owner,
            terms: terms.clone(),
            now,
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        self.bid_intake.submit(
            request,
            || (),
            |(), requests| self.place_bids(&requests),
            bid_batch_failed,
        )
    }

    /// [`crate::Store::place_bid_async`]: the bid joins the batched intake; when this
    /// caller is to lead, `spawn` runs the leader's turn on a thread that may block.
    pub(super) fn place_bid_async(
        self: Arc<Self>,
        owner: AccountId,
        terms: BidTerms,
        now: u64,
        idempotency_key: Option<String>,
        spawn: crate::store::Spawner,
    ) -> crate::store::BidFuture {
        let request = BidRequest {
            owner,
            terms,
            now,
            idempotency_key,
        };
        let store = Arc::clone(&self);
        crate::intake::submit_bid_async(&self.bid_intake, request, spawn, move || {
            store.lead_bid_turn()
        })
    }

    fn lead_bid_turn(&self) {
        self.bid_intake.lead_turn(
            || (),
            |(), requests| self.place_bids(&requests),
            &bid_batch_failed,
        );
    }

    /// Decides the queued bids in order, each as if alone, and writes the admitted ones
    /// in one transaction (retried whole on a conflict): one commit for the batch.
    fn place_bids(&self, requests: &[BidRequest]) -> Vec<StoreResult<PlacedBid>> {
        let decided = self.write(async |tx| {
            let table = required(tx, config::GPU_TABLE).await?;
            let params = required(tx, config::PARAMS).await?;
            // Every owner's account and balance and every machine the batch names, in
            // three statements.
            let owners: Vec<i64> = requests
                .iter()
                .map(|r| db_int("owner", r.owner))
                .collect::<PgResult<_>>()?;
            let named: Vec<i64> = requests
                .iter()
                .map(|r| db_int("machine", r.terms.machine))
                .collect::<PgResult<_>>()?;
            let mut accounts: HashMap<AccountId, Option<Account>> = HashMap::new();
            for row in tx
                .q("SELECT record FROM accounts WHERE id = ANY($1)", &[&owners])
                .await?
            {
                let a: Account = decoded(&row, "record", "accounts")?;
                accounts.insert(a.id, Some(a));
            }
            let mut funds: HashMap<AccountId, Amount> = HashMap::new();
            for row in tx
                .q(
                    "SELECT account, amount FROM balances WHERE account = ANY($1)",
                    &[&owners],
                )
                .await?
            {
                funds.insert(u64_col(&row, "account")?, Amount(u64_col(&row, "amount")?));
            }
            let mut machines: HashMap<MachineId, Option<Machine>> = HashMap::new();
            for row in tx
                .q("SELECT record FROM machines WHERE id = ANY($1)", &[&named])
                .await?
            {
                let m: Machine = decoded(&row, "record", "machines")?;
                machines.insert(m.id, Some(m));
            }
            for r in requests {
                accounts.entry(r.owner).or_insert(None);
                funds.entry(r.owner).or_default();
                machines.entry(r.terms.machine).or_insert(None);
            }
            // Keys used earlier in this batch → the answer given there.
            let mut keyed: HashMap<(AccountId, &str), usize> = HashMap::new();
            let mut answers: Vec<StoreResult<PlacedBid>> = Vec::with_capacity(requests.len());
            let mut admitted = Vec::new();
            // (a repeat of a key first used in this batch, that first request)
            let mut replays = Vec::new();
            for r in requests {
                let key = r.idempotency_key.as_deref();
                if let Some(k) = key {
                    if let Some(&first) = keyed.get(&(r.owner, k))
                        && let Ok(placed) = &answers[first]
                    {
                        // The first one's id is given below: copied from it then.
                        replays.push((answers.len(), first));
                        answers.push(Ok(PlacedBid {
                            bid: placed.bid.clone(),
                            replayed: true,
                        }));
                        continue;
                    }
                    if let Some(row) = tx
                        .qopt(
                            "SELECT b.record FROM bid_keys k JOIN bids b ON b.id = k.bid \
                             WHERE k.owner = $1 AND k.key = $2",
                            &[&db_int("owner", r.owner)?, &k],
                        )
                        .await?
                    {
                        answers.push(Ok(PlacedBid {
                            bid: decoded(&row, "record", "bids")?,
                            replayed: true,
                        }));
                        continue;
                    }
                }
                let answer = checks::role(
                    accounts[&r.owner].as_ref(),
                    r.owner,
                    Role::Client,
                    "place bids",
                )
                .and_then(|()| {
                    checks::new_bid(
                        0,
                        r.owner,
                        &r.terms,
                        r.now,
                        &checks::Against {
                            machine: machines[&r.terms.machine].as_ref(),
                            table: &table,
                            params: &params,
                            balance: funds[&r.owner],
                        },
                    )
                });
                match answer {
                    Ok(bid) => {
                        if let Some(k) = key {
                            keyed.insert((r.owner, k), answers.len());
                        }
                        admitted.push(answers.len());
                        answers.push(Ok(PlacedBid {
                            bid,
                            replayed: false,
                        }));
                    }
                    Err(refused) => answers.push(Err(refused)),
                }
            }
            // Ids for the admitted bids, in queue order, then one insert of them all.
            let ids = tx
                .q(
                    "SELECT nextval('ids') FROM generate_series(1, $1::BIGINT)",
                    &[&(admitted.len() as i64)],
                )
                .await?;
            let mut new_bids = Vec::with_capacity(admitted.len());
            for (&at, row) in admitted.iter().zip(&ids) {
                if let Ok(placed) = &mut answers[at] {
                    placed.bid.id = from_db(row.get(0));
                    new_bids.push(placed.bid.clone());
                }
            }
            insert_bids(tx, &new_bids).await?;
            for (at, first) in replays {
                if let (Ok(first), Ok(_)) = (&answers[first], &answers[at]) {
                    let bid = first.bid.clone();
                    if let Ok(repeat) = &mut answers[at] {
                        repeat.bid = bid;
                    }
                }
            }
            let with_keys: Vec<(AccountId, &str, BidId)> = admitted
                .iter()
                .filter_map(|&at| {
                    let key = requests[at].idempotency_key.as_deref()?;
                    let bid = answers[at].as_ref().ok()?.bid.id;
                    Some((requests[at].owner, key, bid))
                })
                .collect();
            if !with_keys.is_empty() {
                let owners: Vec<i64> = with_keys
                    .iter()
                    .map(|k| db_int("owner", k.0))
                    .collect::<PgResult<_>>()?;
                let keys: Vec<&str> = with_keys.iter().map(|k| k.1).collect();
                let bids: Vec<i64> = with_keys
                    .iter()
                    .map(|k| db_int("bid", k.2))
                    .collect::<PgResult<_>>()?;
                tx.exec(
                    "INSERT INTO bid_keys (owner, key, bid) \
                     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[])",
                    &[&owners, &keys, &bids],
                )
                .await?;
            }
            Ok(answers)
        });
        match decided {
            Ok(answers) => answers,
            // Nothing of the batch was written: every caller may retry with its key.
            Err(e) => {
                let why = e.to_string();
                requests
                    .iter()
                    .map(|_| Err(StoreError::Backend(why.clone())))
                    .collect()
            }
        }
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
            tx.exec(
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
            c.q(
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
            c.q(
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
