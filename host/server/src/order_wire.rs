//! The wire types of standing orders (`/api/v1/orders`).

use std::collections::BTreeMap;

use gigaspot_market::bid::OcRequest;
use gigaspot_market::standing_order::{
    OrderPower, OrderSpec, OrderState, OrderUnit, StandingOrder,
};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::wire::{Clore, OcEntry};

/// Default lifetime of a standing order: 7 days.
pub const DEFAULT_ORDER_LIFETIME_S: u64 = 7 * 86_400;

/// `POST /api/v1/orders`: what the client wants and the most it pays (prices in CLORE/day).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Machines wanted, 1 to 64 (this or `gpus`).
    pub count: Option<u32>,
    /// GPUs wanted, 1 to 1,024: machines are held, cheapest per GPU first, until they
    /// have this many GPUs together.
    pub gpus: Option<u32>,
    /// GPU models accepted (every GPU of a machine one of them); default any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Fewest GPUs per machine (default 1).
    pub min_gpus: Option<u32>,
    /// Power limit per GPU in W (this or `pl_fraction`).
    pub pl_w: Option<u32>,
    /// Power limit per GPU as a fraction of each GPU's published range, 0 to 1.
    pub pl_fraction: Option<f64>,
    /// Clock locks and offsets per GPU model (no `pl`).
    #[serde(default)]
    pub oc: BTreeMap<String, OcEntry>,
    /// Container image.
    pub image: String,
    /// Container environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Most paid per day per kW of the bid's total power limit.
    pub max_price_per_kw: Option<Clore>,
    /// Most paid per day per machine.
    pub max_price_per_day: Option<Clore>,
    /// Most spent in total; the order pauses once its charges reach it.
    pub budget: Option<Clore>,
    /// Seconds the order stands (default 7 days, at most 20).
    pub lifetime_s: Option<u64>,
}

impl NewOrder {
    /// The market's spec (checked by the store with `OrderSpec::check`).
    pub fn spec(self) -> Result<OrderSpec, ApiError> {
        let power = power(self.pl_w, self.pl_fraction)?.ok_or_else(|| {
            ApiError::bad_field("pl_w", "give pl_w (W per GPU) or pl_fraction (0 to 1)")
        })?;
        let (count, unit) = match (self.count, self.gpus) {
            (Some(c), None) => (c, OrderUnit::Machines),
            (None, Some(g)) => (g, OrderUnit::Gpus),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_field("gpus", "give count or gpus, not both"));
            }
            (None, None) => {
                return Err(ApiError::bad_field(
                    "count",
                    "give count (machines) or gpus (GPUs in total)",
                ));
            }
        };
        Ok(OrderSpec {
            count,
            unit,
            models: self.models,
            min_gpus: self.min_gpus.unwrap_or(1),
            power,
            oc: self
                .oc
                .into_iter()
                .map(|(m, o)| (m, OcRequest::from(o)))
                .collect(),
            image: self.image,
            env: self.env,
            max_price_per_kw: self.max_price_per_kw.map(|p| p.0),
            max_price_per_day: self.max_price_per_day.map(|p| p.0),
            budget: self.budget.map(|p| p.0),
            lifetime_s: self.lifetime_s.unwrap_or(DEFAULT_ORDER_LIFETIME_S),
        })
    }
}

/// The power asked for: one of the two fields, never both.
fn power(pl_w: Option<u32>, pl_fraction: Option<f64>) -> Result<Option<OrderPower>, ApiError> {
    match (pl_w, pl_fraction) {
        (Some(_), Some(_)) => Err(ApiError::bad_field(
            "pl_fraction",
            "give pl_w or pl_fraction, not both",
        )),
        (Some(w), None) => Ok(Some(OrderPower::Watts(w))),
        (None, Some(f)) => Ok(Some(OrderPower::Fraction(f))),
        (None, None) => Ok(None),
    }
}

/// `PATCH /api/v1/orders/{id}`: any subset; a paused order is active again after an edit.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderUpdate {
    /// Machines (or GPUs, for an order counting GPUs) wanted.
    pub count: Option<u32>,
    /// Power limit per GPU in W (replaces `pl_fraction`).
    pub pl_w: Option<u32>,
    /// Power limit per GPU as a fraction of each range (replaces `pl_w`).
    pub pl_fraction: Option<f64>,
    /// Most paid per day per kW.
    pub max_price_per_kw: Option<Clore>,
    /// Most paid per day per machine.
    pub max_price_per_day: Option<Clore>,
    /// Most spent in total.
    pub budget: Option<Clore>,
}

impl OrderUpdate {
    /// The body's own errors (both power fields given), before anything is read.
    pub fn check(&self) -> Result<(), ApiError> {
        power(self.pl_w, self.pl_fraction).map(|_| ())
    }

    /// `spec` with the update applied (checked by the caller).
    pub fn apply(&self, spec: &mut OrderSpec) -> Result<(), ApiError> {
        if let Some(count) = self.count {
            spec.count = count;
        }
        if let Some(p) = power(self.pl_w, self.pl_fraction)? {
            spec.power = p;
        }
        if let Some(p) = self.max_price_per_kw {
            spec.max_price_per_kw = Some(p.0);
        }
        if let Some(p) = self.max_price_per_day {
            spec.max_price_per_day = Some(p.0);
        }
        if let Some(b) = self.budget {
            spec.budget = Some(b.0);
        }
        Ok(())
    }
}

/// A machine an order holds, with its bid.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeldView {
    /// The machine.
    pub machine: u64,
    /// The order's bid on it.
    pub bid: u64,
    /// The bid's price, CLORE/day.
    pub price: f64,
    /// The bid holds the machine this interval.
    pub winning: bool,
}

/// A standing order as its owner sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderView {
    /// Order id.
    pub id: u64,
    /// `active`, `paused`, `cancelled` or `expired`.
    pub state: OrderState,
    /// Why it holds fewer machines than asked, or why it is paused.
    pub note: Option<String>,
    /// Machines or GPUs wanted (see `unit`).
    pub count: u32,
    /// What `count` counts: `machines` or `gpus`.
    pub unit: OrderUnit,
    /// GPU models accepted (empty: any).
    pub models: Vec<String>,
    /// Fewest GPUs per machine.
    pub min_gpus: u32,
    /// Power limit per GPU, W (when asked in watts).
    pub pl_w: Option<u32>,
    /// Power limit per GPU as a fraction of each range (when asked so).
    pub pl_fraction: Option<f64>,
    /// Container image.
    pub image: String,
    /// Most paid per day per kW, CLORE.
    pub max_price_per_kw: Option<f64>,
    /// Most paid per day per machine, CLORE.
    pub max_price_per_day: Option<f64>,
    /// Total budget, CLORE.
    pub budget: Option<f64>,
    /// What its bids were charged so far, CLORE.
    pub spent: f64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The machines it holds bids on.
    pub machines: Vec<HeldView>,
    /// Every bid it placed.
    pub bids: Vec<u64>,
}

impl OrderView {
    /// The view of `o`, with each held bid's price and whether it wins now.
    pub fn new(o: &StandingOrder, machines: Vec<HeldView>) -> Self {
        let (pl_w, pl_fraction) = match o.spec.power {
            OrderPower::Watts(w) => (Some(w), None),
            OrderPower::Fraction(f) => (None, Some(f)),
        };
        OrderView {
            id: o.id,
            state: o.state,
            note: o.note.clone(),
            count: o.spec.count,
            unit: o.spec.unit,
            models: o.spec.models.clone(),
            min_gpus: o.spec.min_gpus,
            pl_w,
            pl_fraction,
            image: o.spec.image.clone(),
            max_price_per_kw: o.spec.max_price_per_kw.map(|p| p.as_clore()),
            max_price_per_day: o.spec.max_price_per_day.map(|p| p.as_clore()),
            budget: o.spec.budget.map(|p| p.as_clore()),
            spent: o.spent.as_clore(),
            created_at: o.created_at,
            expires_at: o.expires_at,
            machines,
            bids: o.placed.clone(),
        }
    }
}
