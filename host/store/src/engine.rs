//! The interval engine: at each interval boundary it settles the intervals just served
//! and clears every machine for the next one, persisting everything in one commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gigaspot_market::Plugins;
use gigaspot_market::account::AccountId;
use gigaspot_market::bid::{Bid, BidId};
use gigaspot_market::billing::{IntervalCharge, ServedInterval, charge_transfers};
use gigaspot_market::clearing::{ClearingInput, Decision, Recorded, clear_machine_recorded};
use gigaspot_market::context::RunningBid;
use gigaspot_market::ledger;
use gigaspot_market::ledger::AuditReport;
use gigaspot_market::machine::{Machine, MachineId};
use gigaspot_market::money::{Amount, SECONDS_PER_DAY};
use gigaspot_market::plugin_input::InputRecord;
use gigaspot_market::suspension::{self, BidFailures, Tally};

use crate::decision_chunks::PER_CHUNK;
use crate::error::StoreResult;
use crate::records::{Assignment, BookBlob, Settlement, TickCommit, TickReport, TickSnapshot};
use crate::store::Store;

/// Runs the market's billing intervals over a [`Store`] with the installed plugins.
pub struct IntervalEngine<'a> {
    store: &'a dyn Store,
    plugins: &'a dyn Plugins,
    suspend_after: u32,
}

/// Consecutive intervals unserved by a bid's own fault after which it is suspended,
/// unless configured otherwise.
pub const DEFAULT_SUSPEND_AFTER: u32 = 2;

impl<'a> IntervalEngine<'a> {
    /// Audits the ledger and, when it holds, returns an engine ready to tick. A failed
    /// audit stops billing: the error says which invariant broke.
    pub fn start(
        store: &'a dyn Store,
        plugins: &'a dyn Plugins,
    ) -> StoreResult<(Self, AuditReport)> {
        let report = store.audit()?;
        Ok((IntervalEngine::without_audit(store, plugins), report))
    }

    /// An engine for a caller that audited the ledger already (at start-up).
    pub fn without_audit(store: &'a dyn Store, plugins: &'a dyn Plugins) -> Self {
        IntervalEngine {
            store,
            plugins,
            suspend_after: DEFAULT_SUSPEND_AFTER,
        }
    }

    /// Suspends a bid after `intervals` consecutive intervals unserved by its own fault
    /// (0 = never).
    pub fn suspend_after(mut self, intervals: u32) -> Self {
        self.suspend_after = intervals;
        self
    }

    /// Runs the boundary that `now` (unix seconds) falls in, if not run yet: settles every
    /// cleared-but-unsettled interval before it (charging the served ones exactly once),
    /// then clears every machine for the current interval.
    pub fn tick(&self, now: u64) -> StoreResult<TickReport> {
        let started = std::time::Instant::now();
        let mut snapshot = self.store.tick_snapshot()?;
        let snapshot_done = started.elapsed();
        let current = snapshot.clock.interval_at(now);
        if snapshot.cleared_through.is_some_and(|c| c >= current) {
            return Ok(TickReport::default());
        }
        // A new interval length takes effect here, at the first boundary after the change:
        // the interval starting now is the first of the new length.
        let clock = snapshot
            .clock
            .rebase(current, snapshot.params.billing_interval_s);
        // What each owner's live bids would cost this interval if all won, from the
        // store's running sums of active prices: at least the sum of the bids' own
        // charges (each rounded down; bids past their lifetime not yet marked expired
        // included), so an owner who cannot pay it is treated as contended, never one who
        // can. (The funding check of each bid is exact either way.)
        let interval_s = u128::from(snapshot.params.billing_interval_s);
        let mut demand: HashMap<AccountId, u128> = snapshot
            .active_price_sums
            .iter()
            .map(|(owner, sum)| (*owner, sum * interval_s / u128::from(SECONDS_PER_DAY)))
            .collect();
        let mut report = TickReport {
            interval: Some(current),
            ..TickReport::default()
        };
        let mut balances = snapshot.balances.clone();
        let settlements = settle(&snapshot, current, now, &mut balances, &mut report);
        let judged = judge(&snapshot, current, self.suspend_after);
        // A bid suspended at this boundary is out of this very clearing.
        for gone in &judged.suspend {
            if let Some(bids) = snapshot.bids.get_mut(&gone.machine) {
                Arc::make_mut(bids).retain(|b| b.id != gone.id);
            }
            if gone.is_live(now)
                && let Some(need) = demand.get_mut(&gone.owner)
            {
                *need = need.saturating_sub(interval_cost(gone, &snapshot.params));
            }
        }

        let settled = started.elapsed();
        let ClearedAll {
            assignments,
            decisions,
            mut expired,
            inputs,
            books,
        } = self.clear_all(&snapshot, current, now, balances, &demand, &mut report);
        // Bids past their lifetime: those the clearing met, and any suspended here.
        expired.extend(
            judged
                .suspend
                .iter()
                .filter(|b| now >= b.expires_at)
                .map(|b| b.id),
        );
        expired.sort_unstable();
        let prices = crate::market_prices::of_interval(&snapshot, &decisions);
        let cleared = started.elapsed();
        self.store.commit_tick(&TickCommit {
            interval: current,
            settlements,
            assignments,
            decisions,
            expired,
            now,
            clock,
            failures: judged.failures,
            suspend: judged.suspend,
            tallies: judged.tallies,
            inputs,
            books,
            prices,
        })?;
        report.timings = crate::records::TickTimings {
            snapshot: snapshot_done,
            settle: settled - snapshot_done,
            clear: cleared - settled,
            commit: started.elapsed() - cleared,
        };
        Ok(report)
    }

    /// Clears every machine. Machines whose bidders can all fund every bid they have at
    /// once do not depend on each other and are cleared in parallel; the others are
    /// cleared in machine order, each winner committing its owner's funds before the next
    /// machine, exactly as a sequential pass would.
    ///
    /// Plugin calls are grouped by decision chunk ([`PER_CHUNK`] consecutive machines in
    /// id order; see [`Plugins::grouped`]): a group's machines are cleared in order on one
    /// thread, so which calls share a plugin instance never depends on the thread count
    /// or on scheduling.
    fn clear_all(
        &self,
        snapshot: &TickSnapshot,
        current: u64,
        now: u64,
        mut available: BTreeMap<AccountId, Amount>,
        demand: &HashMap<AccountId, u128>,
        report: &mut TickReport,
    ) -> ClearedAll {
        let contended = contended_owners(demand, &available);
        let (coupled, independent): (Vec<(usize, &Arc<Machine>)>, Vec<_>) =
            snapshot.machines.iter().enumerate().partition(|(_, m)| {
                !contended.is_empty()
                    && snapshot.bids.get(&m.id).is_some_and(|bids| {
                        bids.iter()
                            .any(|b| b.is_live(now) && contended.contains(&b.owner))
                    })
            });
        let same_group = |a: &(usize, _), b: &(usize, _)| a.0 / PER_CHUNK == b.0 / PER_CHUNK;
        let groups: Vec<&[(usize, &Arc<Machine>)]> = independent.chunk_by(same_group).collect();
        let mut decided: Vec<Cleared> = Vec::with_capacity(snapshot.machines.len());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
            .min(groups.len());
        let next = AtomicUsize::new(0);
        let funds = &available;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut cleared = Vec::new();
                        while let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                            self.plugins.grouped(&mut || {
                                for (_, m) in group.iter() {
                                    cleared.push(self.clear_one(
                                        snapshot,
                                        m,
                                        current,
                                        now,
                                        false,
                                        |owner, amount| {
                                            funds.get(&owner).is_some_and(|b| *b >= amount)
                                        },
                                    ));
                                }
                            });
                        }
                        cleared
                    })
                })
                .collect();
            for worker in workers {
                // A panic in a plugin call is a bug of ours, not the plugin's: propagate it.
                decided.extend(
                    worker
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                );
            }
        });
        for group in coupled.chunk_by(same_group) {
            self.plugins.grouped(&mut || {
                for (_, machine) in group {
                    let outcome =
                        self.clear_one(snapshot, machine, current, now, true, |owner, amount| {
                            available.get(&owner).is_some_and(|b| *b >= amount)
                        });
                    if let Some(w) = outcome.decision.winner
                        && let Some(balance) = available.get_mut(&w.owner)
                    {
                        // Commit the owner's funds so that other machines cannot spend them.
                        *balance = balance.checked_sub(w.charge.total).unwrap_or_default();
                    }
                    decided.push(outcome);
                }
            });
        }
        decided.sort_by_key(|c| c.decision.machine);

        let mut assignments = Vec::with_capacity(decided.len());
        let mut decisions = Vec::with_capacity(decided.len());
        let mut expired = Vec::new();
        let mut inputs = Vec::with_capacity(decided.len());
        let mut books = Vec::new();
        for Cleared {
            decision,
            running,
            host,
            expired: past_lifetime,
            input,
            book,
        } in decided
        {
            expired.extend(past_lifetime);
            inputs.extend(input.map(|i| (decision.machine, i)));
            books.extend(book);
            let latest = snapshot.latest.get(&decision.machine);
            let continues =
                running.is_some() && decision.winner.map(|w| w.bid) == running.map(|r| r.bid_id);
            report.machines += 1;
            report.switches += usize::from(decision.switched);
            report.idle += usize::from(decision.winner.is_none());
            assignments.push(Assignment {
                machine: decision.machine,
                host,
                interval: current,
                winner: decision.winner,
                running_since: match (decision.winner, continues) {
                    (None, _) => None,
                    (Some(_), true) => latest.and_then(|a| a.running_since),
                    (Some(_), false) => Some(now),
                },
            });
            decisions.push(decision);
        }
        ClearedAll {
            assignments,
            decisions,
            expired,
            inputs,
            books,
        }
    }

    fn clear_one(
        &self,
        snapshot: &TickSnapshot,
        machine: &Machine,
        current: u64,
        now: u64,
        coupled: bool,
        can_pay: impl Fn(AccountId, Amount) -> bool,
    ) -> Cleared {
        let live = snapshot.bids.get(&machine.id);
        let running = running_bid(
            snapshot.latest.get(&machine.id),
            live.map(|b| b.as_slice()).unwrap_or_default(),
            now,
        );
        let input = ClearingInput {
            machine,
            table: &snapshot.table,
            params: &snapshot.params,
            interval: current,
            now,
            running,
            reliability: suspension::reliability_at(&snapshot.tallies, machine.id, now),
            bids: snapshot
                .bids
                .get(&machine.id)
                .map(|b| b.iter().map(|b| b.as_ref()).collect())
                .unwrap_or_default(),
        };
        let (decision, recorded) = clear_machine_recorded(&input, can_pay, self.plugins);
        let (input, book) = match recorded {
            None => (None, None),
            Some(Recorded { mut record, input }) => {
                record.coupled = coupled;
                // The book is encoded here, on the clearing's thread, and only when it
                // changed since the machine's last one.
                let book = (snapshot.books.get(&machine.id) != Some(&record.book))
                    .then(|| crate::codec::encode(&input.book()).ok())
                    .flatten()
                    .map(|body| BookBlob {
                        machine: machine.id,
                        digest: record.book,
                        body,
                    });
                (Some(record), book)
            }
        };
        Cleared {
            decision,
            input,
            book,
            running,
            host: machine.host,
            // Read while the clearing has the bids in cache.
            expired: live
                .map(|bids| {
                    bids.iter()
                        .filter(|b| now >= b.expires_at)
                        .map(|b| b.id)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Every machine's clearing results, in machine order.
struct ClearedAll {
    assignments: Vec<Assignment>,
    decisions: Vec<Decision>,
    expired: Vec<BidId>,
    inputs: Vec<(MachineId, InputRecord)>,
    books: Vec<BookBlob>,
}

/// The bid running on a machine whose latest assignment is `latest`, as the plugins see
/// it at `now`; `live` holds the machine's live bids (the running bid's power limit is
/// known while it is live).
pub fn running_bid(latest: Option<&Assignment>, live: &[Arc<Bid>], now: u64) -> Option<RunningBid> {
    latest.and_then(|a| {
        a.winner.map(|w| RunningBid {
            bid_id: w.bid,
            owner_id: w.owner,
            price_per_day: w.price_per_day.0,
            total_power_limit_w: live
                .iter()
                .find(|b| b.id == w.bid)
                .map(|b| b.total_power_limit_w()),
            running_for_s: now.saturating_sub(a.running_since.unwrap_or(now)),
        })
    })
}

/// One machine's clearing result.
struct Cleared {
    decision: Decision,
    /// What the plugins saw (`None`: none was called).
    input: Option<InputRecord>,
    /// The machine's book when it differs from the last one written.
    book: Option<BookBlob>,
    running: Option<RunningBid>,
    host: AccountId,
    /// The machine's bids past their lifetime.
    expired: Vec<BidId>,
}

/// What one interval of `bid` costs its owner if it wins (`IntervalCharge::new`'s total).
fn interval_cost(bid: &Bid, params: &gigaspot_market::params::MarketParams) -> u128 {
    u128::from(
        bid.price_per_day
            .pro_rata(u64::from(params.billing_interval_s))
            .0,
    )
}

/// Owners whose live bids together (`demand`) cost more than they can pay this interval.
fn contended_owners(
    demand: &HashMap<AccountId, u128>,
    available: &BTreeMap<AccountId, Amount>,
) -> HashSet<AccountId> {
    demand
        .iter()
        .filter(|(owner, need)| {
            u128::from(available.get(owner).copied().unwrap_or_default().0) < **need
        })
        .map(|(owner, _)| *owner)
        .collect()
}

/// The pending assignments of intervals before `current`, oldest first (then by machine).
fn pending_before(snapshot: &TickSnapshot, current: u64) -> Vec<&(Assignment, Option<BidId>)> {
    let mut pending: Vec<_> = snapshot
        .pending
        .iter()
        .filter(|(a, _)| a.interval < current)
        .collect();
    pending.sort_by_key(|(a, _)| (a.interval, a.machine));
    pending
}

/// What the settled intervals mean for their winners and machines.
#[derive(Default)]
struct Judged {
    failures: Vec<(Arc<Bid>, Option<BidFailures>)>,
    suspend: Vec<Arc<Bid>>,
    tallies: Vec<((MachineId, u64), Tally)>,
}

/// Judges each pending interval before `current` by whose fault it was unserved, oldest
/// first: runs of the bids' own failures (suspending a bid whose run reaches
/// `suspend_after`), and the machines' assigned/served tallies per day.
fn judge(snapshot: &TickSnapshot, current: u64, suspend_after: u32) -> Judged {
    let pending = pending_before(snapshot, current);
    // Each judged winner's run of failures, with its machine (to find the bid there).
    let mut runs: BTreeMap<BidId, (MachineId, Option<BidFailures>)> = BTreeMap::new();
    let mut tallies: BTreeMap<(MachineId, u64), Tally> = BTreeMap::new();
    for (assignment, served) in pending {
        let Some(winner) = assignment.winner else {
            continue;
        };
        let reported = snapshot
            .unserved
            .get(&(assignment.machine, assignment.interval));
        let outcome = suspension::outcome(winner.bid, *served, reported);
        let day = snapshot.clock.start_of(assignment.interval) / 86_400;
        tallies
            .entry((assignment.machine, day))
            .or_default()
            .count(&outcome);
        let previous = match runs.get(&winner.bid) {
            Some((_, run)) => run.clone(),
            None => snapshot.failures.get(&winner.bid).cloned(),
        };
        let next = suspension::next_failures(previous.as_ref(), &outcome, assignment.interval);
        if next != previous {
            runs.insert(winner.bid, (assignment.machine, next));
        }
    }
    let mut judged = Judged {
        tallies: tallies
            .into_iter()
            .filter(|(_, t)| t.assigned > 0)
            .collect(),
        ..Judged::default()
    };
    for (bid, (machine, run)) in runs {
        // Only bids still in the working set are judged further (a cancelled or expired
        // one is final).
        let Some(current) = snapshot.bids.get(&machine).and_then(|bids| {
            // Each book is sorted by id.
            let at = bids.binary_search_by_key(&bid, |b| b.id).ok()?;
            bids.get(at)
        }) else {
            continue;
        };
        if let Some(run) = &run
            && run.suspends(suspend_after)
        {
            tracing::info!(bid, "suspended: {}", run.explain());
            judged.suspend.push(Arc::clone(current));
        }
        judged.failures.push((Arc::clone(current), run));
    }
    judged
}

/// Settles the pending intervals before `current`, oldest first: a served interval is
/// charged when its owner can pay; an unserved one is closed without charge.
fn settle(
    snapshot: &TickSnapshot,
    current: u64,
    now: u64,
    balances: &mut BTreeMap<AccountId, Amount>,
    report: &mut TickReport,
) -> Vec<Settlement> {
    let pending = pending_before(snapshot, current);
    let mut settlements = Vec::with_capacity(pending.len());
    for (assignment, served) in pending {
        let mut transfers = Vec::new();
        if let Some(winner) = assignment.winner
            && *served == Some(winner.bid)
        {
            // Pay for what was served: the seconds confirmed running (an interval marked
            // served before served time was recorded counts whole).
            let length = snapshot.clock.length_of(assignment.interval);
            let seconds = snapshot
                .served_time
                .get(&(assignment.machine, assignment.interval))
                .filter(|s| s.bid == winner.bid)
                .map_or(length, |s| s.seconds.min(length));
            let charge =
                IntervalCharge::for_seconds(winner.price_per_day, seconds, snapshot.params.fee_bps);
            let interval = ServedInterval {
                machine: assignment.machine,
                host: assignment.host,
                interval: assignment.interval,
                bid: winner.bid,
                owner: winner.owner,
            };
            let legs = charge_transfers(&interval, charge, snapshot.fee_account, now);
            // Both legs or neither: try them on the accounts they touch only.
            let mut trial: BTreeMap<AccountId, Amount> =
                [winner.owner, assignment.host, snapshot.fee_account]
                    .into_iter()
                    .map(|a| (a, balances.get(&a).copied().unwrap_or_default()))
                    .collect();
            if !legs.is_empty() && legs.iter().all(|t| ledger::apply(&mut trial, t).is_ok()) {
                balances.extend(trial);
                transfers = legs;
                report.charged += 1;
                report.revenue = report
                    .revenue
                    .checked_add(charge.total)
                    .unwrap_or(report.revenue);
            }
        }
        report.settled += 1;
        settlements.push(Settlement {
            machine: assignment.machine,
            interval: assignment.interval,
            transfers,
        });
    }
    settlements
}
