//! Standing orders: the market bids for a client, inside limits the client sets.
//!
//! A client asks for a number of machines (GPU models, GPUs per machine, a power limit per
//! GPU, clocks per model, an image) and the most it pays (per kW of its power limit and/or
//! per machine). At every boundary, before clearing, the service quotes the lowest price
//! that would win each matching machine under the active strategy (the decisions' "price
//! that would win" search) and [`plan`] decides which bids to place, re-price or cancel so
//! that the order holds the wanted number of machines at the lowest winning prices, never
//! above the client's limits. The bids are ordinary bids of the client: admission, ledger,
//! decisions and snapshot treat them as any other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::admission::{self, MAX_PRICE};
use crate::bid::{BidId, OcRequest};
use crate::gpu_ranges::GpuRangeTable;
use crate::machine::{Machine, MachineId};
use crate::money::Amount;
use crate::params::MAX_BID_LIFETIME_S;

/// A standing order's id (shared with bids and machines: one id sequence).
pub type OrderId = u64;

/// Most machines one order may hold.
pub const MAX_ORDER_MACHINES: u32 = 64;
/// Most GPU models an order may name.
pub const MAX_ORDER_MODELS: usize = 16;
/// Highest per-GPU power limit an order may ask for, W.
pub const MAX_ORDER_WATTS: u32 = 2_000;

/// The power limit an order asks for on each GPU.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderPower {
    /// Absolute watts on every GPU; a machine whose range does not hold it does not match.
    Watts(u32),
    /// A fraction of each GPU's published range: `min + floor(f × (max − min))`, 0 ≤ f ≤ 1.
    Fraction(f64),
}

/// What an order's `count` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderUnit {
    /// Machines: hold exactly `count` of them.
    Machines,
    /// GPUs: hold machines until they have at least `count` GPUs together (the cheapest
    /// per GPU first; the last machine may bring more than the rest needed).
    Gpus,
}

/// What a client wants from a standing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderSpec {
    /// Machines (1 to [`MAX_ORDER_MACHINES`]) or GPUs (1 to 16 × that) wanted.
    pub count: u32,
    /// What `count` counts.
    pub unit: OrderUnit,
    /// GPU models accepted (every GPU of a machine must be one of them); empty: any.
    pub models: Vec<String>,
    /// Fewest GPUs a machine must have.
    pub min_gpus: u32,
    /// Power limit per GPU.
    pub power: OrderPower,
    /// Clock locks and offsets per GPU model (`pl` not allowed here).
    pub oc: BTreeMap<String, OcRequest>,
    /// Container image.
    pub image: String,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// Most paid per day per kW of the bid's total power limit.
    pub max_price_per_kw: Option<Amount>,
    /// Most paid per day per machine.
    pub max_price_per_day: Option<Amount>,
    /// Most the order spends in total; it pauses once its charges reach it.
    pub budget: Option<Amount>,
    /// How long the order stands, seconds (1 to 20 days).
    pub lifetime_s: u64,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Bidding at every boundary.
    Active,
    /// Not bidding (its bids cancelled) until the client edits it: the budget or the
    /// balance ran out (`note` says which).
    Paused,
    /// Cancelled by its owner, with its bids.
    Cancelled,
    /// Past its lifetime; its bids expire with it.
    Expired,
}

/// A machine an order holds a bid on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Held {
    /// The machine.
    pub machine: MachineId,
    /// The order's bid on it.
    pub bid: BidId,
}

/// A standing order as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StandingOrder {
    /// Order id.
    pub id: OrderId,
    /// The client.
    pub owner: AccountId,
    /// What it wants.
    pub spec: OrderSpec,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the order expires then.
    pub expires_at: u64,
    /// Where it stands.
    pub state: OrderState,
    /// Why it holds fewer machines than asked, or why it is paused.
    pub note: Option<String>,
    /// Its live bids, one per machine.
    pub held: Vec<Held>,
    /// Every bid it placed, for what it spent.
    pub placed: Vec<BidId>,
    /// What its bids were charged so far.
    pub spent: Amount,
    /// The newest ledger booking of the owner already counted into `spent`.
    pub ledger_seen: u64,
}

/// A refused order: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRefusal {
    /// The offending field.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn refuse<T>(field: impl Into<String>, reason: impl Into<String>) -> Result<T, OrderRefusal> {
    Err(OrderRefusal {
        field: field.into(),
        reason: reason.into(),
    })
}

impl OrderSpec {
    /// Checks the spec: ranges of every number, at least one price limit, clocks without
    /// power limits, an image and environment a bid could have.
    pub fn check(&self) -> Result<(), OrderRefusal> {
        match self.unit {
            OrderUnit::Machines if !(1..=MAX_ORDER_MACHINES).contains(&self.count) => {
                return refuse("count", format!("1 to {MAX_ORDER_MACHINES} machines"));
            }
            OrderUnit::Gpus if !(1..=16 * MAX_ORDER_MACHINES).contains(&self.count) => {
                return refuse("gpus", format!("1 to {} GPUs", 16 * MAX_ORDER_MACHINES));
            }
            _ => {}
        }
        if self.models.len() > MAX_ORDER_MODELS {
            return refuse("models", format!("at most {MAX_ORDER_MODELS} models"));
        }
        if let Some(i) = self
            .models
            .iter()
            .position(|m| m.is_empty() || m.len() > 128)
        {
            return refuse(format!("models[{i}]"), "1 to 128 bytes");
        }
        if !(1..=16).contains(&self.min_gpus) {
            return refuse("min_gpus", "1 to 16 GPUs");
        }
        match self.power {
            OrderPower::Watts(w) if !(1..=MAX_ORDER_WATTS).contains(&w) => {
                return refuse("pl_w", format!("1 to {MAX_ORDER_WATTS} W"));
            }
            OrderPower::Fraction(f) if !(0.0..=1.0).contains(&f) => {
                return refuse("pl_fraction", "a number from 0 to 1");
            }
            _ => {}
        }
        for (model, oc) in &self.oc {
            if oc.pl.is_some() {
                return refuse(
                    format!("oc.{model}.pl"),
                    "the power limit comes from pl_w or pl_fraction",
                );
            }
        }
        if self.max_price_per_kw.is_none() && self.max_price_per_day.is_none() {
            return refuse(
                "max_price_per_kw",
                "give max_price_per_kw, max_price_per_day or both",
            );
        }
        for (field, price) in [
            ("max_price_per_kw", self.max_price_per_kw),
            ("max_price_per_day", self.max_price_per_day),
        ] {
            if let Some(p) = price
                && !(admission::MIN_PRICE..=MAX_PRICE).contains(&p)
            {
                return refuse(
                    field,
                    format!("{p} is outside [{}, {MAX_PRICE}]", admission::MIN_PRICE),
                );
            }
        }
        if self.budget.is_some_and(|b| b == Amount::ZERO) {
            return refuse("budget", "must be above 0");
        }
        if !(1..=MAX_BID_LIFETIME_S).contains(&self.lifetime_s) {
            return refuse(
                "lifetime_s",
                format!("1 to {MAX_BID_LIFETIME_S} s (20 days)"),
            );
        }
        if let Err(r) = admission::check_env(&self.env) {
            return refuse(r.field.clone(), r.to_string());
        }
        if let Some(why) = crate::image_ref::problem(&self.image) {
            return refuse("image", format!("{:?} {why}", self.image));
        }
        Ok(())
    }

    /// The per-GPU settings a bid of this order would ask on `machine`, or why the
    /// machine does not match (models, GPU count, power range, clock ranges).
    pub fn settings_for(
        &self,
        machine: &Machine,
        table: &GpuRangeTable,
    ) -> Result<Vec<OcRequest>, String> {
        if (machine.gpus.len() as u32) < self.min_gpus {
            return Err(format!(
                "{} GPUs, fewer than {}",
                machine.gpus.len(),
                self.min_gpus
            ));
        }
        if let Some(gpu) = machine
            .gpus
            .iter()
            .find(|g| !self.models.is_empty() && !self.models.contains(&g.model))
        {
            return Err(format!("a {} is not among the models asked for", gpu.model));
        }
        let oc: Vec<OcRequest> = machine
            .gpus
            .iter()
            .map(|g| {
                let range = g.power_limit_range();
                let pl = match self.power {
                    OrderPower::Watts(w) => w,
                    OrderPower::Fraction(f) => {
                        let span = f64::from(range.max.saturating_sub(range.min));
                        range.min + (f * span).floor() as u32
                    }
                };
                OcRequest {
                    pl: Some(pl),
                    ..self.oc.get(&g.model).copied().unwrap_or_default()
                }
            })
            .collect();
        admission::admit_oc(&oc, machine, table).map_err(|r| r.to_string())?;
        Ok(oc)
    }

    /// The most this order pays per day for a bid with a total power limit of
    /// `total_pl_w`: the smaller of its per-kW and per-machine limits (rounded down).
    pub fn price_cap(&self, total_pl_w: u64) -> Amount {
        let per_kw = self
            .max_price_per_kw
            .map(|p| Amount((u128::from(p.0) * u128::from(total_pl_w) / 1000) as u64));
        match (per_kw, self.max_price_per_day) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => Amount::ZERO,
        }
    }
}

/// A machine the order could hold, as the service quoted it this boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The machine.
    pub machine: MachineId,
    /// The order's settings on it (one entry per GPU).
    pub oc: Vec<OcRequest>,
    /// The order's price cap on it ([`OrderSpec::price_cap`]).
    pub cap: Amount,
    /// The lowest price that would win it now (none: no price wins, with the reason).
    pub price_to_win: Result<Amount, String>,
    /// Served ÷ assigned over the last 7 days.
    pub reliability: f64,
}

/// What the order does this boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// New bids: machine, settings, price.
    pub place: Vec<(MachineId, Vec<OcRequest>, Amount)>,
    /// Held bids whose price moves: bid, settings, new price.
    pub reprice: Vec<(BidId, Vec<OcRequest>, Amount)>,
    /// Held bids to cancel.
    pub cancel: Vec<BidId>,
    /// Why it holds fewer machines than asked, if it does.
    pub note: Option<String>,
}

/// The order's moves: the cheapest machines it can win within its caps — `count` of them,
/// or (counting GPUs) the cheapest per GPU until they have `count` GPUs together — ties to
/// the more reliable, then the lower id, get a bid at exactly the price that wins each
/// (placed, or the held bid re-priced up or down); every other held bid is cancelled.
/// `current` gives each held bid's price and settings.
pub fn plan(
    count: u32,
    unit: OrderUnit,
    held: &[Held],
    current: &BTreeMap<BidId, (Amount, Vec<OcRequest>)>,
    candidates: &[Candidate],
) -> Plan {
    let mut winnable: Vec<(&Candidate, Amount)> = candidates
        .iter()
        .filter_map(|c| match &c.price_to_win {
            Ok(p) if *p <= c.cap => Some((c, *p)),
            _ => None,
        })
        .collect();
    let gpus = |c: &Candidate| c.oc.len().max(1) as u128;
    winnable.sort_by(|(a, pa), (b, pb)| {
        let cheaper = match unit {
            OrderUnit::Machines => pa.cmp(pb),
            // Price per GPU, compared exactly: pa / ga against pb / gb.
            OrderUnit::Gpus => (u128::from(pa.0) * gpus(b)).cmp(&(u128::from(pb.0) * gpus(a))),
        };
        cheaper
            .then(b.reliability.total_cmp(&a.reliability))
            .then(a.machine.cmp(&b.machine))
    });
    let wanted = match unit {
        OrderUnit::Machines => count as usize,
        OrderUnit::Gpus => {
            let mut total = 0u128;
            winnable
                .iter()
                .take_while(|(c, _)| {
                    let take = total < u128::from(count);
                    total += gpus(c);
                    take
                })
                .count()
        }
    };
    winnable.truncate(wanted);
    let held_units: u128 = match unit {
        OrderUnit::Machines => winnable.len() as u128,
        OrderUnit::Gpus => winnable.iter().map(|(c, _)| gpus(c)).sum(),
    };
    let mut out = Plan::default();
    for (c, price) in &winnable {
        match held.iter().find(|h| h.machine == c.machine) {
            Some(h) => {
                if current.get(&h.bid) != Some(&(*price, c.oc.clone())) {
                    out.reprice.push((h.bid, c.oc.clone(), *price));
                }
            }
            None => out.place.push((c.machine, c.oc.clone(), *price)),
        }
    }
    for h in held {
        if !winnable.iter().any(|(c, _)| c.machine == h.machine) {
            out.cancel.push(h.bid);
        }
    }
    if held_units < u128::from(count) {
        out.note = Some(shortfall(count, unit, held_units, candidates));
    }
    out
}

/// Why an order holds `holds` of `count` machines or GPUs.
fn shortfall(count: u32, unit: OrderUnit, holds: u128, candidates: &[Candidate]) -> String {
    let cheapest_over_cap = candidates
        .iter()
        .filter_map(|c| match &c.price_to_win {
            Ok(p) if *p > c.cap => Some((*p, c.cap, c.machine)),
            _ => None,
        })
        .min();
    let what = match unit {
        OrderUnit::Machines => "machines",
        OrderUnit::Gpus => "GPUs",
    };
    let head = format!("holds {holds} of {count} {what}: ");
    match cheapest_over_cap {
        Some((price, cap, machine)) => format!(
            "{head}the cheapest machine matching (machine {machine}) needs {} CLORE/day at your limits, which allow {}",
            price.as_clore(),
            cap.as_clore()
        ),
        None if candidates.is_empty() => {
            format!("{head}no available machine matches the models, GPU count and power limit")
        }
        None => format!(
            "{head}no other matching machine can be won ({})",
            candidates
                .iter()
                .find_map(|c| c.price_to_win.as_ref().err().cloned())
                .unwrap_or_else(|| "every one is held".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::machine;

    pub(crate) fn spec() -> OrderSpec {
        OrderSpec {
            count: 2,
            unit: OrderUnit::Machines,
            models: vec!["NVIDIA GeForce RTX 4090".into()],
            min_gpus: 1,
            power: OrderPower::Watts(300),
            oc: BTreeMap::new(),
            image: "registry.example/train:1".into(),
            env: BTreeMap::new(),
            max_price_per_kw: Some(Amount::clore(100)),
            max_price_per_day: None,
            budget: None,
            lifetime_s: 86_400,
        }
    }

    fn candidate(machine: u64, price: Option<u64>, cap: u64, reliability: f64) -> Candidate {
        Candidate {
            machine,
            oc: vec![OcRequest::default()],
            cap: Amount::clore(cap),
            price_to_win: price.map(Amount::clore).ok_or_else(|| "no".into()),
            reliability,
        }
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        assert_eq!(spec().check(), Ok(()));
        let field = |f: fn(&mut OrderSpec)| {
            let mut s = spec();
            f(&mut s);
            s.check().unwrap_err().field
        };
        assert_eq!(field(|s| s.count = 0), "count");
        assert_eq!(field(|s| s.count = 65), "count");
        assert_eq!(
            field(|s| {
                s.unit = OrderUnit::Gpus;
                s.count = 1025;
            }),
            "gpus"
        );
        assert_eq!(field(|s| s.min_gpus = 0), "min_gpus");
        assert_eq!(field(|s| s.power = OrderPower::Watts(0)), "pl_w");
        assert_eq!(
            field(|s| s.power = OrderPower::Fraction(1.5)),
            "pl_fraction"
        );
        assert_eq!(
            field(|s| s.power = OrderPower::Fraction(f64::NAN)),
            "pl_fraction"
        );
        assert_eq!(field(|s| s.max_price_per_kw = None), "max_price_per_kw");
        assert_eq!(
            field(|s| s.max_price_per_day = Some(Amount::clore(5001))),
            "max_price_per_day"
        );
        assert_eq!(field(|s| s.budget = Some(Amount::ZERO)), "budget");
        assert_eq!(field(|s| s.lifetime_s = 0), "lifetime_s");
        assert_eq!(field(|s| s.image = "bad image".into()), "image");
        assert_eq!(
            field(|s| {
                s.oc.insert(
                    "x".into(),
                    OcRequest {
                        pl: Some(1),
                        ..OcRequest::default()
                    },
                );
            }),
            "oc.x.pl"
        );
    }

    #[test]
    fn settings_follow_the_machine_and_caps_the_power() {
        let m = machine();
        let table = GpuRangeTable::defaults();
        let mut s = spec();
        assert_eq!(s.settings_for(&m, &table).unwrap()[0].pl, Some(300));
        // 150–400 W published: a fraction of 0.5 is 275 W.
        s.power = OrderPower::Fraction(0.5);
        assert_eq!(s.settings_for(&m, &table).unwrap()[3].pl, Some(275));
        s.power = OrderPower::Watts(401);
        assert!(s.settings_for(&m, &table).unwrap_err().contains("oc[0].pl"));
        s.power = OrderPower::Watts(300);
        s.min_gpus = 5;
        assert!(s.settings_for(&m, &table).is_err());
        s.min_gpus = 1;
        s.models = vec!["NVIDIA H100 80GB HBM3".into()];
        assert!(
            s.settings_for(&m, &table)
                .unwrap_err()
                .contains("not among")
        );
        // 100 CLORE per kW at 1,200 W: 120; a per-machine limit of 90 is lower.
        assert_eq!(spec().price_cap(1200), Amount::clore(120));
        s.max_price_per_day = Some(Amount::clore(90));
        assert_eq!(s.price_cap(1200), Amount::clore(90));
    }

    #[test]
    fn it_takes_the_cheapest_winnable_machines_and_says_why_it_holds_fewer() {
        let candidates = [
            candidate(1, Some(50), 100, 1.0),
            candidate(2, Some(30), 100, 0.5),
            candidate(3, Some(30), 100, 0.9),
            candidate(4, Some(150), 100, 1.0),
            candidate(5, None, 100, 1.0),
        ];
        let held = [
            Held {
                machine: 1,
                bid: 11,
            },
            Held {
                machine: 2,
                bid: 12,
            },
        ];
        let current = BTreeMap::from([
            (11, (Amount::clore(60), vec![OcRequest::default()])),
            (12, (Amount::clore(40), vec![OcRequest::default()])),
        ]);
        let p = plan(2, OrderUnit::Machines, &held, &current, &candidates);
        // 3 and 2 tie at 30: the more reliable 3 first, then 2 (held: re-priced down).
        assert_eq!(
            p.place,
            vec![(3, vec![OcRequest::default()], Amount::clore(30))]
        );
        assert_eq!(
            p.reprice,
            vec![(12, vec![OcRequest::default()], Amount::clore(30))]
        );
        assert_eq!(p.cancel, vec![11]);
        assert_eq!(p.note, None);
        // Four wanted: machine 4 needs more than the cap, and the note says so.
        let p = plan(4, OrderUnit::Machines, &[], &BTreeMap::new(), &candidates);
        assert_eq!(p.place.len(), 3);
        let note = p.note.unwrap();
        assert!(
            note.contains("holds 3 of 4") && note.contains("needs 150 CLORE/day"),
            "{note}"
        );
        // Counting GPUs: the cheapest per GPU first, until enough GPUs are held.
        let mut big = candidate(6, Some(80), 100, 1.0);
        big.oc = vec![OcRequest::default(); 4]; // 20 per GPU
        let candidates = [
            candidate(1, Some(25), 100, 1.0),
            big,
            candidate(2, Some(30), 100, 1.0),
        ];
        let p = plan(5, OrderUnit::Gpus, &[], &BTreeMap::new(), &candidates);
        let machines: Vec<u64> = p.place.iter().map(|x| x.0).collect();
        assert_eq!(machines, vec![6, 1], "4 GPUs at 20 each, then 1 at 25");
        assert_eq!(p.note, None);
        let p = plan(7, OrderUnit::Gpus, &[], &BTreeMap::new(), &candidates);
        assert_eq!(p.place.len(), 3);
        assert!(p.note.unwrap().contains("holds 6 of 7 GPUs"));
        // Nothing matches at all.
        let p = plan(1, OrderUnit::Machines, &[], &BTreeMap::new(), &[]);
        assert!(p.note.unwrap().contains("no available machine matches"));
    }

    mod properties {
        use super::*;
        use crate::bid::{BidTerms, Lifetime};
        use crate::machine::{Gpu, LiveState, MachineFacts};
        use crate::params::MarketParams;
        use proptest::prelude::*;

        fn machine_of(
            id: u64,
            gpus: usize,
            min_w: u32,
            max_w: u32,
            ceiling: u32,
            energy: f64,
            reserve: u64,
        ) -> Machine {
            Machine {
                id,
                host: 1,
                facts: MachineFacts::default(),
                gpus: (0..gpus)
                    .map(|i| Gpu {
                        model: "NVIDIA GeForce RTX 4090".into(),
                        uuid: format!("GPU-{i}"),
                        card_min_w: min_w,
                        card_max_w: max_w,
                        ceiling_w: ceiling.clamp(min_w, max_w),
                    })
                    .collect(),
                energy_price_usd_per_kwh: energy,
                reserve_price: Amount::clore(reserve),
                max_rental_length_s: 30 * 86_400,
                live: LiveState {
                    online: true,
                    working: true,
                    ..LiveState::default()
                },
                background: None,
                background_earnings: Amount::ZERO,
                explicit_ceilings: true,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            /// Over random markets: never more machines than asked, one bid per machine,
            /// every bid at exactly the price that wins it and within the order's caps, and
            /// every bid one that a manual client with the same limits could have placed
            /// (the market's own admission accepts it).
            #[test]
            fn every_bid_is_within_the_limits_and_admissible(
                machines in proptest::collection::vec(
                    (1usize..=8, 100u32..=300, 300u32..=700, 100u32..=700, 0u32..=3, 0u64..=50, 0u64..=400),
                    0..12,
                ),
                count in 1u32..=6,
                by_gpus in any::<bool>(),
                pl in prop_oneof![(100u32..=700).prop_map(OrderPower::Watts), (0.0f64..=1.0).prop_map(OrderPower::Fraction)],
                per_kw in proptest::option::of(1u64..=400),
                per_day in proptest::option::of(1u64..=2_000),
                min_gpus in 1u32..=4,
            ) {
                let params = MarketParams { clore_usd: 0.05, ..MarketParams::default() };
                let table = GpuRangeTable::defaults();
                let mut order = spec();
                order.count = count;
                order.unit = if by_gpus { OrderUnit::Gpus } else { OrderUnit::Machines };
                order.power = pl;
                order.min_gpus = min_gpus;
                order.max_price_per_kw = per_kw.map(Amount::clore);
                order.max_price_per_day = per_day.map(Amount::clore);
                if order.max_price_per_kw.is_none() && order.max_price_per_day.is_none() {
                    order.max_price_per_day = Some(Amount::clore(100));
                }
                let market: Vec<Machine> = machines
                    .iter()
                    .enumerate()
                    .map(|(i, (gpus, min_w, max_w, ceiling, energy, reserve, extra))| {
                        let m = machine_of(i as u64 + 1, *gpus, *min_w, *max_w, *ceiling, f64::from(*energy) / 10.0, *reserve);
                        (m, *extra)
                    })
                    .map(|(m, _)| m)
                    .collect();
                let candidates: Vec<Candidate> = market
                    .iter()
                    .zip(&machines)
                    .filter_map(|(m, (.., extra))| {
                        let oc = order.settings_for(m, &table).ok()?;
                        let total: u64 = oc.iter().map(|o| u64::from(o.pl.unwrap_or(0))).sum();
                        // What a quote answers: at least the bid's floor, often more.
                        let floor = m
                            .bid_floor(total, &params)
                            .max(m.min_bid(&params))
                            .max(admission::MIN_PRICE);
                        let price = floor.checked_add(Amount::clore(*extra)).ok().filter(|p| *p <= MAX_PRICE);
                        Some(Candidate {
                            machine: m.id,
                            cap: order.price_cap(total),
                            oc,
                            price_to_win: price.ok_or_else(|| "no price wins".into()),
                            reliability: 1.0,
                        })
                    })
                    .collect();
                let p = plan(order.count, order.unit, &[], &BTreeMap::new(), &candidates);
                let gpus_of = |m: u64| candidates.iter().find(|c| c.machine == m).unwrap().oc.len() as u32;
                match order.unit {
                    OrderUnit::Machines => prop_assert!(p.place.len() <= order.count as usize),
                    // Never a machine more than needed: without the last one, too few GPUs.
                    OrderUnit::Gpus => {
                        let total: u32 = p.place.iter().map(|x| gpus_of(x.0)).sum();
                        if let Some(last) = p.place.last() {
                            prop_assert!(total - gpus_of(last.0) < order.count);
                        }
                    }
                }
                let mut seen = std::collections::BTreeSet::new();
                for (machine, oc, price) in &p.place {
                    prop_assert!(seen.insert(*machine), "one bid per machine");
                    let c = candidates.iter().find(|c| c.machine == *machine).unwrap();
                    prop_assert_eq!(Ok(*price), c.price_to_win.clone());
                    let total: u64 = oc.iter().map(|o| u64::from(o.pl.unwrap())).sum();
                    prop_assert!(*price <= order.price_cap(total));
                    let m = market.iter().find(|m| m.id == *machine).unwrap();
                    let terms = BidTerms {
                        machine: *machine,
                        price_per_day: *price,
                        image: order.image.clone(),
                        env: order.env.clone(),
                        oc: oc.clone(),
                        lifetime: Lifetime::Explicit(order.lifetime_s),
                    };
                    prop_assert!(admission::admit(&terms, 99, Some(m), &table, &params).is_ok());
                }
                // It holds fewer only when no other candidate is winnable within its caps.
                if order.unit == OrderUnit::Machines && p.place.len() < order.count as usize {
                    prop_assert!(p.note.is_some());
                    let winnable = candidates
                        .iter()
                        .filter(|c| c.price_to_win.as_ref().is_ok_and(|p| *p <= c.cap))
                        .count();
                    prop_assert_eq!(winnable, p.place.len());
                }
            }
        }
    }
}
