//! The standing orders' bidding, run by the clearer at every boundary before the clearing:
//! each active order's machines are quoted with the decisions' "price that would win"
//! search ([`crate::what_wins::quote_for`]), [`gigaspot_market::standing_order::plan`]
//! picks the moves, and they are made as the client's own bids (placed, edited,
//! cancelled through the store, with the market's admission as for any client).
//!
//! What an order learns of other clients is what anyone may read: the quote route gives
//! every client the same price for the same settings. An order's failure (a store error,
//! a refused bid) is logged and recorded on the order; it never stops the clearing.

use std::collections::BTreeMap;

use gigaspot_market::account::AccountId;
use gigaspot_market::admission::RefusalReason;
use gigaspot_market::bid::{BidChange, BidState, BidTerms, Lifetime, OcRequest};
use gigaspot_market::ledger::{Party, TransferKind};
use gigaspot_market::money::Amount;
use gigaspot_market::standing_order::{Candidate, Held, OrderState, StandingOrder, plan};
use gigaspot_store::{Store, StoreError};

use crate::app::AppState;

/// Most machines quoted for one order at one boundary (the cheapest floors first): each
/// quote runs the strategy a few dozen times.
const MAX_QUOTES: usize = 24;
/// Most ledger pages read per order per boundary to count what it spent.
const LEDGER_PAGES: usize = 20;

/// Runs every active order once (`now`: the boundary's time).
pub fn run(state: &AppState, now: u64) -> Result<(), StoreError> {
    let orders: Vec<StandingOrder> = state
        .store
        .orders(None)?
        .into_iter()
        .filter(|o| o.state == OrderState::Active)
        .collect();
    if orders.is_empty() {
        return Ok(());
    }
    let market = Market::read(state.store.as_ref(), now)?;
    for order in orders {
        let id = order.id;
        if let Err(e) = run_one(state, &market, order, now) {
            tracing::warn!(order = id, "standing order not run: {e}");
            let _ = state.store.modify_order(id, &mut |o| {
                o.note = Some(format!("not run at the last boundary: {e}"));
                Ok(())
            });
        }
    }
    Ok(())
}

/// What every order reads at a boundary, read once for all of them: the available
/// machines with their reliability, the parameters and the clock table.
struct Market {
    machines: Vec<(gigaspot_market::machine::Machine, f64)>,
    params: gigaspot_market::params::MarketParams,
    table: gigaspot_market::gpu_ranges::GpuRangeTable,
}

impl Market {
    fn read(store: &dyn Store, now: u64) -> Result<Market, StoreError> {
        let mut machines = Vec::new();
        for m in store.machines()? {
            if m.available() {
                let reliability = store.reliability(m.id, now)?;
                machines.push((m, reliability));
            }
        }
        Ok(Market {
            machines,
            params: store.params()?,
            table: store.gpu_table()?,
        })
    }
}

/// Everything one order does at this boundary.
fn run_one(
    state: &AppState,
    market: &Market,
    order: StandingOrder,
    now: u64,
) -> Result<(), StoreError> {
    let store = state.store.as_ref();
    let owner = order.owner;
    if now >= order.expires_at {
        cancel_all(store, &order, now);
        return finish(store, &order, |o| {
            o.state = OrderState::Expired;
            o.held.clear();
            o.note = Some("the order's lifetime ended".into());
        });
    }
    let (spent, seen) = spent(store, &order)?;
    if let Some(budget) = order.spec.budget
        && spent >= budget
    {
        cancel_all(store, &order, now);
        return pause(
            store,
            &order,
            spent,
            seen,
            format!(
                "paused: its bids were charged {} CLORE, the budget is {}; raise the budget to resume",
                spent.as_clore(),
                budget.as_clore()
            ),
        );
    }
    // The bids it still holds: cancelled, expired or suspended ones are let go (a
    // suspended one is cancelled; another machine takes its place).
    let mut held = Vec::new();
    let mut current = BTreeMap::new();
    for h in &order.held {
        match store.bid(h.bid)? {
            Some(b) if b.state_at(now) == BidState::Active => {
                current.insert(
                    b.id,
                    (
                        b.price_per_day,
                        b.oc.iter().map(|o| OcRequest::from(*o)).collect::<Vec<_>>(),
                    ),
                );
                held.push(*h);
            }
            Some(b) if b.state_at(now) == BidState::Suspended => {
                let _ = store.cancel_bid(owner, b.id, now);
            }
            _ => {}
        }
    }
    let candidates = candidates(state, market, &order, &held, now);
    let moves = plan(
        order.spec.count,
        order.spec.unit,
        &held,
        &current,
        &candidates,
    );
    let remaining = order.expires_at.saturating_sub(now).max(1);
    let mut note = moves.note.clone();
    let mut placed = Vec::new();
    let mut out_of_money = None;
    for bid in &moves.cancel {
        let _ = store.cancel_bid(owner, *bid, now);
        held.retain(|h| h.bid != *bid);
    }
    for (bid, oc, price) in &moves.reprice {
        let change = BidChange {
            price_per_day: *price,
            oc: oc.clone(),
            image: None,
            env: None,
        };
        if let Err(e) = store.edit_bid(owner, *bid, &change, now) {
            out_of_money = out_of_money.or(unfunded(&e));
            note = Some(format!("bid {bid} could not be re-priced: {e}"));
        }
    }
    for (machine, oc, price) in &moves.place {
        let terms = BidTerms {
            machine: *machine,
            price_per_day: *price,
            image: order.spec.image.clone(),
            env: order.spec.env.clone(),
            oc: oc.clone(),
            lifetime: Lifetime::Default(remaining),
        };
        // Keyed per order, machine and boundary: a retried boundary places it once.
        let key = format!("order-{}-{machine}-{now}", order.id);
        match store.place_bid(owner, &terms, now, Some(&key)) {
            Ok(bid) => {
                held.push(Held {
                    machine: *machine,
                    bid: bid.id,
                });
                placed.push(bid.id);
            }
            Err(e) => {
                out_of_money = out_of_money.or(unfunded(&e));
                note = Some(format!("machine {machine}: the bid was refused: {e}"));
            }
        }
    }
    if let Some(why) = out_of_money {
        let order = StandingOrder {
            held: held.clone(),
            ..order
        };
        cancel_all(store, &order, now);
        return pause(
            store,
            &order,
            spent,
            seen,
            format!(
                "paused: the balance cannot pay its bids ({why}); deposit and edit the order to resume"
            ),
        );
    }
    let client_cancelled = std::cell::Cell::new(false);
    state.store.modify_order(order.id, &mut |o| {
        if o.state != OrderState::Active {
            // The client cancelled it meanwhile: the bids just placed go too.
            client_cancelled.set(true);
            return Ok(());
        }
        o.held.clone_from(&held);
        o.placed.extend(placed.iter().copied());
        o.note.clone_from(&note);
        o.spent = spent;
        o.ledger_seen = seen;
        Ok(())
    })?;
    if client_cancelled.get() {
        for bid in &placed {
            let _ = store.cancel_bid(owner, *bid, now);
        }
    }
    Ok(())
}

/// The machines the order could hold, quoted: available, not the client's own, matching
/// its models, GPU count and power; the cheapest floors (then the most reliable) quoted
/// first, at most [`MAX_QUOTES`] of them (beyond those, a machine whose floor is above the
/// order's cap is listed at its floor, the least it would need, for the order's note).
fn candidates(
    state: &AppState,
    market: &Market,
    order: &StandingOrder,
    held: &[Held],
    now: u64,
) -> Vec<Candidate> {
    let store = state.store.as_ref();
    let (params, table) = (&market.params, &market.table);
    let mut matching = Vec::new();
    for (m, reliability) in &market.machines {
        if m.host == order.owner {
            continue;
        }
        let Ok(oc) = order.spec.settings_for(m, table) else {
            continue;
        };
        let total: u64 = oc.iter().map(|o| u64::from(o.pl.unwrap_or(0))).sum();
        let floor = m
            .bid_floor(total, params)
            .max(m.min_bid(params))
            .max(gigaspot_market::admission::MIN_PRICE);
        matching.push((m, oc, order.spec.price_cap(total), floor, *reliability));
    }
    matching.sort_by(|a, b| {
        a.3.cmp(&b.3)
            .then(b.4.total_cmp(&a.4))
            .then(a.0.id.cmp(&b.0.id))
    });
    let strategy = state.registry.answering_strategy();
    let validators = state.registry.validators();
    let mut out = Vec::new();
    let mut quoted = 0;
    for (m, oc, cap, floor, reliability) in matching {
        let price_to_win = if quoted >= MAX_QUOTES {
            // Not quoted this boundary: its floor is the least it would need.
            if floor <= cap {
                continue;
            }
            Ok(floor)
        } else {
            quoted += 1;
            let own = held.iter().find(|h| h.machine == m.id).map(|h| h.bid);
            let terms = BidTerms {
                machine: m.id,
                price_per_day: Amount::ZERO,
                image: order.spec.image.clone(),
                env: order.spec.env.clone(),
                oc: oc.clone(),
                lifetime: Lifetime::Default(1),
            };
            let quote = state.what_wins.one_at_a_time(|| {
                crate::what_wins::quote_for(
                    store,
                    &state.versions,
                    strategy.clone(),
                    validators.clone(),
                    terms,
                    order.owner,
                    now,
                    own,
                )
            });
            match quote {
                Ok(q) => match q.what_wins.price_to_win {
                    Some(p) => Ok(p.0),
                    None => Err(q
                        .what_wins
                        .cannot_win
                        .unwrap_or_else(|| "no price wins".into())),
                },
                Err(e) => Err(e.to_string()),
            }
        };
        out.push(Candidate {
            machine: m.id,
            oc,
            cap,
            price_to_win,
            reliability,
        });
    }
    out
}

/// What the order's bids were charged, counting the owner's ledger bookings newer than
/// the last counted one: (spent, newest booking seen).
fn spent(store: &dyn Store, order: &StandingOrder) -> Result<(Amount, u64), StoreError> {
    let mut spent = order.spent;
    let mut newest = order.ledger_seen;
    let mut before = None;
    'pages: for _ in 0..LEDGER_PAGES {
        let page = store.account_transfers(order.owner, before, 500)?;
        if page.is_empty() {
            break;
        }
        for (seq, t) in &page {
            if *seq <= order.ledger_seen {
                break 'pages;
            }
            newest = newest.max(*seq);
            if t.kind == TransferKind::Charge
                && t.from == Party::Account(order.owner)
                && t.bid.is_some_and(|b| order.placed.contains(&b))
            {
                spent = spent.checked_add(t.amount).unwrap_or(Amount(u64::MAX));
            }
        }
        before = page.last().map(|(seq, _)| *seq);
    }
    Ok((spent, newest))
}

/// Cancels every bid the order holds (already gone ones are skipped).
fn cancel_all(store: &dyn Store, order: &StandingOrder, now: u64) {
    for h in &order.held {
        let _ = store.cancel_bid(order.owner, h.bid, now);
    }
}

fn pause(
    store: &dyn Store,
    order: &StandingOrder,
    spent: Amount,
    seen: u64,
    why: String,
) -> Result<(), StoreError> {
    finish(store, order, |o| {
        o.state = OrderState::Paused;
        o.held.clear();
        o.spent = spent;
        o.ledger_seen = seen;
        o.note = Some(why.clone());
    })
}

/// Writes `change` onto the stored order unless the client changed its state meanwhile.
fn finish(
    store: &dyn Store,
    order: &StandingOrder,
    change: impl Fn(&mut StandingOrder),
) -> Result<(), StoreError> {
    store.modify_order(order.id, &mut |o| {
        if o.state == OrderState::Active {
            change(o);
        }
        Ok(())
    })?;
    Ok(())
}

/// The refusal's words when a bid was refused for the client's balance.
fn unfunded(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Refused(r) if matches!(r.reason, RefusalReason::InsufficientFunds { .. }) => {
            Some(r.to_string())
        }
        _ => None,
    }
}

/// The standing orders that hold `bid`, for marking it in views: order id by bid.
pub fn orders_by_bid(
    store: &dyn Store,
    owner: AccountId,
) -> Result<BTreeMap<u64, u64>, StoreError> {
    Ok(store
        .orders(Some(owner))?
        .iter()
        .flat_map(|o| o.placed.iter().map(move |b| (*b, o.id)))
        .collect())
}
