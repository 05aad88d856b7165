//! The embedded default store: one sled tree on disk, with the working set in memory.
//!
//! Writes are serialised by one lock, built as one sled batch (atomic), applied, mirrored
//! into memory, then flushed before the call returns. The flush happens after the lock is
//! released, so concurrent writers share flushes (group commit, see `group_commit`).
//! Reads are served from memory (the ledger, decisions and plugin files excepted).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use gigaspot_market::account::{Account, AccountId, Role};
use gigaspot_market::agent_protocol::Unserved;
use gigaspot_market::bid::{Bid, BidChange, BidId, BidState, BidTerms};
use gigaspot_market::billing::ServedTime;
use gigaspot_market::clearing::Decision;
use gigaspot_market::economics::price_per_kw;
use gigaspot_market::gpu_ranges::GpuRangeTable;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::ledger::{self, AuditReport, Party, Transfer, TransferKind};
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::Amount;
use gigaspot_market::params::MarketParams;
use gigaspot_market::suspension::{self, BidFailures, Tally};
use gigaspot_market::withdrawal::{
    self, Settlement as WithdrawalSettlement, Withdrawal, WithdrawalId, WithdrawalState,
};
use sled::Batch;

use crate::checks;
use crate::codec::{decode, encode, read_u64, u64_bytes};
use crate::error::{StoreError, StoreResult};
use crate::group_commit::GroupCommit;
use crate::intake::{BidRequest, Intake, IntakeStats, bid_batch_failed};
use crate::keys::{self, key, key_bytes};
use crate::records::{
    ActivePlugins, Assignment, CommitTimings, Compaction, DecisionSummary, IntervalPrices,
    IntervalStats, MachineSpec, PluginState, PluginVersionRecord, RecordedClearing, ShadowDiff,
    TickCommit, TickSnapshot,
};
use crate::store::{PlacedBid, Store};
use gigaspot_market::plugin_input::{InputRecord, PluginInput};

/// The working set, mirrored from disk.
struct State {
    accounts: BTreeMap<AccountId, Account>,
    machines: BTreeMap<MachineId, Arc<Machine>>,
    bids: HashMap<BidId, Arc<Bid>>,
    /// The same bids grouped by machine.
    bids_by_machine: BTreeMap<MachineId, BTreeMap<BidId, Arc<Bid>>>,
    /// The active and suspended ones again, as the lists a tick's snapshot shares.
    books: crate::books::Books,
    balances: BTreeMap<AccountId, Amount>,
    latest: BTreeMap<MachineId, Assignment>,
    pending: BTreeMap<(MachineId, u64), Assignment>,
    /// Bids' runs of intervals unserved by their own fault.
    failures: HashMap<BidId, BidFailures>,
    /// Machines' assigned/served tallies by (machine, day).
    tallies: BTreeMap<(MachineId, u64), Tally>,
    params: MarketParams,
    clock: IntervalClock,
    table: GpuRangeTable,
    fee_account: AccountId,
    pending_withdrawals: AccountId,
    last_id: u64,
    last_transfer: u64,
    cleared_through: Option<u64>,
    /// API key hashes → account, and agent token hashes → machine: every request looks
    /// one up, so they are answered from memory too.
    api_keys: HashMap<[u8; 32], AccountId>,
    agent_tokens: HashMap<[u8; 32], MachineId>,
    /// Each machine's last book written (read back when the store is opened).
    last_books: HashMap<MachineId, [u8; 32]>,
}

impl State {
    /// Inserts or replaces a bid in both indexes.
    fn put_bid(&mut self, bid: Arc<Bid>) {
        let old = self
            .bids_by_machine
            .entry(bid.machine)
            .or_default()
            .insert(bid.id, bid.clone());
        self.books.put(old.as_ref(), &bid);
        self.bids.insert(bid.id, bid);
    }
}

/// The sled-backed [`Store`].
pub struct SledStore {
    /// `None` once [`SledStore::close`] released the database.
    db: RwLock<Option<sled::Db>>,
    state: RwLock<State>,
    writer: Mutex<()>,
    flushes: GroupCommit,
    generation: AtomicU64,
    /// Where the latest `commit_tick` spent its time.
    tick_commit: Mutex<CommitTimings>,
    /// New bids, written in batches (`intake`).
    bid_intake: Intake<BidRequest, StoreResult<PlacedBid>>,
}

/// How long `open` waits for the database's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled database in `path`, waiting up to [`LOCK_WAIT`] for its file lock: a
/// store closed moments ago in this process may still hold it while sled's background
/// threads finish writing.
pub fn open_waiting_for_lock(path: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            Err(e) if lock_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether sled refused to open because another handle holds the file lock (sled reports
/// it as an I/O error of kind `Other` whose text names the lock).
fn lock_busy(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().starts_with("could not acquire lock"))
}

impl SledStore {
    /// Opens (or creates) the database in `path`. A database that is corrupt, not a
    /// GigaSPOT database, or written by a newer schema is refused and left untouched.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<SledStore> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let corrupt = |detail: String| StoreError::Corrupt {
            path: shown.clone(),
            detail,
        };
        let db = open_waiting_for_lock(path).map_err(|e| match e {
            e if lock_busy(&e) => StoreError::Backend(format!(
                "cannot open {shown}: the database is in use by another process"
            )),
            sled::Error::Io(io) => StoreError::Backend(format!("cannot open {shown}: {io}")),
            other => corrupt(other.to_string()),
        })?;
        match db.get(keys::SCHEMA)? {
            None if db.is_empty() => initialise(&db)?,
            None => return Err(corrupt("it has data but no schema version".into())),
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt("unreadable schema version".into()))?;
                if found > keys::SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: shown,
                        found,
                        supported: keys::SCHEMA_VERSION,
                    });
                }
                if (2..keys::SCHEMA_VERSION).contains(&found) {
                    tracing::info!(found, to = keys::SCHEMA_VERSION, "migrating the database");
                    crate::migrate::migrate(&db, found)?;
                } else if found < keys::SCHEMA_VERSION {
                    return Err(corrupt(format!(
                        "schema version {found} predates this build ({}) and has no migration; start with a new data directory",
                        keys::SCHEMA_VERSION
                    )));
                }
            }
        }
        build_account_index(&db)?;
        pin_interval_clock(&db)?;
        create_pending_withdrawals_account(&db)?;
        let state = load(&db).map_err(|e| match e {
            StoreError::Corrupt { detail, .. } => corrupt(detail),
            other => other,
        })?;
        Ok(SledStore {
            db: RwLock::new(Some(db)),
            state: RwLock::new(state),
            writer: Mutex::new(()),
            flushes: GroupCommit::default(),
            generation: AtomicU64::new(0),
            tick_commit: Mutex::default(),
            bid_intake: Intake::default(),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// `interval`'s statistics in `stats`, read from the store the first time.
    fn stats_entry<'m>(
        db: &sled::Db,
        stats: &'m mut BTreeMap<u64, IntervalStats>,
        interval: u64,
    ) -> StoreResult<&'m mut IntervalStats> {
        Ok(match stats.entry(interval) {
            std::collections::btree_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let k = key(keys::INTERVAL_STATS, &[interval]);
                slot.insert(match db.get(&k)? {
                    Some(v) => decode(&k, &v)?,
                    None => IntervalStats {
                        interval,
                        ..IntervalStats::default()
                    },
                })
            }
        })
    }

    /// Places queued bids in one batch, deciding each as a sequential pass would: in queue
    /// order, each replaying its idempotency key if that key was used (earlier, or by a
    /// request before it in the batch), else admitted against the market and given the
    /// next id. One apply and one flush for the whole batch; returns once it is durable.
    fn place_bids(
        &self,
        guard: MutexGuard<'_, ()>,
        requests: Vec<BidRequest>,
    ) -> Vec<StoreResult<PlacedBid>> {
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => {
                let why = e.to_string();
                return requests
                    .iter()
                    .map(|_| Err(StoreError::Backend(why.clone())))
                    .collect();
            }
        };
        let mut batch = Batch::default();
        let mut placed: Vec<Arc<Bid>> = Vec::new();
        // Idempotency keys used by this batch → index into `placed`.
        let mut keyed: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut answers = Vec::with_capacity(requests.len());
        let last_id = {
            let state = self.read();
            let mut last_id = state.last_id;
            for r in &requests {
                let answer = (|| -> StoreResult<PlacedBid> {
                    let idem_key = r
                        .idempotency_key
                        .as_deref()
                        .map(|k| keys::idempotency(keys::IDEMPOTENCY, r.owner, k));
                    if let Some(k) = &idem_key {
                        if let Some(&i) = keyed.get(k) {
                            return Ok(PlacedBid {
                                bid: placed[i].as_ref().clone(),
                                replayed: true,
                            });
                        }
                        if let Some(v) = db.get(k)? {
                            let id = read_u64(k, &v)?;
                            let bid = state
                                .bids
                                .get(&id)
                                .map(|b| b.as_ref().clone())
                                .ok_or(StoreError::NotFound { what: "bid", id })?;
                            return Ok(PlacedBid {
                                bid,
                                replayed: true,
                            });
                        }
                    }
                    require_role(&state, r.owner, Role::Client, "place bids")?;
                    let machine = state.machines.get(&r.terms.machine).map(|m| m.as_ref());
                    let balance = state.balances.get(&r.owner).copied().unwrap_or_default();
                    let bid = checks::new_bid(
                        last_id + 1,
                        r.owner,
                        &r.terms,
                        r.now,
                        &checks::Against {
                            machine,
                            table: &state.table,
                            params: &state.params,
                            balance,
                        },
                    )?;
                    batch.insert(key(keys::BID, &[bid.id]), encode(&bid)?);
                    if let Some(k) = idem_key {
                        batch.insert(k.as_slice(), &u64_bytes(bid.id));
                        keyed.insert(k, placed.len());
                    }
                    last_id = bid.id;
                    placed.push(Arc::new(bid.clone()));
                    Ok(PlacedBid {
                        bid,
                        replayed: false,
                    })
                })();
                answers.push(answer);
            }
            last_id
        };
        let written = if placed.is_empty() {
            // Replays and refusals only: wait for any earlier write they acknowledge.
            self.settled(guard)
        } else {
            batch.insert(keys::LAST_ID, &u64_bytes(last_id));
            self.commit(guard, batch, |s| {
                s.last_id = last_id;
                for bid in placed {
                    s.put_bid(bid);
                }
            })
        };
        if let Err(e) = written {
            // Nothing of the batch is acknowledged: every caller may retry with its key.
            let why = e.to_string();
            return answers
                .into_iter()
                .map(|a| match a {
                    Ok(_) => Err(StoreError::Backend(why.clone())),
                    refused => refused,
                })
                .collect();
        }
        answers
    }

    /// One turn of the bid intake's leader (see [`crate::intake`]).
    fn lead_bid_turn(&self) {
        self.bid_intake.lead_turn(
            || self.write_lock(),
            |guard, requests| self.place_bids(guard, requests),
            &bid_batch_failed,
        );
    }

    /// Bids written by the intake so far, and in how many batches.
    pub fn bid_intake_stats(&self) -> IntakeStats {
        self.bid_intake.stats()
    }

    /// Applies `batch`, mirrors it with `mirror`, releases the writer lock `guard`, and
    /// returns once the write is on disk. The flush runs after the lock is released, so
    /// writers queued behind it share one flush (group commit); sled recovers a prefix of
    /// its log, so a write never survives a crash without the writes applied before it.
    ///
    /// Readers of the in-memory state wait only for the mirror, not for sled's apply
    /// (which takes a millisecond for a batch of new bids): every read-modify-write holds
    /// the writer lock, so no writer sees sled ahead of the state. A reader that combines
    /// the state with sled reads outside the writer lock (`tick_snapshot` reading served
    /// marks) can see a batch applied during its reads; it reads a batch's keys in the
    /// order they matter (the served mark before the served time), so what it sees is
    /// what it would see had the write come just after it.
    fn commit(
        &self,
        guard: MutexGuard<'_, ()>,
        batch: Batch,
        mirror: impl FnOnce(&mut State),
    ) -> StoreResult<()> {
        let ticket = {
            self.db()?.apply_batch(batch)?;
            let mut state = self.state_mut();
            mirror(&mut state);
            self.generation.fetch_add(1, Ordering::Release);
            self.flushes.applied()
        };
        drop(guard);
        self.flushes.wait_durable(ticket, || self.flush())
    }

    /// Releases `guard` and returns once every write applied so far is on disk: for
    /// answers that acknowledge an earlier write (an idempotent replay) whose flush may
    /// still be running.
    fn settled(&self, guard: MutexGuard<'_, ()>) -> StoreResult<()> {
        let ticket = self.flushes.last_applied();
        drop(guard);
        self.flushes.wait_durable(ticket, || self.flush())
    }

    /// Closes the database: waits for the write in progress, flushes everything written,
    /// and releases sled's handle (its background flusher stops and, once operations in
    /// flight end, the file lock is released). Every later operation answers
    /// [`StoreError::Closed`]; closing twice is a no-op.
    pub fn close(&self) -> StoreResult<()> {
        let _writer = self.write_lock();
        let db = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(db) = db {
            db.flush()?;
            drop(db);
            tracing::info!("store closed");
        }
        Ok(())
    }

    /// Records and bytes (keys plus values) held per kind of record, the kind being the
    /// key's prefix up to its first `/` (`dec` decision records, `bid` bids, `xfer` transfers, `asg` assignments...):
    /// what the database keeps, for operators and benchmarks. Reads every key.
    pub fn space_by_kind(&self) -> StoreResult<std::collections::BTreeMap<String, (u64, u64)>> {
        let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for entry in self.db()?.iter() {
            let (k, v) = entry?;
            let kind = k.split(|b| *b == b'/').next().unwrap_or(&k);
            let slot = kinds
                .entry(String::from_utf8_lossy(kind).into_owned())
                .or_default();
            slot.0 += 1;
            slot.1 += (k.len() + v.len()) as u64;
        }
        Ok(kinds)
    }

    /// Where the latest tick's commit spent its time (building the batch, encoding the
    /// decision records, applying it, the flush): for benchmarks and operators.
    pub fn last_tick_commit(&self) -> CommitTimings {
        *self.tick_commit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes the database's files take on disk (sled's own count).
    pub fn size_on_disk(&self) -> StoreResult<u64> {
        Ok(self.db()?.size_on_disk()?)
    }

    /// The whole market as records (see [`crate::MarketExport`]), read under the writer
    /// lock so that it is one consistent state.
    pub fn export(&self) -> StoreResult<crate::MarketExport> {
        let _writer = self.write_lock();
        let db = self.db()?;
        let keyed = |prefix: &[u8]| -> StoreResult<Vec<(u64, String, u64)>> {
            db.scan_prefix(prefix)
                .map(|item| {
                    let (k, v) = item?;
                    let rest = &k[prefix.len()..];
                    let corrupt = || StoreError::Corrupt {
                        path: String::from_utf8_lossy(&k).into_owned(),
                        detail: "an unreadable idempotency key".into(),
                    };
                    let owner = rest
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(corrupt)?;
                    let key = std::str::from_utf8(&rest[8..])
                        .map_err(|_| corrupt())?
                        .to_owned();
                    Ok((owner, key, read_u64(&k, &v)?))
                })
                .collect()
        };
        let bid_keys = keyed(keys::IDEMPOTENCY)?;
        let withdrawal_keys = keyed(keys::WITHDRAWAL_KEY)?;
        let state = self.read();
        let mut bids: Vec<Bid> = state.bids.values().map(|b| b.as_ref().clone()).collect();
        bids.sort_by_key(|b| b.id);
        drop(state);
        let market = self.tick_snapshot()?;
        let state = self.read();
        Ok(crate::MarketExport {
            accounts: state.accounts.values().cloned().collect(),
            api_keys: state.api_keys.iter().map(|(k, a)| (*k, *a)).collect(),
            agent_tokens: state.agent_tokens.iter().map(|(k, m)| (*k, *m)).collect(),
            bids,
            bid_keys,
            withdrawals: self.withdrawals(None)?,
            withdrawal_keys,
            transfers: self.transfers()?,
            plugin_versions: self.plugin_versions()?,
            active_plugins: self.active_plugins()?,
            plugin_state: self.plugin_state()?,
            interval_stats: self.interval_stats(0, u64::MAX)?,
            last_id: state.last_id,
            pending_withdrawals: state.pending_withdrawals,
            market,
        })
    }

    /// Writes a consistent copy of the whole store to `out` (see [`crate::backup`]) while
    /// the service runs: writes wait until the copy is taken (reads do not).
    pub fn backup(&self, out: &mut dyn std::io::Write) -> StoreResult<crate::BackupSummary> {
        let _writer = self.write_lock();
        let db = self.db()?;
        crate::backup::write(db.iter(), keys::SCHEMA_VERSION, out)
    }

    fn flush(&self) -> StoreResult<()> {
        // Closed: `close` flushed every batch applied before it (it holds the writer lock).
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(db) = db {
            db.flush()?;
        }
        Ok(())
    }

    /// The database, or [`StoreError::Closed`] after [`SledStore::close`]. A clone of the
    /// handle (a reference count): an operation in flight keeps it open until it ends.
    fn db(&self) -> StoreResult<sled::Db> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Closed)
    }

    fn transfer_by_id(&self, id: &str) -> StoreResult<Option<Transfer>> {
        let Some(seq) = self
            .db()?
            .get(key_bytes(keys::TRANSFER_ID, id.as_bytes()))?
        else {
            return Ok(None);
        };
        let seq_key = key_bytes(keys::TRANSFER, &seq);
        match self.db()?.get(&seq_key)? {
            Some(bytes) => Ok(Some(decode(&seq_key, &bytes)?)),
            None => Err(StoreError::Corrupt {
                path: String::from_utf8_lossy(&seq_key).into_owned(),
                detail: format!("transfer {id} is indexed but missing"),
            }),
        }
    }

    /// Books a deposit or withdrawal; a repeated reference returns the first booking.
    fn move_money(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
        kind: TransferKind,
    ) -> StoreResult<Transfer> {
        let transfer = checks::money_movement(account, amount, reference, now, kind)?;
        let guard = self.write_lock();
        if let Some(existing) = self.transfer_by_id(&transfer.id)? {
            let first = checks::repeated_movement(existing, &transfer, reference)?;
            self.settled(guard)?;
            return Ok(first);
        }
        let (batch, balances, seq) = {
            let state = self.read();
            if !state.accounts.contains_key(&account) {
                return Err(StoreError::NotFound {
                    what: "account",
                    id: account,
                });
            }
            let (batch, balances, seq) = book_one(&state, &transfer)?;
            (batch, balances, seq)
        };
        self.commit(guard, batch, |state| {
            state.balances.extend(balances);
            state.last_transfer = seq;
        })?;
        Ok(transfer)
    }
}

/// Adds `transfers` to `batch` as one unit: checks them against the balances (the
/// current ones overlaid with `changed`), records the new balances in `changed` and the
/// batch, and returns the last booking sequence.
fn book(
    state: &State,
    batch: &mut Batch,
    changed: &mut BTreeMap<AccountId, Amount>,
    mut seq: u64,
    transfers: &[Transfer],
) -> StoreResult<u64> {
    let mut scratch = BTreeMap::new();
    for t in transfers {
        for party in [t.from, t.to] {
            if let Party::Account(a) = party {
                let current = changed
                    .get(&a)
                    .or(state.balances.get(&a))
                    .copied()
                    .unwrap_or_default();
                scratch.entry(a).or_insert(current);
            }
        }
        ledger::apply(&mut scratch, t)?;
    }
    for t in transfers {
        seq += 1;
        batch.insert(key(keys::TRANSFER, &[seq]), encode(t)?);
        batch.insert(
            key_bytes(keys::TRANSFER_ID, t.id.as_bytes()),
            &u64_bytes(seq),
        );
        index_transfer(batch, seq, t);
    }
    for (account, balance) in scratch {
        batch.insert(key(keys::BALANCE, &[account]), &u64_bytes(balance.0));
        changed.insert(account, balance);
    }
    batch.insert(keys::LAST_TRANSFER, &u64_bytes(seq));
    Ok(seq)
}

/// A new batch booking `transfer` alone against the current balances: the batch, the
/// changed balances and the last booking sequence.
fn book_one(
    state: &State,
    transfer: &Transfer,
) -> StoreResult<(Batch, BTreeMap<AccountId, Amount>, u64)> {
    let mut balances = BTreeMap::new();
    let mut batch = Batch::default();
    let seq = book(
        state,
        &mut batch,
        &mut balances,
        state.last_transfer,
        std::slice::from_ref(transfer),
    )?;
    Ok((batch, balances, seq))
}

/// Adds the per-account ledger index entries of transfer `seq` to `batch`.
fn index_transfer(batch: &mut Batch, seq: u64, t: &Transfer) {
    for party in [t.from, t.to] {
        if let Party::Account(a) = party {
            batch.insert(key(keys::ACCOUNT_TRANSFER, &[a, seq]), &[]);
        }
    }
}

/// Builds the per-account ledger index of a store written before it existed, in one
/// atomic batch (re-run from scratch if interrupted: the marker goes in last).
fn build_account_index(db: &sled::Db) -> StoreResult<()> {
    if db.contains_key(keys::ACCOUNT_TRANSFER_BUILT)? {
        return Ok(());
    }
    let mut batch = Batch::default();
    for item in db.scan_prefix(keys::TRANSFER) {
        let (k, v) = item?;
        let seq = read_u64(&k, &k[keys::TRANSFER.len()..])?;
        index_transfer(&mut batch, seq, &decode(&k, &v)?);
    }
    batch.insert(keys::ACCOUNT_TRANSFER_BUILT, &[]);
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

/// Writes the interval clock of a store from before it existed: uniform intervals of the
/// stored length, so that a later parameter change cannot renumber past intervals.
fn pin_interval_clock(db: &sled::Db) -> StoreResult<()> {
    if db.contains_key(keys::INTERVAL_CLOCK)? {
        return Ok(());
    }
    let params: MarketParams = decode(keys::PARAMS, &get_required(db, keys::PARAMS)?)?;
    db.insert(
        keys::INTERVAL_CLOCK,
        encode(&IntervalClock::uniform(params.billing_interval_s))?,
    )?;
    db.flush()?;
    Ok(())
}

/// Creates the account that holds requested withdrawals, in stores from before it existed
/// (and in new ones), with the next free id.
fn create_pending_withdrawals_account(db: &sled::Db) -> StoreResult<()> {
    if db.contains_key(keys::PENDING_WITHDRAWALS_ACCOUNT)? {
        return Ok(());
    }
    let id = read_u64(keys::LAST_ID, &get_required(db, keys::LAST_ID)?)? + 1;
    let account = Account {
        id,
        name: "pending withdrawals".into(),
        roles: Vec::new(),
    };
    let mut batch = Batch::default();
    batch.insert(key(keys::ACCOUNT, &[id]), encode(&account)?);
    batch.insert(keys::LAST_ID, &u64_bytes(id));
    batch.insert(keys::PENDING_WITHDRAWALS_ACCOUNT, &u64_bytes(id));
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn initialise(db: &sled::Db) -> StoreResult<()> {
    let fee_account = Account {
        id: 1,
        name: "operator fees".into(),
        roles: vec![Role::Operator],
    };
    let mut batch = Batch::default();
    batch.insert(key(keys::ACCOUNT, &[1]), encode(&fee_account)?);
    batch.insert(keys::FEE_ACCOUNT, &u64_bytes(1));
    batch.insert(keys::LAST_ID, &u64_bytes(1));
    batch.insert(keys::LAST_TRANSFER, &u64_bytes(0));
    batch.insert(keys::PARAMS, encode(&MarketParams::default())?);
    batch.insert(keys::GPU_TABLE, encode(&GpuRangeTable::defaults())?);
    batch.insert(keys::ACCOUNT_TRANSFER_BUILT, &[]);
    // The schema version goes in last: a database without it was never initialised.
    batch.insert(keys::SCHEMA, &keys::SCHEMA_VERSION.to_be_bytes());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn get_required(db: &sled::Db, k: &[u8]) -> StoreResult<sled::IVec> {
    db.get(k)?.ok_or_else(|| StoreError::Corrupt {
        path: String::from_utf8_lossy(k).into_owned(),
        detail: "a required record is missing".into(),
    })
}

fn scan<T: serde::de::DeserializeOwned>(db: &sled::Db, prefix: &[u8]) -> StoreResult<Vec<T>> {
    db.scan_prefix(prefix)
        .map(|item| {
            let (k, v) = item?;
            decode(&k, &v)
        })
        .collect()
}

fn load(db: &sled::Db) -> StoreResult<State> {
    let accounts: Vec<Account> = scan(db, keys::ACCOUNT)?;
    let machines: Vec<Machine> = scan(db, keys::MACHINE)?;
    let bids: Vec<Bid> = scan(db, keys::BID)?;
    let mut balances = BTreeMap::new();
    for item in db.scan_prefix(keys::BALANCE) {
        let (k, v) = item?;
        let account = read_u64(&k, &k[keys::BALANCE.len()..])?;
        balances.insert(account, Amount(read_u64(&k, &v)?));
    }
    let mut pending_keys = BTreeSet::new();
    for item in db.scan_prefix(keys::PENDING_INTERVAL) {
        let (k, v) = item?;
        let interval = read_u64(&k, &k[keys::PENDING_INTERVAL.len()..])?;
        let machines: Vec<MachineId> = decode(&k, &v)?;
        pending_keys.extend(machines.into_iter().map(|m| (m, interval)));
    }
    // Only what the working set needs: each machine's latest assignment and the unsettled
    // ones, not every interval ever cleared. Every clearing assigns every machine, so the
    // newest interval holds the latest assignment of each machine that has one.
    let latest: BTreeMap<MachineId, Assignment> =
        crate::decision_chunks::newest_interval(db, keys::ASSIGNMENT_CHUNK)?
            .map(|(_, records)| {
                records
                    .into_iter()
                    // `machines` comes from a key scan, sorted by id.
                    .filter(|(m, _)| machines.binary_search_by_key(m, |known| known.id).is_ok())
                    .collect()
            })
            .unwrap_or_default();
    let mut pending = BTreeMap::new();
    for (machine, interval) in pending_keys {
        if let Some(a) = crate::decision_chunks::get(db, keys::ASSIGNMENT_CHUNK, machine, interval)?
        {
            pending.insert((machine, interval), a);
        }
    }
    let mut state_bids = HashMap::with_capacity(bids.len());
    let mut bids_by_machine: BTreeMap<MachineId, BTreeMap<BidId, Arc<Bid>>> = BTreeMap::new();
    let mut books = crate::books::Books::default();
    for b in bids {
        let b = Arc::new(b);
        bids_by_machine
            .entry(b.machine)
            .or_default()
            .insert(b.id, b.clone());
        books.put(None, &b);
        state_bids.insert(b.id, b);
    }
    let secrets = |prefix: &[u8]| -> StoreResult<HashMap<[u8; 32], u64>> {
        db.scan_prefix(prefix)
            .map(|item| {
                let (k, v) = item?;
                let hash =
                    <[u8; 32]>::try_from(&k[prefix.len()..]).map_err(|_| StoreError::Corrupt {
                        path: String::from_utf8_lossy(&k).into_owned(),
                        detail: "malformed key hash".into(),
                    })?;
                Ok((hash, read_u64(&k, &v)?))
            })
            .collect()
    };
    let cleared_through = match db.get(keys::CLEARED_THROUGH)? {
        Some(v) => Some(read_u64(keys::CLEARED_THROUGH, &v)?),
        None => None,
    };
    let params: MarketParams = decode(keys::PARAMS, &get_required(db, keys::PARAMS)?)?;
    let clock = match db.get(keys::INTERVAL_CLOCK)? {
        Some(v) => decode(keys::INTERVAL_CLOCK, &v)?,
        // Stores from before the clock had uniform intervals of the stored length.
        None => IntervalClock::uniform(params.billing_interval_s),
    };
    Ok(State {
        accounts: accounts.into_iter().map(|a| (a.id, a)).collect(),
        machines: machines.into_iter().map(|m| (m.id, Arc::new(m))).collect(),
        bids: state_bids,
        bids_by_machine,
        books,
        balances,
        latest,
        pending,
        params,
        clock,
        table: decode(keys::GPU_TABLE, &get_required(db, keys::GPU_TABLE)?)?,
        fee_account: read_u64(keys::FEE_ACCOUNT, &get_required(db, keys::FEE_ACCOUNT)?)?,
        pending_withdrawals: read_u64(
            keys::PENDING_WITHDRAWALS_ACCOUNT,
            &get_required(db, keys::PENDING_WITHDRAWALS_ACCOUNT)?,
        )?,
        last_id: read_u64(keys::LAST_ID, &get_required(db, keys::LAST_ID)?)?,
        last_transfer: read_u64(keys::LAST_TRANSFER, &get_required(db, keys::LAST_TRANSFER)?)?,
        cleared_through,
        api_keys: secrets(keys::API_KEY)?,
        agent_tokens: secrets(keys::AGENT_TOKEN)?,
        last_books: crate::plugin_inputs::last_books(db)?,
        failures: db
            .scan_prefix(keys::BID_FAILURES)
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    read_u64(&k, &k[keys::BID_FAILURES.len()..])?,
                    decode(&k, &v)?,
                ))
            })
            .collect::<StoreResult<_>>()?,
        tallies: db
            .scan_prefix(keys::TALLY)
            .map(|item| {
                let (k, v) = item?;
                let tail = &k[keys::TALLY.len()..];
                if tail.len() != 16 {
                    return Err(StoreError::Corrupt {
                        path: String::from_utf8_lossy(&k).into_owned(),
                        detail: "malformed tally key".into(),
                    });
                }
                let id = (read_u64(&k, &tail[..8])?, read_u64(&k, &tail[8..])?);
                Ok((id, decode(&k, &v)?))
            })
            .collect::<StoreResult<_>>()?,
    })
}

/// Rewrites the pending list (`keys::PENDING_INTERVAL`) of every interval this tick
/// changes: less the `settled` (machine, interval) pairs, plus the new `assignments` with
/// a winner. One record per interval rather than one per machine: a tick of 10,000
/// machines used to add 10,000 marks and remove as many.
fn pending_lists(
    state: &State,
    settled: &[(MachineId, u64)],
    assignments: &[Assignment],
    batch: &mut Batch,
) -> StoreResult<()> {
    let settled: BTreeSet<(MachineId, u64)> = settled.iter().copied().collect();
    let mut lists: BTreeMap<u64, Vec<MachineId>> = BTreeMap::new();
    for (_, interval) in &settled {
        lists.entry(*interval).or_default();
    }
    for a in assignments.iter().filter(|a| a.winner.is_some()) {
        lists.entry(a.interval).or_default();
    }
    for (machine, interval) in state.pending.keys() {
        if let Some(list) = lists.get_mut(interval)
            && !settled.contains(&(*machine, *interval))
        {
            list.push(*machine);
        }
    }
    for a in assignments.iter().filter(|a| a.winner.is_some()) {
        if let Some(list) = lists.get_mut(&a.interval) {
            list.push(a.machine);
        }
    }
    for (interval, mut machines) in lists {
        let k = key(keys::PENDING_INTERVAL, &[interval]);
        machines.sort_unstable();
        machines.dedup();
        if machines.is_empty() {
            batch.remove(k);
        } else {
            batch.insert(k, encode(&machines)?);
        }
    }
    Ok(())
}

fn require_role(
    state: &State,
    account: AccountId,
    role: Role,
    action: &'static str,
) -> StoreResult<()> {
    checks::role(state.accounts.get(&account), account, role, action)
}

/// What `account` owes its winning bids for intervals cleared and not yet settled (the
/// interval in progress, and any whose settlement is still due).
fn committed_of(state: &State, account: AccountId) -> Amount {
    state
        .pending
        .values()
        .filter_map(|a| a.winner)
        .filter(|w| w.owner == account)
        .fold(Amount::ZERO, |sum, w| {
            sum.checked_add(w.charge.total).unwrap_or(Amount(u64::MAX))
        })
}

/// The owner's bid `id` while it may still be changed at `now`, or why not.
fn own_active_bid(state: &State, owner: AccountId, id: BidId, now: u64) -> StoreResult<Bid> {
    checks::own_changeable(
        state.bids.get(&id).map(|b| b.as_ref().clone()),
        owner,
        id,
        now,
    )
}

impl Store for SledStore {
    fn place_bid_async(
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

    fn backup(&self, out: &mut dyn std::io::Write) -> StoreResult<crate::BackupSummary> {
        SledStore::backup(self, out)
    }

    fn close(&self) -> StoreResult<()> {
        SledStore::close(self)
    }

    fn create_account(&self, name: &str, roles: &[Role]) -> StoreResult<Account> {
        checks::account_name(name)?;
        let guard = self.write_lock();
        let id = self.read().last_id + 1;
        let account = Account {
            id,
            name: name.into(),
            roles: roles.to_vec(),
        };
        let mut batch = Batch::default();
        batch.insert(key(keys::ACCOUNT, &[id]), encode(&account)?);
        batch.insert(keys::LAST_ID, &u64_bytes(id));
        let stored = account.clone();
        self.commit(guard, batch, |s| {
            s.accounts.insert(id, stored);
            s.last_id = id;
        })?;
        Ok(account)
    }

    fn account(&self, id: AccountId) -> StoreResult<Option<Account>> {
        Ok(self.read().accounts.get(&id).cloned())
    }

    fn add_api_key(&self, account: AccountId, key_sha256: [u8; 32]) -> StoreResult<()> {
        let guard = self.write_lock();
        if !self.read().accounts.contains_key(&account) {
            return Err(StoreError::NotFound {
                what: "account",
                id: account,
            });
        }
        let mut batch = Batch::default();
        batch.insert(key_bytes(keys::API_KEY, &key_sha256), &u64_bytes(account));
        self.commit(guard, batch, |s| {
            s.api_keys.insert(key_sha256, account);
        })
    }

    fn account_by_key(&self, key_sha256: &[u8; 32]) -> StoreResult<Option<AccountId>> {
        Ok(self.read().api_keys.get(key_sha256).copied())
    }

    fn remove_api_key(&self, key_sha256: &[u8; 32]) -> StoreResult<bool> {
        let guard = self.write_lock();
        if !self.read().api_keys.contains_key(key_sha256) {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.remove(key_bytes(keys::API_KEY, key_sha256));
        let removed = *key_sha256;
        self.commit(guard, batch, |s| {
            s.api_keys.remove(&removed);
        })?;
        Ok(true)
    }

    fn has_api_key(&self, account: AccountId) -> StoreResult<bool> {
        Ok(self.read().api_keys.values().any(|a| *a == account))
    }

    fn set_agent_token(&self, machine: MachineId, token_sha256: [u8; 32]) -> StoreResult<()> {
        let guard = self.write_lock();
        if !self.read().machines.contains_key(&machine) {
            return Err(StoreError::NotFound {
                what: "machine",
                id: machine,
            });
        }
        let mut batch = Batch::default();
        batch.insert(
            key_bytes(keys::AGENT_TOKEN, &token_sha256),
            &u64_bytes(machine),
        );
        self.commit(guard, batch, |s| {
            s.agent_tokens.insert(token_sha256, machine);
        })
    }

    fn machine_by_agent_token(&self, token_sha256: &[u8; 32]) -> StoreResult<Option<MachineId>> {
        Ok(self.read().agent_tokens.get(token_sha256).copied())
    }

    fn register_machine(&self, spec: MachineSpec) -> StoreResult<Machine> {
        checks::machine_spec(&spec)?;
        let guard = self.write_lock();
        let id = {
            let state = self.read();
            require_role(&state, spec.host, Role::Host, "register machines")?;
            state.last_id + 1
        };
        let machine = checks::new_machine(id, spec);
        let mut batch = Batch::default();
        batch.insert(key(keys::MACHINE, &[id]), encode(&machine)?);
        batch.insert(keys::LAST_ID, &u64_bytes(id));
        let stored = Arc::new(machine.clone());
        self.commit(guard, batch, |s| {
            s.machines.insert(id, stored);
            s.last_id = id;
        })?;
        Ok(machine)
    }

    fn modify_machine(
        &self,
        id: MachineId,
        change: &mut dyn FnMut(&mut Machine) -> StoreResult<()>,
    ) -> StoreResult<Machine> {
        let guard = self.write_lock();
        let before = self
            .read()
            .machines
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound {
                what: "machine",
                id,
            })?;
        let mut machine = before.as_ref().clone();
        change(&mut machine)?;
        checks::machine_change(&before, &machine)?;
        if machine == *before {
            // Nothing changed: nothing to write (a repeated heartbeat).
            drop(guard);
            return Ok(machine);
        }
        let mut batch = Batch::default();
        batch.insert(key(keys::MACHINE, &[id]), encode(&machine)?);
        let stored = Arc::new(machine.clone());
        self.commit(guard, batch, |s| {
            s.machines.insert(id, stored);
        })?;
        Ok(machine)
    }

    fn machine(&self, id: MachineId) -> StoreResult<Option<Machine>> {
        Ok(self.read().machines.get(&id).map(|m| m.as_ref().clone()))
    }

    fn machines(&self) -> StoreResult<Vec<Machine>> {
        Ok(self
            .read()
            .machines
            .values()
            .map(|m| m.as_ref().clone())
            .collect())
    }

    fn place_bid_keyed(
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
            || self.write_lock(),
            |guard, requests| self.place_bids(guard, requests),
            bid_batch_failed,
        )
    }

    fn edit_bid(
        &self,
        owner: AccountId,
        id: BidId,
        change: &BidChange,
        now: u64,
    ) -> StoreResult<Bid> {
        let guard = self.write_lock();
        let edited = {
            let state = self.read();
            let bid = own_active_bid(&state, owner, id, now)?;
            let machine = state.machines.get(&bid.machine).map(|m| m.as_ref());
            let balance = state.balances.get(&owner).copied().unwrap_or_default();
            checks::edited_bid(
                &bid,
                change,
                &checks::Against {
                    machine,
                    table: &state.table,
                    params: &state.params,
                    balance,
                },
            )?
        };
        let mut batch = Batch::default();
        batch.insert(key(keys::BID, &[id]), encode(&edited)?);
        // The owner changed the bid: its run of failures starts again.
        batch.remove(key(keys::BID_FAILURES, &[id]));
        let stored = Arc::new(edited.clone());
        self.commit(guard, batch, |s| {
            s.failures.remove(&id);
            s.put_bid(stored);
        })?;
        Ok(edited)
    }

    fn cancel_bid(&self, owner: AccountId, id: BidId, now: u64) -> StoreResult<Bid> {
        let guard = self.write_lock();
        let cancelled = {
            let state = self.read();
            let bid = own_active_bid(&state, owner, id, now)?;
            Bid {
                state: BidState::Cancelled,
                ..bid
            }
        };
        let mut batch = Batch::default();
        batch.insert(key(keys::BID, &[id]), encode(&cancelled)?);
        let stored = Arc::new(cancelled.clone());
        self.commit(guard, batch, |s| s.put_bid(stored))?;
        Ok(cancelled)
    }

    fn bid(&self, id: BidId) -> StoreResult<Option<Bid>> {
        Ok(self.read().bids.get(&id).map(|b| b.as_ref().clone()))
    }

    fn bids_on(&self, machine: MachineId) -> StoreResult<Vec<Bid>> {
        let state = self.read();
        Ok(state
            .bids_by_machine
            .get(&machine)
            .into_iter()
            .flat_map(|bids| bids.values().map(|b| b.as_ref().clone()))
            .collect())
    }

    fn bids_of(&self, owner: AccountId) -> StoreResult<Vec<Bid>> {
        let state = self.read();
        let mut bids: Vec<Bid> = state
            .bids
            .values()
            .filter(|b| b.owner == owner)
            .map(|b| b.as_ref().clone())
            .collect();
        bids.sort_by_key(|b| b.id);
        Ok(bids)
    }

    fn deposit(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer> {
        self.move_money(account, amount, reference, now, TransferKind::Deposit)
    }

    fn withdraw(
        &self,
        account: AccountId,
        amount: Amount,
        reference: &str,
        now: u64,
    ) -> StoreResult<Transfer> {
        self.move_money(account, amount, reference, now, TransferKind::Withdrawal)
    }

    fn request_withdrawal(
        &self,
        account: AccountId,
        amount: Amount,
        destination: &str,
        idempotency_key: Option<&str>,
        now: u64,
    ) -> StoreResult<(Withdrawal, bool)> {
        checks::idempotency_key(idempotency_key)?;
        let guard = self.write_lock();
        let idem_key = idempotency_key.map(|k| keys::idempotency(keys::WITHDRAWAL_KEY, account, k));
        if let Some(k) = &idem_key
            && let Some(v) = self.db()?.get(k)?
        {
            let id = read_u64(k, &v)?;
            let first = self.withdrawal(id)?.ok_or(StoreError::NotFound {
                what: "withdrawal",
                id,
            })?;
            if first.amount != amount || first.destination != destination.trim() {
                return Err(StoreError::Invalid {
                    field: "Idempotency-Key",
                    reason: "was used for another withdrawal".into(),
                });
            }
            self.settled(guard)?;
            return Ok((first, true));
        }
        let (batch, balances, seq, withdrawal) = {
            let state = self.read();
            if !state.accounts.contains_key(&account) || account == state.pending_withdrawals {
                return Err(StoreError::NotFound {
                    what: "account",
                    id: account,
                });
            }
            let balance = state.balances.get(&account).copied().unwrap_or_default();
            let committed = committed_of(&state, account);
            withdrawal::check_request(amount, destination, balance, committed).map_err(|e| {
                StoreError::Invalid {
                    field: e.field,
                    reason: e.reason,
                }
            })?;
            let withdrawal = Withdrawal {
                id: state.last_id + 1,
                account,
                amount,
                destination: destination.trim().to_string(),
                state: WithdrawalState::Pending,
                requested_at: now,
                settled_at: None,
            };
            let transfer = withdrawal.request_transfer(state.pending_withdrawals);
            let (mut batch, balances, seq) = book_one(&state, &transfer)?;
            batch.insert(
                key(keys::WITHDRAWAL, &[withdrawal.id]),
                encode(&withdrawal)?,
            );
            batch.insert(keys::LAST_ID, &u64_bytes(withdrawal.id));
            if let Some(k) = &idem_key {
                batch.insert(k.clone(), &u64_bytes(withdrawal.id));
            }
            (batch, balances, seq, withdrawal)
        };
        let id = withdrawal.id;
        self.commit(guard, batch, |state| {
            state.balances.extend(balances);
            state.last_transfer = seq;
            state.last_id = id;
        })?;
        Ok((withdrawal, false))
    }

    fn settle_withdrawal(
        &self,
        id: WithdrawalId,
        decision: WithdrawalSettlement,
        now: u64,
    ) -> StoreResult<Withdrawal> {
        let guard = self.write_lock();
        let pending = self.withdrawal(id)?.ok_or(StoreError::NotFound {
            what: "withdrawal",
            id,
        })?;
        let (batch, balances, seq, settled) = {
            let state = self.read();
            let (settled, transfer) = pending
                .settle(decision, state.pending_withdrawals, now)
                .map_err(|e| StoreError::Invalid {
                    field: e.field,
                    reason: e.reason,
                })?;
            let (mut batch, balances, seq) = book_one(&state, &transfer)?;
            batch.insert(key(keys::WITHDRAWAL, &[id]), encode(&settled)?);
            (batch, balances, seq, settled)
        };
        self.commit(guard, batch, |state| {
            state.balances.extend(balances);
            state.last_transfer = seq;
        })?;
        Ok(settled)
    }

    fn withdrawal(&self, id: WithdrawalId) -> StoreResult<Option<Withdrawal>> {
        let k = key(keys::WITHDRAWAL, &[id]);
        match self.db()?.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn withdrawals(&self, account: Option<AccountId>) -> StoreResult<Vec<Withdrawal>> {
        let all: Vec<Withdrawal> = scan(&self.db()?, keys::WITHDRAWAL)?;
        Ok(all
            .into_iter()
            .filter(|w| account.is_none_or(|a| w.account == a))
            .collect())
    }

    fn pending_withdrawals_account(&self) -> AccountId {
        self.read().pending_withdrawals
    }

    fn committed(&self, account: AccountId) -> StoreResult<Amount> {
        Ok(committed_of(&self.read(), account))
    }

    fn balance(&self, account: AccountId) -> StoreResult<Amount> {
        Ok(self
            .read()
            .balances
            .get(&account)
            .copied()
            .unwrap_or_default())
    }

    fn balances(&self) -> StoreResult<BTreeMap<AccountId, Amount>> {
        Ok(self.read().balances.clone())
    }

    fn transfers(&self) -> StoreResult<Vec<Transfer>> {
        scan(&self.db()?, keys::TRANSFER)
    }

    fn account_transfers(
        &self,
        account: AccountId,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Transfer)>> {
        let start = key(keys::ACCOUNT_TRANSFER, &[account, 0]);
        let end = match before {
            Some(seq) => key(keys::ACCOUNT_TRANSFER, &[account, seq]),
            None => key(keys::ACCOUNT_TRANSFER, &[account, u64::MAX]),
        };
        let mut page = Vec::new();
        for item in self.db()?.range(start..end).rev().take(limit) {
            let (k, _) = item?;
            let seq = read_u64(&k, &k[keys::ACCOUNT_TRANSFER.len() + 8..])?;
            let t = key(keys::TRANSFER, &[seq]);
            page.push((seq, decode(&t, &get_required(&self.db()?, &t)?)?));
        }
        Ok(page)
    }

    fn fee_account(&self) -> AccountId {
        self.read().fee_account
    }

    fn record_served(&self, machine: MachineId, interval: u64, bid: BidId) -> StoreResult<()> {
        let guard = self.write_lock();
        if !self.read().machines.contains_key(&machine) {
            return Err(StoreError::NotFound {
                what: "machine",
                id: machine,
            });
        }
        // Only an interval not yet settled takes a mark (a heartbeat racing the boundary
        // may report one just settled: it no longer counts).
        if !self.read().pending.contains_key(&(machine, interval)) {
            return self.settled(guard);
        }
        let k = keys::mark(keys::SERVED, machine, interval);
        // Every heartbeat of the interval reports it served: only the first one writes.
        if self.db()?.get(&k)?.as_deref() == Some(&u64_bytes(bid)[..]) {
            return self.settled(guard);
        }
        let mut batch = Batch::default();
        batch.insert(k, &u64_bytes(bid));
        self.commit(guard, batch, |_| {})
    }

    fn record_unserved(
        &self,
        machine: MachineId,
        interval: u64,
        unserved: &Unserved,
    ) -> StoreResult<()> {
        let guard = self.write_lock();
        if !self.read().machines.contains_key(&machine) {
            return Err(StoreError::NotFound {
                what: "machine",
                id: machine,
            });
        }
        if !self.read().pending.contains_key(&(machine, interval)) {
            return self.settled(guard);
        }
        let k = keys::mark(keys::UNSERVED, machine, interval);
        if let Some(v) = self.db()?.get(&k)? {
            let stored: Unserved = decode(&k, &v)?;
            // The same report again: nothing to write.
            if stored.bid == unserved.bid && stored.reason == unserved.reason {
                return self.settled(guard);
            }
        }
        let mut batch = Batch::default();
        batch.insert(k, encode(unserved)?);
        self.commit(guard, batch, |_| {})
    }

    fn record_served_times(&self, entries: &[(MachineId, u64, ServedTime)]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let guard = self.write_lock();
        let mut batch = Batch::default();
        let mut written = 0;
        for (machine, interval, served) in entries {
            if !self.read().pending.contains_key(&(*machine, *interval)) {
                continue;
            }
            let k = keys::mark(keys::SERVED_TIME, *machine, *interval);
            if let Some(v) = self.db()?.get(&k)? {
                let stored: ServedTime = decode(&k, &v)?;
                if stored.bid == served.bid && stored.seconds >= served.seconds {
                    continue;
                }
            }
            batch.insert(k, encode(served)?);
            written += 1;
        }
        if written == 0 {
            return self.settled(guard);
        }
        self.commit(guard, batch, |_| {})
    }

    fn served_time(&self, machine: MachineId, interval: u64) -> StoreResult<Option<ServedTime>> {
        for k in [
            keys::mark(keys::SERVED_TIME, machine, interval),
            key(keys::PARTIAL_TIME, &[machine, interval]),
        ] {
            if let Some(v) = self.db()?.get(&k)? {
                return Ok(Some(decode(&k, &v)?));
            }
        }
        Ok(None)
    }

    fn prune_served_marks(&self, limit: usize) -> StoreResult<u64> {
        let guard = self.write_lock();
        let (before, clock) = {
            let state = self.read();
            // Every mark below the oldest interval not yet settled belongs to a settled one.
            let oldest_pending = state.pending.keys().map(|(_, interval)| *interval).min();
            let Some(cleared) = state.cleared_through else {
                return self.settled(guard).map(|()| 0);
            };
            (
                oldest_pending.map_or(cleared, |p| p.min(cleared)),
                state.clock.clone(),
            )
        };
        let db = self.db()?;
        let mut batch = Batch::default();
        let mut removed = 0u64;
        for prefix in [keys::SERVED, keys::SERVED_TIME, keys::UNSERVED] {
            let range = key(prefix, &[0])..key(prefix, &[before]);
            for item in db.range(range) {
                if removed as usize >= limit {
                    break;
                }
                let (k, v) = item?;
                if prefix == keys::SERVED_TIME {
                    let (interval, machine) = crate::decision_chunks::ids(prefix, &k)?;
                    let served: ServedTime = decode(&k, &v)?;
                    // A charge for part of an interval keeps its time for the ledger.
                    if served.seconds < clock.length_of(interval) {
                        batch.insert(key(keys::PARTIAL_TIME, &[machine, interval]), v);
                    }
                }
                batch.remove(k);
                removed += 1;
            }
        }
        if removed == 0 {
            return self.settled(guard).map(|()| 0);
        }
        self.commit(guard, batch, |_| {})?;
        Ok(removed)
    }

    fn unserved(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Unserved>> {
        let k = keys::mark(keys::UNSERVED, machine, interval);
        match self.db()?.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn bid_failures(&self, bid: BidId) -> StoreResult<Option<BidFailures>> {
        Ok(self.read().failures.get(&bid).cloned())
    }

    fn reliability(&self, machine: MachineId, now: u64) -> StoreResult<f64> {
        Ok(suspension::reliability_at(
            &self.read().tallies,
            machine,
            now,
        ))
    }

    fn assignment(&self, machine: MachineId) -> StoreResult<Option<Assignment>> {
        Ok(self.read().latest.get(&machine).cloned())
    }

    fn decision(&self, machine: MachineId, interval: u64) -> StoreResult<Option<Decision>> {
        crate::decision_chunks::get(&self.db()?, keys::DECISION_CHUNK, machine, interval)
    }

    fn recorded_input(
        &self,
        machine: MachineId,
        interval: u64,
    ) -> StoreResult<Option<(InputRecord, PluginInput)>> {
        crate::plugin_inputs::input(&self.db()?, machine, interval)
    }

    fn recorded_clearings(&self, interval: u64) -> StoreResult<Vec<RecordedClearing>> {
        crate::plugin_inputs::clearings(&self.db()?, interval)
    }

    fn recorded_intervals(&self) -> StoreResult<Option<(u64, u64)>> {
        crate::plugin_inputs::intervals(&self.db()?)
    }

    fn market_prices(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalPrices>> {
        crate::lab_records::between(&self.db()?, keys::PRICES, first, last)
    }

    fn create_order(
        &self,
        owner: AccountId,
        spec: &gigaspot_market::standing_order::OrderSpec,
        now: u64,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder> {
        let guard = self.write_lock();
        let id = {
            let state = self.read();
            require_role(&state, owner, Role::Client, "place standing orders")?;
            state.last_id + 1
        };
        let order = checks::new_order(id, owner, spec, now)?;
        let mut batch = Batch::default();
        batch.insert(key(keys::ORDER, &[id]), encode(&order)?);
        batch.insert(keys::LAST_ID, &u64_bytes(id));
        self.commit(guard, batch, |s| s.last_id = id)?;
        Ok(order)
    }

    fn order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
    ) -> StoreResult<Option<gigaspot_market::standing_order::StandingOrder>> {
        let k = key(keys::ORDER, &[id]);
        match self.db()?.get(&k)? {
            Some(v) => Ok(Some(decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn orders(
        &self,
        owner: Option<AccountId>,
    ) -> StoreResult<Vec<gigaspot_market::standing_order::StandingOrder>> {
        let mut out = Vec::new();
        for item in self.db()?.scan_prefix(keys::ORDER) {
            let (k, v) = item?;
            let order: gigaspot_market::standing_order::StandingOrder = decode(&k, &v)?;
            if owner.is_none_or(|o| o == order.owner) {
                out.push(order);
            }
        }
        Ok(out)
    }

    fn modify_order(
        &self,
        id: gigaspot_market::standing_order::OrderId,
        change: &mut dyn FnMut(
            &mut gigaspot_market::standing_order::StandingOrder,
        ) -> StoreResult<()>,
    ) -> StoreResult<gigaspot_market::standing_order::StandingOrder> {
        let guard = self.write_lock();
        let before = self.order(id)?.ok_or(StoreError::NotFound {
            what: "standing order",
            id,
        })?;
        let mut order = before.clone();
        change(&mut order)?;
        checks::order_change(&before, &order)?;
        if order == before {
            drop(guard);
            return Ok(order);
        }
        let mut batch = Batch::default();
        batch.insert(key(keys::ORDER, &[id]), encode(&order)?);
        self.commit(guard, batch, |_| {})?;
        Ok(order)
    }

    fn set_shadow_strategy(&self, digest: Option<&str>) -> StoreResult<()> {
        let guard = self.write_lock();
        let mut batch = Batch::default();
        match digest {
            Some(d) => batch.insert(keys::SHADOW_STRATEGY, encode(&d.to_owned())?),
            None => batch.remove(keys::SHADOW_STRATEGY),
        }
        self.commit(guard, batch, |_| {})
    }

    fn shadow_strategy(&self) -> StoreResult<Option<String>> {
        match self.db()?.get(keys::SHADOW_STRATEGY)? {
            Some(v) => Ok(Some(decode(keys::SHADOW_STRATEGY, &v)?)),
            None => Ok(None),
        }
    }

    fn record_shadow_diff(&self, diff: &ShadowDiff) -> StoreResult<()> {
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(key(keys::SHADOW_DIFF, &[diff.interval]), encode(diff)?);
        self.commit(guard, batch, |_| {})
    }

    fn shadow_diffs(&self, first: u64, last: u64) -> StoreResult<Vec<ShadowDiff>> {
        crate::lab_records::between(&self.db()?, keys::SHADOW_DIFF, first, last)
    }

    fn assignments_between(
        &self,
        machine: MachineId,
        first: u64,
        last: u64,
    ) -> StoreResult<Vec<Assignment>> {
        if first > last {
            return Ok(Vec::new());
        }
        Ok(crate::decision_chunks::between(
            &self.db()?,
            keys::ASSIGNMENT_CHUNK,
            machine,
            first,
            last,
        )?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
    }

    fn interval_stats(&self, first: u64, last: u64) -> StoreResult<Vec<IntervalStats>> {
        if first > last {
            return Ok(Vec::new());
        }
        self.db()?
            .range(key(keys::INTERVAL_STATS, &[first])..=key(keys::INTERVAL_STATS, &[last]))
            .map(|entry| {
                let (k, v) = entry?;
                decode(&k, &v)
            })
            .collect()
    }

    fn decisions(&self, machine: MachineId, limit: usize) -> StoreResult<Vec<Decision>> {
        Ok(
            crate::decision_chunks::newest(&self.db()?, keys::DECISION_CHUNK, machine, limit)?
                .into_iter()
                .map(|(_, d)| d)
                .collect(),
        )
    }

    fn decision_summaries(
        &self,
        machine: MachineId,
        limit: usize,
    ) -> StoreResult<Vec<DecisionSummary>> {
        crate::retention::summaries(&self.db()?, machine, limit)
    }

    fn compact_decisions(&self, before: u64, limit: usize) -> StoreResult<Compaction> {
        let guard = self.write_lock();
        let db = self.db()?;
        let (mut batch, mut report) = crate::retention::compact(&db, before, limit)?;
        // The plugins' inputs go with the full records (chunks of `PER_CHUNK` machines).
        let inputs = crate::plugin_inputs::prune(
            &db,
            &mut batch,
            before,
            limit.div_ceil(crate::decision_chunks::PER_CHUNK),
        )?;
        report.bytes_before += inputs;
        if report == Compaction::default() {
            return Ok(report);
        }
        self.commit(guard, batch, |_| {})?;
        Ok(report)
    }

    fn params(&self) -> StoreResult<MarketParams> {
        Ok(self.read().params.clone())
    }

    fn set_params(&self, params: &MarketParams) -> StoreResult<()> {
        checks::params(params)?;
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(keys::PARAMS, encode(params)?);
        // Before the first clearing no interval was numbered yet: a new length applies to
        // the clock at once. Afterwards the engine opens a new epoch at the next boundary.
        let fresh_clock = self
            .read()
            .cleared_through
            .is_none()
            .then(|| IntervalClock::uniform(params.billing_interval_s));
        if let Some(clock) = &fresh_clock {
            batch.insert(keys::INTERVAL_CLOCK, encode(clock)?);
        }
        let stored = params.clone();
        self.commit(guard, batch, |s| {
            s.params = stored;
            if let Some(clock) = fresh_clock {
                s.clock = clock;
            }
        })
    }

    fn interval_clock(&self) -> StoreResult<IntervalClock> {
        Ok(self.read().clock.clone())
    }

    fn gpu_table(&self) -> StoreResult<GpuRangeTable> {
        Ok(self.read().table.clone())
    }

    fn set_gpu_table(&self, table: &GpuRangeTable) -> StoreResult<()> {
        checks::gpu_table(table)?;
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(keys::GPU_TABLE, encode(table)?);
        let stored = table.clone();
        self.commit(guard, batch, |s| s.table = stored)
    }

    fn put_plugin_version(&self, record: &PluginVersionRecord) -> StoreResult<()> {
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(
            key_bytes(keys::PLUGIN, record.digest.as_bytes()),
            encode(record)?,
        );
        self.commit(guard, batch, |_| {})
    }

    fn remove_plugin_version(&self, digest: &str) -> StoreResult<bool> {
        let guard = self.write_lock();
        let k = key_bytes(keys::PLUGIN, digest.as_bytes());
        if !self.db()?.contains_key(&k)? {
            return self.settled(guard).map(|()| false);
        }
        let mut batch = Batch::default();
        batch.remove(k);
        self.commit(guard, batch, |_| {}).map(|()| true)
    }

    fn plugin_versions(&self) -> StoreResult<Vec<PluginVersionRecord>> {
        scan(&self.db()?, keys::PLUGIN)
    }

    fn cleared_through(&self) -> StoreResult<Option<u64>> {
        Ok(self.read().cleared_through)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn set_active_plugins(&self, active: &ActivePlugins) -> StoreResult<()> {
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(keys::ACTIVE_PLUGINS, encode(active)?);
        self.commit(guard, batch, |_| {})
    }

    fn set_plugin_state(&self, state: &PluginState) -> StoreResult<()> {
        let guard = self.write_lock();
        let mut batch = Batch::default();
        batch.insert(keys::PLUGIN_STATE, encode(state)?);
        self.commit(guard, batch, |_| {})
    }

    fn plugin_state(&self) -> StoreResult<Option<PluginState>> {
        match self.db()?.get(keys::PLUGIN_STATE)? {
            Some(v) => Ok(Some(decode(keys::PLUGIN_STATE, &v)?)),
            None => Ok(None),
        }
    }

    fn active_plugins(&self) -> StoreResult<ActivePlugins> {
        match self.db()?.get(keys::ACTIVE_PLUGINS)? {
            Some(v) => decode(keys::ACTIVE_PLUGINS, &v),
            None => Ok(ActivePlugins::default()),
        }
    }

    fn tick_snapshot(&self) -> StoreResult<TickSnapshot> {
        let state = self.read();
        let mut pending = Vec::with_capacity(state.pending.len());
        let mut unserved = BTreeMap::new();
        let mut served_time = BTreeMap::new();
        for ((machine, interval), assignment) in &state.pending {
            let k = keys::mark(keys::SERVED, *machine, *interval);
            let served = match self.db()?.get(&k)? {
                Some(v) => Some(read_u64(&k, &v)?),
                None => None,
            };
            pending.push((assignment.clone(), served));
            let k = keys::mark(keys::UNSERVED, *machine, *interval);
            if let Some(v) = self.db()?.get(&k)? {
                unserved.insert((*machine, *interval), decode(&k, &v)?);
            }
            let k = keys::mark(keys::SERVED_TIME, *machine, *interval);
            if let Some(v) = self.db()?.get(&k)? {
                served_time.insert((*machine, *interval), decode(&k, &v)?);
            }
        }
        let (bids, suspended) = (state.books.active(), state.books.suspended());
        let active_price_sums = state.books.price_sums();
        Ok(TickSnapshot {
            params: state.params.clone(),
            clock: state.clock.clone(),
            table: state.table.clone(),
            fee_account: state.fee_account,
            cleared_through: state.cleared_through,
            machines: state.machines.values().cloned().collect(),
            bids,
            balances: state.balances.clone(),
            latest: state.latest.clone(),
            pending,
            served_time,
            unserved,
            failures: state
                .failures
                .iter()
                .map(|(id, f)| (*id, f.clone()))
                .collect(),
            suspended,
            active_price_sums,
            tallies: state.tallies.clone(),
            books: state.last_books.clone(),
        })
    }

    fn commit_tick(&self, commit: &TickCommit) -> StoreResult<()> {
        let started = Instant::now();
        let encode_decisions: Duration;
        let guard = self.write_lock();
        let mut batch = Batch::default();
        let mut balances = BTreeMap::new();
        let mut seq;
        let mut settled = Vec::new();
        // Bids whose state the tick changes (expired or suspended).
        let mut expired = Vec::new();
        let mut tallies = Vec::new();
        let mut runs = Vec::new();
        {
            let state = self.read();
            if state.cleared_through.is_some_and(|c| c >= commit.interval) {
                return Err(StoreError::Invalid {
                    field: "interval",
                    reason: format!("interval {} was cleared already", commit.interval),
                });
            }
            seq = state.last_transfer;
            // History's statistics: the settled intervals' revenue, the cleared one's winners.
            let mut stats: BTreeMap<u64, IntervalStats> = BTreeMap::new();
            let db = self.db()?;
            for s in &commit.settlements {
                let mut booked_before = false;
                for t in &s.transfers {
                    booked_before |= self
                        .db()?
                        .contains_key(key_bytes(keys::TRANSFER_ID, t.id.as_bytes()))?;
                }
                if !booked_before && !s.transfers.is_empty() {
                    match book(&state, &mut batch, &mut balances, seq, &s.transfers) {
                        Ok(last) => {
                            seq = last;
                            let host = state.machines.get(&s.machine).map(|m| m.host);
                            let entry = Self::stats_entry(&db, &mut stats, s.interval)?;
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
                        // Never a negative balance: an owner who cannot pay is not charged.
                        Err(StoreError::Ledger(e)) => {
                            tracing::warn!(
                                machine = s.machine,
                                interval = s.interval,
                                "interval settled without charge: {e}"
                            );
                        }
                        Err(other) => return Err(other),
                    }
                }
                settled.push((s.machine, s.interval));
            }
            let cleared = Self::stats_entry(&db, &mut stats, commit.interval)?;
            cleared.cleared = true;
            for a in &commit.assignments {
                if let Some(w) = a.winner {
                    let power_w = state
                        .bids
                        .get(&w.bid)
                        .map_or(0, |b| b.total_power_limit_w());
                    cleared.running += 1;
                    cleared.price_sum += u128::from(w.price_per_day.0);
                    cleared.price_per_kw_sum += price_per_kw(w.price_per_day.as_clore(), power_w);
                }
            }
            for (interval, s) in &stats {
                batch.insert(key(keys::INTERVAL_STATS, &[*interval]), encode(s)?);
            }
            crate::decision_chunks::write_interval(
                &mut batch,
                keys::ASSIGNMENT_CHUNK,
                "assignments",
                commit.interval,
                commit
                    .assignments
                    .iter()
                    .map(|a| (a.machine, a.interval, a)),
            )?;
            pending_lists(&state, &settled, &commit.assignments, &mut batch)?;
            let encoding = Instant::now();
            crate::decision_chunks::write_interval(
                &mut batch,
                keys::DECISION_CHUNK,
                "decisions",
                commit.interval,
                commit.decisions.iter().map(|d| (d.machine, d.interval, d)),
            )?;
            encode_decisions = encoding.elapsed();
            crate::plugin_inputs::write(
                &mut batch,
                commit.interval,
                &commit.inputs,
                &commit.books,
            )?;
            let clock = commit.clock.as_ref().unwrap_or(&state.clock);
            crate::lab_records::write_prices(&mut batch, clock, commit.interval, &commit.prices)?;
            for id in &commit.expired {
                // Under the lock: only a bid still active and past its lifetime expires.
                if let Some(bid) = state.bids.get(id)
                    && bid.state == BidState::Active
                    && commit.now >= bid.expires_at
                {
                    let bid = Bid {
                        state: BidState::Expired,
                        ..bid.as_ref().clone()
                    };
                    batch.insert(key(keys::BID, &[bid.id]), encode(&bid)?);
                    expired.push(Arc::new(bid));
                }
            }
            if let Some(clock) = &commit.clock {
                batch.insert(keys::INTERVAL_CLOCK, encode(clock)?);
            }
            for (seen, run) in &commit.failures {
                // An edit since the engine's snapshot restarted the run: leave it.
                if !state
                    .bids
                    .get(&seen.id)
                    .is_some_and(|b| Arc::ptr_eq(b, seen))
                {
                    continue;
                }
                let k = key(keys::BID_FAILURES, &[seen.id]);
                match run {
                    Some(run) => batch.insert(k, encode(run)?),
                    None => batch.remove(k),
                }
                runs.push((seen.id, run.clone()));
            }
            for seen in &commit.suspend {
                // Only the version the engine judged: an edit since then wins.
                if let Some(current) = state.bids.get(&seen.id)
                    && Arc::ptr_eq(current, seen)
                    && current.state == BidState::Active
                {
                    let bid = Bid {
                        state: BidState::Suspended,
                        ..current.as_ref().clone()
                    };
                    batch.insert(key(keys::BID, &[bid.id]), encode(&bid)?);
                    expired.push(Arc::new(bid));
                }
            }
            for ((machine, day), add) in &commit.tallies {
                let mut tally = state
                    .tallies
                    .get(&(*machine, *day))
                    .copied()
                    .unwrap_or_default();
                tally.assigned = tally.assigned.saturating_add(add.assigned);
                tally.served = tally.served.saturating_add(add.served);
                batch.insert(key(keys::TALLY, &[*machine, *day]), encode(&tally)?);
                tallies.push(((*machine, *day), tally));
            }
            batch.insert(keys::CLEARED_THROUGH, &u64_bytes(commit.interval));
        }
        let built = started.elapsed();
        let mut applied = built;
        self.commit(guard, batch, |s| {
            applied = started.elapsed();
            for bid in expired {
                s.put_bid(bid);
            }
            for (bid, run) in runs {
                match run {
                    Some(run) => {
                        s.failures.insert(bid, run);
                    }
                    None => {
                        s.failures.remove(&bid);
                    }
                }
            }
            s.tallies.extend(tallies);
            if let Some(clock) = &commit.clock {
                s.clock = clock.clone();
            }
            s.balances.extend(balances);
            s.last_transfer = seq;
            for k in settled {
                s.pending.remove(&k);
            }
            for a in &commit.assignments {
                if a.winner.is_some() {
                    s.pending.insert((a.machine, a.interval), a.clone());
                }
                s.latest.insert(a.machine, a.clone());
            }
            s.cleared_through = Some(commit.interval);
            for book in &commit.books {
                s.last_books.insert(book.machine, book.digest);
            }
        })?;
        *self.tick_commit.lock().unwrap_or_else(|p| p.into_inner()) = CommitTimings {
            build: built,
            encode_decisions,
            apply: applied - built,
            flush: started.elapsed() - applied,
        };
        Ok(())
    }

    fn audit(&self) -> StoreResult<AuditReport> {
        // The scans below (transfers, their index, balances, withdrawals) must see one
        // state: no write may land between them, or a healthy ledger looks broken.
        let _writer = self.write_lock();
        let mut transfers = Vec::new();
        // The per-account index must hold exactly one entry per account leg.
        let mut legs = 0usize;
        for item in self.db()?.scan_prefix(keys::TRANSFER) {
            let (k, v) = item?;
            let seq = read_u64(&k, &k[keys::TRANSFER.len()..])?;
            let t: Transfer = decode(&k, &v)?;
            for party in [t.from, t.to] {
                if let Party::Account(a) = party {
                    legs += 1;
                    let entry = key(keys::ACCOUNT_TRANSFER, &[a, seq]);
                    if !self.db()?.contains_key(&entry)? {
                        return Err(StoreError::Corrupt {
                            path: String::from_utf8_lossy(&entry).into_owned(),
                            detail: format!(
                                "transfer {} is missing from account {a}'s ledger index",
                                t.id
                            ),
                        });
                    }
                }
            }
            transfers.push(t);
        }
        let indexed = self.db()?.scan_prefix(keys::ACCOUNT_TRANSFER).count();
        if indexed != legs {
            return Err(StoreError::Corrupt {
                path: String::from_utf8_lossy(keys::ACCOUNT_TRANSFER).into_owned(),
                detail: format!("the ledger index has {indexed} entries for {legs} account legs"),
            });
        }
        let mut stored = BTreeMap::new();
        for item in self.db()?.scan_prefix(keys::BALANCE) {
            let (k, v) = item?;
            let account = read_u64(&k, &k[keys::BALANCE.len()..])?;
            let balance = Amount(read_u64(&k, &v)?);
            if balance != Amount::ZERO {
                stored.insert(account, balance);
            }
        }
        let report = ledger::audit(&transfers, &stored)?;
        // The pending-withdrawals account holds exactly the pending requests.
        let pending_account = self.read().pending_withdrawals;
        let held = stored.get(&pending_account).copied().unwrap_or_default();
        let requested = self
            .withdrawals(None)?
            .iter()
            .filter(|w| w.state == WithdrawalState::Pending)
            .try_fold(Amount::ZERO, |sum, w| sum.checked_add(w.amount))
            .map_err(|_| StoreError::Corrupt {
                path: "wdr/".into(),
                detail: "pending withdrawals overflow".into(),
            })?;
        if held != requested {
            return Err(StoreError::Corrupt {
                path: String::from_utf8_lossy(keys::PENDING_WITHDRAWALS_ACCOUNT).into_owned(),
                detail: format!(
                    "the pending-withdrawals account holds {held}, pending requests total {requested}"
                ),
            });
        }
        Ok(report)
    }
}
