//! `GET /api/v1/market/history`: the market's prices and each host's revenue per interval,
//! for the dashboard's charts.
//!
//! An interval's summary is final once the interval after it was cleared: its decisions
//! are written when it is cleared, its charges when the next boundary settles it. Final
//! summaries are kept in memory and computed once each; a boundary adds one. Requests
//! compute one at a time, so a crowd of dashboards after a boundary costs one computation.
//!
//! The ticks record each interval's statistics as they clear and settle it
//! (`Store::interval_stats`), so a summary is one record read. Intervals cleared by a store
//! from before those records are summarized from their assignments and the hosts' ledgers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use gigaspot_market::economics::UNITS_PER_CLORE;
use gigaspot_market::interval_clock::IntervalClock;
use gigaspot_market::ledger::{Party, TransferKind};
use gigaspot_store::{IntervalStats, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::api_dashboard::price_per_kw;
use crate::api_error::ApiError;
use crate::app::AppState;

/// The answer: prices and revenue per interval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MarketHistory {
    /// Billing interval in force, seconds.
    pub interval_s: u64,
    /// Host accounts by id, with their names.
    #[schema(value_type = BTreeMap<String, String>)]
    pub hosts: BTreeMap<u64, String>,
    /// Oldest first.
    pub intervals: Vec<IntervalSummary>,
}

/// The market in one interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntervalSummary {
    /// Interval number.
    pub interval: u64,
    /// Unix seconds at its start.
    pub at: u64,
    /// Machines with a winner.
    pub running: usize,
    /// Mean winning price, CLORE per day.
    pub avg_price: Option<f64>,
    /// Mean winning price per kW of power limit.
    pub avg_price_per_kw: Option<f64>,
    /// Net revenue charged to each host for the interval, CLORE.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub revenue_by_host: BTreeMap<u64, f64>,
}

/// The most intervals one request may ask for.
const MAX_INTERVALS: usize = 1_440;

/// What the service remembers between requests.
#[derive(Default)]
pub struct HistoryCache {
    state: tokio::sync::Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    /// Final summaries by interval (the newest `MAX_INTERVALS` of them).
    settled: BTreeMap<u64, IntervalSummary>,
    /// The last answer per `limit`, with the (current interval, last cleared) it was for.
    answers: HashMap<usize, ((u64, Option<u64>), MarketHistory)>,
}

/// `GET /api/v1/market/history?limit=N` (anyone): the last `limit` intervals (default 60, up
/// to 1,440), oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/market/history",
    tag = "market",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1440, description = "Intervals (default 60, up to 1440)")),
    responses((status = 200, description = "Clearing prices and volume per interval", body = crate::market_history::MarketHistory), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody))
)]
pub async fn market_history(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<MarketHistory>, ApiError> {
    let limit = crate::query::limit(&query, 60, MAX_INTERVALS)?;
    let (clock, cleared) = state
        .store(|s| Ok((s.interval_clock()?, s.cleared_through()?)))
        .await?;
    let current = clock.interval_at(state.now());
    let mut remembered = state.history_cache.state.lock().await;
    if let Some((version, answer)) = remembered.answers.get(&limit)
        && *version == (current, cleared)
    {
        return Ok(Json(answer.clone()));
    }
    // Lent to the blocking computation; should it fail, the summaries are simply
    // computed again by the next request.
    let settled = std::mem::take(&mut remembered.settled);
    let (answer, settled) = state
        .store(move |s| {
            let mut settled = settled;
            let answer = compute(s, &mut settled, limit, current, cleared, &clock)?;
            Ok((answer, settled))
        })
        .await?;
    remembered.settled = settled;
    remembered
        .answers
        .retain(|_, (version, _)| *version == (current, cleared));
    remembered
        .answers
        .insert(limit, ((current, cleared), answer.clone()));
    Ok(Json(answer))
}

/// The answer for intervals `current - limit + 1 ..= current`, adding the final summaries
/// it lacks to `settled`.
fn compute(
    s: &dyn Store,
    settled: &mut BTreeMap<u64, IntervalSummary>,
    limit: usize,
    current: u64,
    cleared: Option<u64>,
    clock: &IntervalClock,
) -> Result<MarketHistory, StoreError> {
    let first = current.saturating_sub(limit as u64 - 1);
    let machines = s.machines()?;
    let mut hosts = BTreeMap::new();
    for machine in &machines {
        if let Some(host) = s.account(machine.host)? {
            hosts.insert(host.id, host.name);
        }
    }
    let is_final = |i: u64| cleared.is_some_and(|c| c > i);
    let missing: BTreeSet<u64> = (first..=current)
        .filter(|i| is_final(*i) && !settled.contains_key(i))
        .collect();
    // The newest cleared interval that is not final yet: its prices, no revenue so far.
    let open = cleared.filter(|c| (first..=current).contains(c) && !is_final(*c));
    let mut fresh: BTreeMap<u64, IntervalSummary> = missing
        .iter()
        .chain(open.iter())
        .map(|&i| (i, summary(i, clock)))
        .collect();
    let mut unrecorded: BTreeSet<u64> = fresh.keys().copied().collect();
    if let (Some(&low), Some(&high)) = (fresh.keys().next(), fresh.keys().next_back()) {
        for stats in s.interval_stats(low, high)? {
            if let Some(entry) = fresh.get_mut(&stats.interval)
                && stats.cleared
            {
                unrecorded.remove(&stats.interval);
                add_stats(entry, &stats, missing.contains(&stats.interval));
            }
        }
    }
    // Older intervals: the assignments hold each interval's winner (one range scan per
    // machine, no decision record decoded), the hosts' ledgers its revenue.
    if let (Some(&low), Some(&high)) = (unrecorded.first(), unrecorded.last()) {
        for machine in &machines {
            for a in s.assignments_between(machine.id, low, high)? {
                if let (Some(entry), Some(w)) = (fresh.get_mut(&a.interval), a.winner)
                    && unrecorded.contains(&a.interval)
                {
                    let power = s.bid(w.bid)?.map_or(0, |b| b.total_power_limit_w());
                    add_winner(entry, (w.price_per_day.as_clore(), power));
                }
            }
        }
    }
    let missing_unrecorded: BTreeSet<u64> = missing.intersection(&unrecorded).copied().collect();
    if let Some(&oldest) = missing_unrecorded.first() {
        add_revenue(
            s,
            &hosts,
            &mut fresh,
            &missing_unrecorded,
            clock.start_of(oldest),
        )?;
    }
    for entry in fresh.values_mut() {
        finish(entry);
    }
    let open_entry = open.and_then(|i| fresh.remove(&i));
    settled.extend(fresh);
    let keep_from = current.saturating_sub(MAX_INTERVALS as u64);
    settled.retain(|&i, _| i >= keep_from);
    let intervals = (first..=current)
        .map(|i| match (settled.get(&i), &open_entry) {
            (Some(entry), _) => entry.clone(),
            (None, Some(entry)) if entry.interval == i => entry.clone(),
            (None, _) => summary(i, clock),
        })
        .collect();
    Ok(MarketHistory {
        interval_s: clock.length_s(),
        hosts,
        intervals,
    })
}

fn summary(interval: u64, clock: &IntervalClock) -> IntervalSummary {
    IntervalSummary {
        interval,
        at: clock.start_of(interval),
        ..IntervalSummary::default()
    }
}

/// Takes an interval's recorded statistics (its revenue only when `settled`); `finish`
/// turns the sums into means.
fn add_stats(entry: &mut IntervalSummary, stats: &IntervalStats, settled: bool) {
    entry.running = stats.running as usize;
    if stats.running > 0 {
        entry.avg_price = Some(stats.price_sum as f64 / UNITS_PER_CLORE as f64);
        entry.avg_price_per_kw = Some(stats.price_per_kw_sum);
    }
    if settled {
        entry.revenue_by_host = stats
            .revenue_by_host
            .iter()
            .map(|(host, amount)| (*host, amount.as_clore()))
            .collect();
    }
}

/// Counts a winner with its price and total power limit; `finish` turns the sums into means.
fn add_winner(entry: &mut IntervalSummary, (price, power_w): (f64, u32)) {
    entry.running += 1;
    *entry.avg_price.get_or_insert(0.0) += price;
    *entry.avg_price_per_kw.get_or_insert(0.0) += price_per_kw(price, power_w);
}

fn finish(entry: &mut IntervalSummary) {
    let n = entry.running as f64;
    if entry.running > 0 {
        entry.avg_price = entry.avg_price.map(|sum| sum / n);
        entry.avg_price_per_kw = entry.avg_price_per_kw.map(|sum| sum / n);
    }
}

/// Adds each host's charges for the intervals in `wanted` to `entries`, reading its ledger
/// newest first and stopping at `since`: a charge is booked after its interval ends, so
/// nothing older can belong to `wanted`.
fn add_revenue(
    s: &dyn Store,
    hosts: &BTreeMap<u64, String>,
    entries: &mut BTreeMap<u64, IntervalSummary>,
    wanted: &BTreeSet<u64>,
    since: u64,
) -> Result<(), StoreError> {
    for &host in hosts.keys() {
        let mut before = None;
        'pages: loop {
            let page = s.account_transfers(host, before, 256)?;
            let Some(&(oldest, _)) = page.last() else {
                break;
            };
            before = Some(oldest);
            for (_, t) in &page {
                if t.at < since {
                    break 'pages;
                }
                if t.kind == TransferKind::Charge
                    && t.to == Party::Account(host)
                    && let Some(interval) = t.interval
                    && wanted.contains(&interval)
                    && let Some(entry) = entries.get_mut(&interval)
                {
                    *entry.revenue_by_host.entry(host).or_default() += t.amount.as_clore();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::account::Role;
    use gigaspot_market::bid::{BidTerms, Lifetime, OcRequest};
    use gigaspot_market::money::Amount;
    use gigaspot_market::{PricePerWatt, StrategyOnly};
    use gigaspot_store::{IntervalEngine, SledStore};

    fn machine(store: &SledStore, host: &str) -> u64 {
        let host = store.create_account(host, &[Role::Host]).unwrap().id;
        crate::test_support::online_machine(store, host)
    }

    #[test]
    fn remembered_summaries_match_a_fresh_computation_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let machines = [machine(&store, "h1"), machine(&store, "h2")];
        let client = store.create_account("c", &[Role::Client]).unwrap().id;
        store
            .deposit(client, Amount::clore(10_000), "seed", 0)
            .unwrap();
        let plugins = StrategyOnly(PricePerWatt::new());
        let engine = IntervalEngine::without_audit(&store, &plugins);
        let start = 1_800_000_000 / 60;
        let mut settled = BTreeMap::new();
        let mut last = None;
        for k in 0..8u64 {
            let interval = start + k;
            // A better bid every interval, on alternating machines: winners and prices move.
            let terms = BidTerms {
                machine: machines[(k % 2) as usize],
                price_per_day: Amount::clore(100 + 10 * k),
                image: "registry.example/app:1".into(),
                env: Default::default(),
                oc: vec![OcRequest {
                    pl: Some(300),
                    ..OcRequest::default()
                }],
                lifetime: Lifetime::Explicit(86_400),
            };
            store
                .place_bid(client, &terms, interval * 60, None)
                .unwrap();
            engine.tick(interval * 60).unwrap();
            for m in machines {
                if let Some(w) = store.assignment(m).unwrap().and_then(|a| a.winner) {
                    store.record_served(m, interval, w.bid).unwrap();
                }
            }
            let cleared = store.cleared_through().unwrap();
            let clock = store.interval_clock().unwrap();
            let remembered = compute(&store, &mut settled, 5, interval, cleared, &clock).unwrap();
            let fresh =
                compute(&store, &mut BTreeMap::new(), 5, interval, cleared, &clock).unwrap();
            assert_eq!(
                serde_json::to_value(&remembered).unwrap(),
                serde_json::to_value(&fresh).unwrap(),
                "interval {k}"
            );
            last = Some(remembered);
        }
        let last = last.unwrap();
        // Every interval before the last cleared one is final and remembered; that one not.
        assert!(settled.contains_key(&(start + 6)));
        assert!(!settled.contains_key(&(start + 7)));
        let newest = last.intervals.last().unwrap();
        assert_eq!(newest.running, 2);
        assert!(newest.revenue_by_host.is_empty(), "not settled yet");
        let before = &last.intervals[3];
        assert_eq!(before.revenue_by_host.len(), 2, "{before:?}");

        // The recorded statistics say what the assignments and the ledgers say: a store
        // from before the records (none of them) gives the same history.
        let (current, cleared, clock) = (
            start + 7,
            store.cleared_through().unwrap(),
            store.interval_clock().unwrap(),
        );
        assert_eq!(store.interval_stats(start, current).unwrap().len(), 8);
        store.close().unwrap();
        drop(store);
        {
            let db = sled::open(dir.path()).unwrap();
            for key in db.scan_prefix(b"hist/").keys() {
                db.remove(key.unwrap()).unwrap();
            }
            db.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert!(store.interval_stats(start, current).unwrap().is_empty());
        let recomputed =
            compute(&store, &mut BTreeMap::new(), 5, current, cleared, &clock).unwrap();
        assert_eq!(
            serde_json::to_value(&recomputed).unwrap(),
            serde_json::to_value(&last).unwrap()
        );
    }
}
