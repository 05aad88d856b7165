//! Read-only public views behind the dashboard: a machine's order book as the active
//! strategy ranked it and its switch history, derived from the stored decision records.
//! The market's prices and host revenue over time are in `market_history`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use gigaspot_market::bid::{Bid, BidState};
use gigaspot_market::clearing::{Decision, Verdict, Winner};
use gigaspot_market::verdict::PluginRef;
use gigaspot_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::path_id::PathId;
use crate::wire::OcEntry;

/// `GET /api/v1/machines/{id}/book`: the machine's live bids, ranked.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderBook {
    /// The machine.
    pub machine: u64,
    /// The interval of the latest clearing, if any.
    pub interval: Option<u64>,
    /// The strategy version that ranked it.
    pub strategy: Option<PluginRef>,
    /// Winner first, then by score, then bids placed since the clearing, then the refused.
    pub entries: Vec<BookEntry>,
}

/// One bid in the order book.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookEntry {
    /// Bid id.
    pub bid: u64,
    /// Owner account.
    pub owner: u64,
    /// CLORE per day.
    pub price: f64,
    /// Sum of the per-GPU power limits, W.
    pub power_w: u32,
    /// CLORE per day per kW of power limit.
    pub price_per_kw: f64,
    /// Per-GPU settings.
    pub oc: Vec<OcEntry>,
    /// Image reference.
    pub image: String,
    /// `winner`, `scored`, `pending` (placed after the latest clearing), `rejected` (by a
    /// validator) or `ineligible` (refused by the core).
    pub status: String,
    /// The strategy's score.
    pub score: Option<f64>,
    /// 1 for the winner, then in score order; none for unranked bids.
    pub rank: Option<u32>,
    /// Why it was rejected or ineligible.
    pub reason: Option<String>,
    /// For a bid that lost the latest clearing: the lowest price at its own power limits,
    /// or the largest power limit at its price, that would have won it, or why nothing
    /// would (see `GET /api/v1/bids/{id}/decision`); absent for a winner, and for a bid
    /// not searched yet (a request searches for at most 100 ms; the next reads get the
    /// rest).
    pub what_would_win: Option<crate::what_wins::WhatWinsView>,
}

/// One interval of a machine's history.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// Interval number.
    pub interval: u64,
    /// Unix seconds at its start.
    pub at: u64,
    /// The winning bid.
    pub winner: Option<u64>,
    /// Its price, CLORE per day.
    pub price: Option<f64>,
    /// Its price per kW of power limit.
    pub price_per_kw: Option<f64>,
    /// The bid that ran before.
    pub previous: Option<u64>,
    /// Whether the machine switched workloads.
    pub switched: bool,
    /// How many bids were considered.
    pub candidates: usize,
}

pub use gigaspot_market::economics::price_per_kw;

fn machine_exists(s: &dyn Store, id: u64) -> Result<(), StoreError> {
    s.machine(id)?.map(|_| ()).ok_or(StoreError::NotFound {
        what: "machine",
        id,
    })
}

/// `GET /api/v1/machines/{id}/book` (anyone).
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}/book",
    tag = "machines",
    params(("id" = u64, Path, description = "The machine's id")),
    responses((status = 200, description = "The machine's order book, ranked", body = crate::api_dashboard::OrderBook), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn book(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> Result<Json<OrderBook>, ApiError> {
    let now = state.now();
    let versions = state.versions.clone();
    let cache = state.what_wins.clone();
    crate::deadline::work_started();
    let book = state
        .store(move |s| {
            machine_exists(s, id)?;
            let decision = match s.assignment(id)? {
                Some(a) => s.decision(id, a.interval)?,
                None => None,
            };
            let bids: Vec<Bid> = s
                .bids_on(id)?
                .into_iter()
                .filter(|b| b.is_live(now) || b.state_at(now) == BidState::Suspended)
                .collect();
            // Suspended bids are listed with the reason, out of the ranking.
            let mut suspended = HashMap::new();
            for b in bids.iter().filter(|b| b.state == BidState::Suspended) {
                if let Some(f) = s.bid_failures(b.id)? {
                    suspended.insert(b.id, f.explain());
                }
            }
            // Within a budget per request: a book read again later gets the rest.
            let deadline = std::time::Instant::now() + crate::what_wins::BOOK_SEARCH_BUDGET;
            let mut to_win = HashMap::new();
            if let Some(d) = &decision {
                for b in bids.iter().filter(|b| b.state != BidState::Suspended) {
                    if let Some(Some(w)) = cache.get_by(s, &versions, d, b.id, Some(deadline))? {
                        to_win.insert(b.id, w);
                    }
                }
            }
            Ok(rank(id, decision, bids, &suspended, &mut to_win))
        })
        .await?;
    Ok(Json(book))
}

fn rank(
    machine: u64,
    decision: Option<Decision>,
    bids: Vec<Bid>,
    suspended: &HashMap<u64, String>,
    to_win: &mut HashMap<u64, crate::what_wins::WhatWinsView>,
) -> OrderBook {
    let winner = decision.as_ref().and_then(|d| d.winner.map(|w| w.bid));
    let verdicts: HashMap<u64, &Verdict> = decision
        .iter()
        .flat_map(|d| d.verdicts.iter().map(|v| (v.bid, &v.verdict)))
        .collect();
    let mut entries: Vec<BookEntry> = bids
        .iter()
        .map(|b| {
            let power_w = b.total_power_limit_w();
            let price = b.price_per_day.as_clore();
            let (status, score, reason) = match verdicts.get(&b.id) {
                _ if b.state == BidState::Suspended => (
                    "suspended",
                    None,
                    Some(
                        suspended
                            .get(&b.id)
                            .cloned()
                            .unwrap_or_else(|| "suspended".into()),
                    ),
                ),
                Some(Verdict::Scored { score }) if Some(b.id) == winner => {
                    ("winner", Some(*score), None)
                }
                Some(Verdict::Scored { score }) => ("scored", Some(*score), None),
                Some(Verdict::Rejected { by, code, message }) => (
                    "rejected",
                    None,
                    Some(format!("{} {code}: {message}", by.name)),
                ),
                Some(Verdict::Ineligible { code, message }) => {
                    ("ineligible", None, Some(format!("{code}: {message}")))
                }
                None => ("pending", None, None),
            };
            BookEntry {
                bid: b.id,
                owner: b.owner,
                price,
                power_w,
                price_per_kw: price_per_kw(price, power_w),
                oc: crate::wire::oc_entries(&b.oc),
                image: b.image.clone(),
                status: status.into(),
                score,
                rank: None,
                reason,
                what_would_win: to_win.remove(&b.id),
            }
        })
        .collect();
    let order = |e: &BookEntry| match e.status.as_str() {
        "winner" => 0,
        "scored" => 1,
        "pending" => 2,
        "rejected" => 3,
        _ => 4,
    };
    entries.sort_by(|a, b| {
        order(a)
            .cmp(&order(b))
            .then(b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)))
            .then(b.price_per_kw.total_cmp(&a.price_per_kw))
            .then(a.bid.cmp(&b.bid))
    });
    let mut next = 1;
    for e in &mut entries {
        if e.score.is_some() {
            e.rank = Some(next);
            next += 1;
        }
    }
    OrderBook {
        machine,
        interval: decision.as_ref().map(|d| d.interval),
        strategy: decision.and_then(|d| d.strategy),
        entries,
    }
}

/// `GET /api/v1/machines/{id}/history?limit=N` (anyone): the newest N intervals (default
/// 50, at most 1,000), newest first.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}/history",
    tag = "machines",
    params(("id" = u64, Path, description = "The machine's id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 50, up to 1000)")),
    responses((status = 200, description = "The machine's cleared intervals, newest first", body = Vec<crate::api_dashboard::HistoryEntry>), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn machine_history(
    State(state): State<AppState>,
    PathId(id): PathId,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let limit = crate::query::limit(&query, 50, 1000)?;
    let history = state
        .store(move |s| {
            machine_exists(s, id)?;
            let clock = s.interval_clock()?;
            s.decision_summaries(id, limit)?
                .into_iter()
                .map(|d| {
                    let won = winning_bid(s, d.winner)?;
                    Ok(HistoryEntry {
                        interval: d.interval,
                        at: clock.start_of(d.interval),
                        winner: d.winner.map(|w| w.bid),
                        price: won.map(|(price, _)| price),
                        price_per_kw: won.map(|(price, power)| price_per_kw(price, power)),
                        previous: d.previous,
                        switched: d.switched,
                        candidates: d.candidates as usize,
                    })
                })
                .collect()
        })
        .await?;
    Ok(Json(history))
}

/// The winner's price and total power limit.
pub fn winning_bid(
    s: &dyn Store,
    winner: Option<Winner>,
) -> Result<Option<(f64, u32)>, StoreError> {
    let Some(w) = winner else {
        return Ok(None);
    };
    let power = s.bid(w.bid)?.map_or(0, |b| b.total_power_limit_w());
    Ok(Some((w.price_per_day.as_clore(), power)))
}
