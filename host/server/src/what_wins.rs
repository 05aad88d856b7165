//! "What would win": for a bid that lost its machine's latest clearing, the price (or the
//! power limit) that would have won it, found by re-running the recorded plugin versions
//! on the recorded input ([`gigaspot_market::what_wins`]); and `GET
//! /api/v1/machines/{id}/quote`, the price that would win a machine now for a bid not yet
//! placed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use gigaspot_market::account::AccountId;
use gigaspot_market::admission;
use gigaspot_market::bid::{Bid, BidId, BidState, BidTerms, Lifetime, OcRequest};
use gigaspot_market::clearing::{ClearingInput, Decision, Verdict, clear_machine_recorded};
use gigaspot_market::machine::MachineId;
use gigaspot_market::money::Amount;
use gigaspot_market::verdict::PluginRef;
use gigaspot_market::what_wins::{WhatWins, what_wins};
use gigaspot_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::app::AppState;
use crate::auth::Caller;
use crate::path_id::PathId;
use crate::plugin_versions::PluginVersions;
use crate::wire::{Clore, OcEntry};

/// What it would take a bid to win.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhatWinsView {
    /// The lowest price per day at the bid's own power limits that wins (CLORE/day);
    /// absent when no price up to the market's maximum wins (see `cannot_win`).
    #[schema(value_type = Option<f64>)]
    pub price_to_win: Option<Clore>,
    /// The largest total power limit (W) that wins at the bid's own price, every GPU's
    /// limit cut by the same watts down to its card minimum; absent when none does.
    pub power_limit_to_win_w: Option<u32>,
    /// Why no price can win, when none can.
    pub cannot_win: Option<String>,
    /// Plugin runs the search made (each bounded in fuel and time as in a tick).
    pub calls: u32,
}

impl From<WhatWins> for WhatWinsView {
    fn from(w: WhatWins) -> Self {
        WhatWinsView {
            price_to_win: w.price_to_win.map(Clore),
            power_limit_to_win_w: w.power_limit_to_win_w,
            cannot_win: w.cannot_win,
            calls: w.calls,
        }
    }
}

impl WhatWinsView {
    fn cannot(why: impl Into<String>) -> Self {
        WhatWinsView {
            price_to_win: None,
            power_limit_to_win_w: None,
            cannot_win: Some(why.into()),
            calls: 0,
        }
    }
}

/// The searches already made, by (machine, interval, bid): a clearing's answers never
/// change, so each is searched once however often the order book or the decision is read.
/// Searches run one at a time, so however many readers ask, they take one core at most.
#[derive(Default)]
pub struct WhatWinsCache {
    found: std::sync::Mutex<std::collections::HashMap<(MachineId, u64, BidId), WhatWinsView>>,
    searching: std::sync::Mutex<()>,
}

/// Answers kept before the cache starts again.
const CACHED: usize = 100_000;

/// What one order book request may spend searching; the bids left are searched by the
/// next requests (their `what_would_win` is absent meanwhile).
pub const BOOK_SEARCH_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

impl WhatWinsCache {
    fn cached(&self, k: &(MachineId, u64, BidId)) -> Option<WhatWinsView> {
        self.found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    /// Runs `search` when no other search runs (quotes go through here too).
    pub fn one_at_a_time<R>(&self, search: impl FnOnce() -> R) -> R {
        let _one = self.searching.lock().unwrap_or_else(|p| p.into_inner());
        search()
    }

    /// What would have won `decision` for `bid` ([`for_decision`]), searched once.
    pub fn get(
        &self,
        store: &dyn Store,
        versions: &PluginVersions,
        decision: &Decision,
        bid: BidId,
    ) -> Result<Option<WhatWinsView>, StoreError> {
        self.get_by(store, versions, decision, bid, None)
            .map(Option::flatten)
    }

    /// [`WhatWinsCache::get`], unless the answer is not cached and `deadline` has passed
    /// (then `Ok(None)`: not searched).
    pub fn get_by(
        &self,
        store: &dyn Store,
        versions: &PluginVersions,
        decision: &Decision,
        bid: BidId,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Option<WhatWinsView>>, StoreError> {
        let k = (decision.machine, decision.interval, bid);
        if let Some(found) = self.cached(&k) {
            return Ok(Some(Some(found)));
        }
        let _one_at_a_time = self.searching.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = self.cached(&k) {
            return Ok(Some(Some(found)));
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(None);
        }
        // Calls share one instance per plugin version, as a clearing's do.
        let found =
            gigaspot_plugin_runtime::in_group(|| for_decision(store, versions, decision, bid))?;
        if let Some(view) = &found {
            let mut cache = self.found.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHED {
                cache.clear();
            }
            cache.insert(k, view.clone());
        }
        Ok(Some(found))
    }
}

/// What would have won `decision` for `bid`, which lost it: `None` when the bid won or
/// was not live. Runs the decision's own plugin versions on its recorded input.
pub fn for_decision(
    store: &dyn Store,
    versions: &PluginVersions,
    decision: &Decision,
    bid: BidId,
) -> Result<Option<WhatWinsView>, StoreError> {
    let Some(verdict) = decision.verdicts.iter().find(|v| v.bid == bid) else {
        return Ok(None);
    };
    if decision.winner.is_some_and(|w| w.bid == bid) {
        return Ok(None);
    }
    if let Verdict::Ineligible { message, .. } = &verdict.verdict {
        return Ok(Some(WhatWinsView::cannot(format!(
            "no price wins while the bid is ineligible: {message}"
        ))));
    }
    let Some((_, input)) = store.recorded_input(decision.machine, decision.interval)? else {
        return Ok(Some(WhatWinsView::cannot(
            "the clearing's input was not recorded (it is past the retention window)",
        )));
    };
    let plugins = match versions.fixed(decision.strategy.as_ref(), &decision.validators) {
        Ok(plugins) => plugins,
        Err(e) => return Ok(Some(WhatWinsView::cannot(format!("cannot search: {e}")))),
    };
    Ok(Some(
        what_wins(&input.context, &input.candidates, bid, &plugins).into(),
    ))
}

/// `GET /api/v1/machines/{id}/quote` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// The per-GPU settings, as a JSON array like a bid's `oc`, e.g.
    /// `[{"pl":300},{"pl":300}]`.
    pub oc: String,
    /// The container image (validators may judge it); default empty.
    pub image: Option<String>,
}

/// `GET /api/v1/machines/{id}/quote`: what a bid with these settings would need to pay
/// to win the machine at the next clearing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QuoteView {
    /// The machine.
    pub machine: MachineId,
    /// The interval the quote is for: the next one cleared.
    pub interval: u64,
    /// The lowest price the market accepts for these settings (CLORE/day): the machine's
    /// minimum bid or the energy floor of these power limits, whichever is higher.
    #[schema(value_type = f64)]
    pub floor: Clore,
    /// The total power limit of these settings, W.
    pub total_power_limit_w: u32,
    /// The strategy version the quote ran.
    pub strategy: PluginRef,
    /// The validator versions it ran, in order.
    pub validators: Vec<PluginRef>,
    /// The price to win and what else the search found.
    #[serde(flatten)]
    pub what_wins: WhatWinsView,
}

/// The id a quoted bid has in the search: newer than every placed bid, so it loses ties
/// to them as a bid placed now would.
pub const QUOTED_BID: BidId = u64::MAX;

/// `GET /api/v1/machines/{id}/quote?oc=…`: the lowest price that would win the machine
/// at the next clearing for a bid with these settings, under the strategy and validators
/// that answer now, with the machine's bids as they stand. Placing a bid at this price
/// wins unless the book changes before the boundary; one base unit less does not.
#[utoipa::path(
    get,
    path = "/api/v1/machines/{id}/quote",
    tag = "machines",
    params(("id" = u64, Path, description = "The machine's id"), QuoteQuery),
    responses((status = 200, description = "The price that would win now", body = QuoteView), (status = "4XX", description = "Refused: `{\"error\": {\"field\", \"reason\"}}`", body = crate::api_error::ErrorBody)),
    security(("bearer" = []))
)]
pub async fn quote(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    Query(query): Query<QuoteQuery>,
) -> Result<Json<QuoteView>, ApiError> {
    let oc: Vec<OcEntry> = serde_json::from_str(&query.oc).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Some("oc"),
            format!("not a JSON array of per-GPU settings: {e}"),
        )
    })?;
    let terms = BidTerms {
        machine: id,
        price_per_day: Amount::ZERO,
        image: query.image.unwrap_or_default(),
        env: BTreeMap::new(),
        oc: oc.into_iter().map(OcRequest::from).collect(),
        lifetime: Lifetime::Default(gigaspot_market::params::DEFAULT_BID_LIFETIME_S),
    };
    let strategy = state.registry.answering_strategy();
    let validators = state.registry.validators();
    let versions = state.versions.clone();
    let searches = state.what_wins.clone();
    let now = state.now();
    let bidder = caller.0.id;
    crate::deadline::work_started();
    state
        .store(move |s| {
            searches.one_at_a_time(|| {
                quote_for(s, &versions, strategy, validators, terms, bidder, now, None)
            })
        })
        .await
        .map(Json)
}

/// The quote for `terms` from `bidder` at `now`, against the machine's live bids except
/// `instead_of` (the bidder's own bid that the quoted one would replace, for a standing
/// order re-pricing its bid).
#[allow(clippy::too_many_arguments)]
pub(crate) fn quote_for(
    s: &dyn Store,
    versions: &PluginVersions,
    strategy: PluginRef,
    validators: Vec<PluginRef>,
    mut terms: BidTerms,
    bidder: AccountId,
    now: u64,
    instead_of: Option<BidId>,
) -> Result<QuoteView, StoreError> {
    let machine = s.machine(terms.machine)?.ok_or(StoreError::NotFound {
        what: "machine",
        id: terms.machine,
    })?;
    let params = s.params()?;
    let table = s.gpu_table()?;
    // The settings are checked as a bid's would be, at the lowest price they allow.
    let oc = admission::admit_oc(&terms.oc, &machine, &table).map_err(StoreError::Refused)?;
    let total_pl_w: u32 = oc.iter().map(|o| o.power_limit_w).sum();
    let floor = machine
        .bid_floor(u64::from(total_pl_w), &params)
        .max(machine.min_bid(&params))
        .max(admission::MIN_PRICE);
    terms.price_per_day = floor;
    admission::admit(&terms, bidder, Some(&machine), &table, &params)
        .map_err(StoreError::Refused)?;
    let clock = s.interval_clock()?;
    let interval = clock.interval_at(now) + 1;
    let live: Vec<Arc<Bid>> = s
        .bids_on(machine.id)?
        .into_iter()
        .filter(|b| b.is_live(now) && Some(b.id) != instead_of)
        .map(Arc::new)
        .collect();
    let quoted = Bid {
        id: QUOTED_BID,
        owner: bidder,
        machine: machine.id,
        price_per_day: floor,
        image: terms.image.clone(),
        env: BTreeMap::new(),
        oc,
        created_at: now,
        expires_at: u64::MAX,
        state: BidState::Active,
    };
    let mut bids: Vec<&Bid> = live.iter().map(|b| b.as_ref()).collect();
    bids.push(&quoted);
    let balances = s.balances()?;
    let plugins = versions
        .fixed(Some(&strategy), &validators)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let input = ClearingInput {
        machine: &machine,
        table: &table,
        params: &params,
        interval,
        now,
        running: gigaspot_store::running_bid(s.assignment(machine.id)?.as_ref(), &live, now),
        reliability: s.reliability(machine.id, now)?,
        bids,
    };
    let can_pay = |owner: AccountId, amount: Amount| {
        owner == bidder || balances.get(&owner).is_some_and(|b| *b >= amount)
    };
    let (decision, recorded) = clear_machine_recorded(&input, can_pay, &plugins);
    let what_wins = match recorded {
        None => WhatWinsView::cannot(format!(
            "no price wins while the machine is unavailable ({})",
            decision.idle_reason.unwrap_or_default()
        )),
        Some(r) => what_wins(&r.input.context, &r.input.candidates, QUOTED_BID, &plugins).into(),
    };
    Ok(QuoteView {
        machine: machine.id,
        interval,
        floor: Clore(floor),
        total_power_limit_w: total_pl_w,
        strategy,
        validators,
        what_wins,
    })
}
