//! The admission rules of a bid (market.md), checked in the core and never by a plugin.
//! Each refusal names the field, the value and the reason.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::bid::{Bid, BidTerms, Lifetime, OcRequest};
use crate::billing::IntervalCharge;
use crate::context::{GpuOc, RangeS32, RangeU32};
use crate::gpu_ranges::{ClockRanges, GpuRangeTable};
use crate::image_ref;
use crate::machine::{Gpu, Machine};
use crate::money::Amount;
use crate::params::{MAX_BID_LIFETIME_S, MarketParams};

/// Lowest price a bid may offer: 0.0001 CLORE/day.
pub const MIN_PRICE: Amount = Amount(10_000);
/// Highest price a bid may offer: 5000 CLORE/day.
pub const MAX_PRICE: Amount = Amount::clore(5000);
/// Longest environment variable name, in characters.
pub const MAX_ENV_KEY_CHARS: usize = 128;
/// Longest environment variable value, in characters.
pub const MAX_ENV_VALUE_CHARS: usize = 1536;
/// The environment serialised as JSON must be shorter than this many characters.
pub const MAX_ENV_JSON_CHARS: usize = 12_288;

/// Why a bid was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RefusalReason {
    /// No machine has this id.
    UnknownMachine,
    /// Hosts may not bid on their own machines.
    OwnMachine,
    /// `oc` must have exactly one entry per GPU.
    WrongOcCount {
        /// GPUs of the machine.
        expected: usize,
    },
    /// An `oc` entry has no power limit.
    MissingPowerLimit,
    /// A value is outside the GPU's allowed range (bounds inclusive).
    OutOfRange {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// The GPU model does not accept this clock lock or offset.
    NotAllowedOnModel,
    /// The price is outside [0.0001, 5000] CLORE/day.
    PriceOutOfRange,
    /// The price is below the machine's minimum bid.
    BelowMinBid {
        /// The machine's minimum bid in base units per day.
        min_bid: Amount,
    },
    /// The price does not cover the energy cost of a day at the bid's own total power
    /// limit (or the host's reserve price): it could never win on price.
    BelowBidFloor {
        /// The bid's floor in base units per day.
        floor: Amount,
        /// The bid's total power limit in W.
        total_pl_w: u64,
    },
    /// The machine's agent is offline or reports it unfit to run workloads.
    MachineUnavailable,
    /// The bidder's balance cannot pay one billing interval at this price.
    InsufficientFunds {
        /// What one interval costs.
        needed: Amount,
        /// The bidder's balance.
        balance: Amount,
    },
    /// An environment variable name is too long.
    EnvKeyTooLong,
    /// An environment variable value is too long.
    EnvValueTooLong,
    /// The environment serialises to too many characters.
    EnvTooLarge,
    /// The image reference is empty or malformed.
    BadImage(String),
    /// The lifetime is longer than the machine's maximum rental length or 20 days.
    LifetimeTooLong {
        /// Longest allowed lifetime in seconds.
        max_s: u64,
    },
    /// An explicit lifetime of 0 seconds: the bid would be born expired.
    LifetimeZero,
}

/// A refused bid: which field, its value, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refusal {
    /// The offending field, e.g. `oc[2].pl`, `price`, `env.HOME`.
    pub field: String,
    /// The offending value as text.
    pub value: String,
    /// Why it was refused.
    pub reason: RefusalReason,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (field, value) = (&self.field, &self.value);
        match &self.reason {
            RefusalReason::UnknownMachine => write!(f, "{field}: no machine {value}"),
            RefusalReason::OwnMachine => write!(f, "{field}: you own machine {value}"),
            RefusalReason::WrongOcCount { expected } => write!(
                f,
                "{field}: {value} entries, the machine has {expected} GPU(s) and needs one each"
            ),
            RefusalReason::MissingPowerLimit => write!(f, "{field}: the power limit is mandatory"),
            RefusalReason::OutOfRange { min, max } => {
                write!(
                    f,
                    "{field}: {value} is outside the allowed range [{min}, {max}]"
                )
            }
            RefusalReason::NotAllowedOnModel => write!(
                f,
                "{field}: {value} requested, but this GPU model does not accept this setting"
            ),
            RefusalReason::PriceOutOfRange => write!(
                f,
                "{field}: {value} CLORE/day is outside [{MIN_PRICE}, {MAX_PRICE}]"
            ),
            RefusalReason::BelowMinBid { min_bid } => write!(
                f,
                "{field}: {value} CLORE/day is below the machine's minimum bid of {min_bid}"
            ),
            RefusalReason::BelowBidFloor { floor, total_pl_w } => write!(
                f,
                "{field}: {value} CLORE/day is too low: at a total power limit of {total_pl_w} W \
                 the bid must cover the host's energy cost, reserve price and background \
                 earnings, {floor} CLORE/day"
            ),
            RefusalReason::MachineUnavailable => write!(
                f,
                "{field}: machine {value} is offline or not working properly"
            ),
            RefusalReason::InsufficientFunds { needed, balance } => write!(
                f,
                "{field}: one billing interval at {value} CLORE/day costs {needed} CLORE, the \
                 balance is {balance} CLORE"
            ),
            RefusalReason::EnvKeyTooLong => write!(
                f,
                "{field}: the name is longer than {MAX_ENV_KEY_CHARS} characters"
            ),
            RefusalReason::EnvValueTooLong => write!(
                f,
                "{field}: the value is longer than {MAX_ENV_VALUE_CHARS} characters"
            ),
            RefusalReason::EnvTooLarge => write!(
                f,
                "{field}: serialises to {value} characters, the limit is under {MAX_ENV_JSON_CHARS}"
            ),
            RefusalReason::BadImage(why) => write!(f, "{field}: {value:?} {why}"),
            RefusalReason::LifetimeTooLong { max_s } => {
                write!(f, "{field}: {value} s is longer than the allowed {max_s} s")
            }
            RefusalReason::LifetimeZero => {
                write!(f, "{field}: a bid must live at least 1 second")
            }
        }
    }
}

impl std::error::Error for Refusal {}

pub(crate) fn refuse<T>(
    field: impl Into<String>,
    value: impl ToString,
    reason: RefusalReason,
) -> Result<T, Refusal> {
    Err(Refusal {
        field: field.into(),
        value: value.to_string(),
        reason,
    })
}

/// What admission decided for an admitted bid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The validated per-GPU settings.
    pub oc: Vec<GpuOc>,
    /// The lifetime in seconds: the explicit one, or the default clamped to the machine.
    pub lifetime_s: u64,
}

/// Checks `terms` from `bidder` against every admission rule; on success returns the
/// validated settings and lifetime. Editing a bid runs the same checks.
pub fn admit(
    terms: &BidTerms,
    bidder: AccountId,
    machine: Option<&Machine>,
    table: &GpuRangeTable,
    params: &MarketParams,
) -> Result<Admitted, Refusal> {
    let Some(machine) = machine else {
        return refuse("machine", terms.machine, RefusalReason::UnknownMachine);
    };
    if machine.host == bidder {
        return refuse("machine", machine.id, RefusalReason::OwnMachine);
    }
    let oc = check_oc_requests(&terms.oc, machine, table)?;
    check_price(
        terms.price_per_day,
        &oc,
        machine,
        params,
        machine.min_bid(params),
    )?;
    check_env(&terms.env)?;
    if let Some(why) = image_ref::problem(&terms.image) {
        return refuse("image", &terms.image, RefusalReason::BadImage(why.into()));
    }
    let max_s = machine.max_rental_length_s.min(MAX_BID_LIFETIME_S);
    let lifetime_s = match terms.lifetime {
        Lifetime::Explicit(0) => return refuse("lifetime_s", 0, RefusalReason::LifetimeZero),
        Lifetime::Explicit(s) if s > max_s => {
            return refuse("lifetime_s", s, RefusalReason::LifetimeTooLong { max_s });
        }
        Lifetime::Explicit(s) => s,
        // A machine whose maximum is 0 accepts no rental; the bid then lives 1 second at
        // most rather than being born expired.
        Lifetime::Default(s) => s.min(max_s).max(1),
    };
    Ok(Admitted { oc, lifetime_s })
}

/// Admission of a new bid, the same function for every API: the machine exists, is not
/// the bidder's, and is online and working; then every rule of [`admit`]; then the bidder
/// can pay one billing interval at the offered price from `balance`.
pub fn admit_new(
    terms: &BidTerms,
    bidder: AccountId,
    machine: Option<&Machine>,
    table: &GpuRangeTable,
    params: &MarketParams,
    balance: Amount,
) -> Result<Admitted, Refusal> {
    if let Some(m) = machine
        && m.host != bidder
        && !m.available()
    {
        return refuse("machine", m.id, RefusalReason::MachineUnavailable);
    }
    let admitted = admit(terms, bidder, machine, table, params)?;
    check_funds(terms.price_per_day, balance, params)?;
    Ok(admitted)
}

/// The bidder can pay one billing interval at `price_per_day` from `balance`.
pub fn check_funds(
    price_per_day: Amount,
    balance: Amount,
    params: &MarketParams,
) -> Result<(), Refusal> {
    let needed = IntervalCharge::new(price_per_day, params).total;
    if balance < needed {
        return refuse(
            "price",
            price_per_day,
            RefusalReason::InsufficientFunds { needed, balance },
        );
    }
    Ok(())
}

/// Whether a refusal means the price is too low (Clore's `too_low_bids_servers`): below
/// the market's minimum price, the machine's minimum bid or the bid's own floor.
pub fn is_too_low(refusal: &Refusal) -> bool {
    match &refusal.reason {
        RefusalReason::BelowMinBid { .. } | RefusalReason::BelowBidFloor { .. } => true,
        RefusalReason::PriceOutOfRange => refusal
            .value
            .parse::<Amount>()
            .is_ok_and(|price| price < MIN_PRICE),
        _ => false,
    }
}

/// Whether a refusal is about the per-GPU settings (Clore's `failed_to_oc_servers`).
pub fn is_oc_refusal(refusal: &Refusal) -> bool {
    matches!(
        refusal.reason,
        RefusalReason::WrongOcCount { .. }
            | RefusalReason::MissingPowerLimit
            | RefusalReason::OutOfRange { .. }
            | RefusalReason::NotAllowedOnModel
    )
}

/// The checks that can change after admission (the host's ceilings, the operator's
/// clock table, the energy floor), run again at every clearing. What depends only on the
/// machine (each GPU's power range and clock ranges, the minimum bid) is worked out once
/// per machine: the clearing re-checks every bid of every machine at every interval.
pub struct Rechecker<'a> {
    machine: &'a Machine,
    params: &'a MarketParams,
    /// Each GPU's power-limit range and its model's clock ranges.
    gpus: Vec<(RangeU32, Option<&'a ClockRanges>)>,
    min_bid: Amount,
}

impl<'a> Rechecker<'a> {
    /// The re-checks of bids on `machine` under `table` and `params`.
    pub fn new(machine: &'a Machine, table: &'a GpuRangeTable, params: &'a MarketParams) -> Self {
        Rechecker {
            machine,
            params,
            gpus: machine
                .gpus
                .iter()
                .map(|g| (g.power_limit_range(), table.get(&g.model)))
                .collect(),
            min_bid: machine.min_bid(params),
        }
    }

    /// Whether `bid` still passes: its per-GPU settings within today's ranges and its
    /// price within the market's range, at least the minimum bid and its own floor.
    pub fn check(&self, bid: &Bid) -> Result<(), Refusal> {
        if bid.oc.len() != self.gpus.len() {
            return refuse(
                "oc",
                bid.oc.len(),
                RefusalReason::WrongOcCount {
                    expected: self.gpus.len(),
                },
            );
        }
        for (i, (oc, (pl_range, clocks))) in bid.oc.iter().zip(&self.gpus).enumerate() {
            let request = OcRequest {
                pl: Some(oc.power_limit_w),
                core_lock: oc.core_lock_mhz,
                mem_lock: oc.mem_lock_mhz,
                core_offset: oc.core_offset_mhz,
                mem_offset: oc.mem_offset_mhz,
            };
            check_oc_values(i, &request, *pl_range, *clocks)?;
        }
        check_price(
            bid.price_per_day,
            &bid.oc,
            self.machine,
            self.params,
            self.min_bid,
        )
    }
}

/// The price is within the market's range, at least the machine's minimum bid
/// (`min_bid`, as `Machine::min_bid` gives it), and covers the energy cost of a day at the
/// bid's own total power limit.
fn check_price(
    price: Amount,
    oc: &[GpuOc],
    machine: &Machine,
    params: &MarketParams,
    min_bid: Amount,
) -> Result<(), Refusal> {
    if !(MIN_PRICE..=MAX_PRICE).contains(&price) {
        return refuse("price", price, RefusalReason::PriceOutOfRange);
    }
    if price < min_bid {
        return refuse("price", price, RefusalReason::BelowMinBid { min_bid });
    }
    let total_pl_w: u64 = oc.iter().map(|o| u64::from(o.power_limit_w)).sum();
    let floor = machine.bid_floor(total_pl_w, params);
    if price < floor {
        return refuse(
            "price",
            price,
            RefusalReason::BelowBidFloor { floor, total_pl_w },
        );
    }
    Ok(())
}

/// Checks a bid's per-GPU settings against the machine (one entry per GPU, a power
/// limit on each, every value within its range); the validated settings.
pub fn admit_oc(
    requests: &[OcRequest],
    machine: &Machine,
    table: &GpuRangeTable,
) -> Result<Vec<GpuOc>, Refusal> {
    check_oc_requests(requests, machine, table)
}

fn check_oc_requests(
    requests: &[OcRequest],
    machine: &Machine,
    table: &GpuRangeTable,
) -> Result<Vec<GpuOc>, Refusal> {
    if requests.len() != machine.gpus.len() {
        return refuse(
            "oc",
            requests.len(),
            RefusalReason::WrongOcCount {
                expected: machine.gpus.len(),
            },
        );
    }
    requests
        .iter()
        .zip(&machine.gpus)
        .enumerate()
        .map(|(i, (request, gpu))| check_oc_entry(i, request, gpu, table))
        .collect()
}

/// Checks GPU `i`'s settings request against its ranges.
fn check_oc_entry(
    i: usize,
    request: &OcRequest,
    gpu: &Gpu,
    table: &GpuRangeTable,
) -> Result<GpuOc, Refusal> {
    check_oc_values(i, request, gpu.power_limit_range(), table.get(&gpu.model))
}

/// GPU `i`'s requested settings within its power range and its model's clock ranges.
pub(crate) fn check_oc_values(
    i: usize,
    request: &OcRequest,
    pl_range: RangeU32,
    clocks: Option<&ClockRanges>,
) -> Result<GpuOc, Refusal> {
    let field = |name: &str| format!("oc[{i}].{name}");
    let Some(pl) = request.pl else {
        return refuse(field("pl"), "missing", RefusalReason::MissingPowerLimit);
    };
    within_u32(|| field("pl"), pl, pl_range)?;
    let lock = |name: &str, value: Option<u32>, range: Option<RangeU32>| match (value, range) {
        (None, _) => Ok(()),
        (Some(v), None) => refuse(field(name), v, RefusalReason::NotAllowedOnModel),
        (Some(v), Some(r)) => within_u32(|| field(name), v, r),
    };
    let offset = |name: &str, value: Option<i32>, range: Option<RangeS32>| match (value, range) {
        (None, _) => Ok(()),
        (Some(v), None) => refuse(field(name), v, RefusalReason::NotAllowedOnModel),
        (Some(v), Some(r)) => within_s32(|| field(name), v, r),
    };
    lock(
        "core_lock",
        request.core_lock,
        clocks.and_then(|c| c.core_lock_range()),
    )?;
    lock(
        "mem_lock",
        request.mem_lock,
        clocks.and_then(|c| c.mem_lock_range()),
    )?;
    offset(
        "core_offset",
        request.core_offset,
        clocks.map(|c| c.core_offset),
    )?;
    offset(
        "mem_offset",
        request.mem_offset,
        clocks.map(|c| c.mem_offset),
    )?;
    Ok(GpuOc {
        power_limit_w: pl,
        core_lock_mhz: request.core_lock,
        mem_lock_mhz: request.mem_lock,
        core_offset_mhz: request.core_offset,
        mem_offset_mhz: request.mem_offset,
    })
}

/// `field` names the value only when it is out of range (no string built otherwise: the
/// clearing re-checks every bid's settings at every interval).
fn within_u32(field: impl FnOnce() -> String, value: u32, range: RangeU32) -> Result<(), Refusal> {
    if (range.min..=range.max).contains(&value) {
        return Ok(());
    }
    refuse(
        field(),
        value,
        RefusalReason::OutOfRange {
            min: range.min.into(),
            max: range.max.into(),
        },
    )
}

/// `field` names the value only when it is out of range (no string built otherwise: the
/// clearing re-checks every bid's settings at every interval).
fn within_s32(field: impl FnOnce() -> String, value: i32, range: RangeS32) -> Result<(), Refusal> {
    if (range.min..=range.max).contains(&value) {
        return Ok(());
    }
    refuse(
        field(),
        value,
        RefusalReason::OutOfRange {
            min: range.min.into(),
            max: range.max.into(),
        },
    )
}

/// The environment's names, values and size within the limits bids and background jobs
/// share.
pub(crate) fn check_env(env: &std::collections::BTreeMap<String, String>) -> Result<(), Refusal> {
    for (key, value) in env {
        if key.chars().count() > MAX_ENV_KEY_CHARS {
            return refuse(
                format!("env.{}", truncate(key)),
                truncate(key),
                RefusalReason::EnvKeyTooLong,
            );
        }
        if value.chars().count() > MAX_ENV_VALUE_CHARS {
            return refuse(
                format!("env.{key}"),
                truncate(value),
                RefusalReason::EnvValueTooLong,
            );
        }
    }
    // Serialising a map of strings cannot fail.
    let json_chars = serde_json::to_string(env).map_or(usize::MAX, |s| s.chars().count());
    if json_chars >= MAX_ENV_JSON_CHARS {
        return refuse("env", json_chars, RefusalReason::EnvTooLarge);
    }
    Ok(())
}

/// Keeps refusal messages short when the offending text is huge.
fn truncate(text: &str) -> String {
    const SHOWN: usize = 32;
    if text.chars().count() <= SHOWN {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::tests::machine;
    use std::collections::BTreeMap;

    fn params() -> MarketParams {
        MarketParams {
            clore_usd: 0.0625,
            ..MarketParams::default()
        }
    }

    fn terms() -> BidTerms {
        BidTerms {
            machine: 1,
            price_per_day: Amount::clore(100),
            image: "registry.example/app:1".into(),
            env: BTreeMap::from([("MODE".into(), "train".into())]),
            oc: vec![
                OcRequest {
                    pl: Some(300),
                    ..OcRequest::default()
                };
                4
            ],
            lifetime: Lifetime::Explicit(86_400),
        }
    }

    fn check(t: &BidTerms) -> Result<Vec<GpuOc>, Refusal> {
        admit(
            t,
            7,
            Some(&machine()),
            &GpuRangeTable::defaults(),
            &params(),
        )
        .map(|a| a.oc)
    }

    fn reason(t: &BidTerms) -> (String, RefusalReason) {
        let r = check(t).unwrap_err();
        (r.field, r.reason)
    }

    #[test]
    fn a_good_bid_is_admitted_with_its_settings() {
        let oc = check(&terms()).unwrap();
        assert_eq!(oc.len(), 4);
        assert_eq!(oc[0].power_limit_w, 300);
    }

    #[test]
    fn unknown_and_own_machines() {
        let t = terms();
        let r = admit(&t, 7, None, &GpuRangeTable::defaults(), &params()).unwrap_err();
        assert_eq!(r.reason, RefusalReason::UnknownMachine);
        let r = admit(
            &t,
            10,
            Some(&machine()),
            &GpuRangeTable::defaults(),
            &params(),
        )
        .unwrap_err();
        assert_eq!(r.reason, RefusalReason::OwnMachine);
    }

    #[test]
    fn oc_count_and_mandatory_power_limit() {
        let mut t = terms();
        t.oc.pop();
        assert_eq!(
            reason(&t),
            ("oc".into(), RefusalReason::WrongOcCount { expected: 4 })
        );
        let mut t = terms();
        t.oc[2].pl = None;
        assert_eq!(
            reason(&t),
            ("oc[2].pl".into(), RefusalReason::MissingPowerLimit)
        );
    }

    #[test]
    fn power_limit_bounds_are_inclusive() {
        for (pl, ok) in [(149, false), (150, true), (400, true), (401, false)] {
            let mut t = terms();
            t.oc[1].pl = Some(pl);
            assert_eq!(check(&t).is_ok(), ok, "pl {pl}");
            if !ok {
                assert_eq!(
                    reason(&t),
                    (
                        "oc[1].pl".into(),
                        RefusalReason::OutOfRange { min: 150, max: 400 }
                    )
                );
            }
        }
    }

    #[test]
    fn clock_bounds_are_inclusive_and_need_a_table_entry() {
        // RTX 4090 defaults: core lock [210, 3105], core offset [-300, 300].
        for (lock, ok) in [(209, false), (210, true), (3105, true), (3106, false)] {
            let mut t = terms();
            t.oc[0].core_lock = Some(lock);
            assert_eq!(check(&t).is_ok(), ok, "core lock {lock}");
        }
        for (offset, ok) in [(-301, false), (-300, true), (300, true), (301, false)] {
            let mut t = terms();
            t.oc[3].core_offset = Some(offset);
            assert_eq!(check(&t).is_ok(), ok, "core offset {offset}");
        }
        let mut t = terms();
        t.oc[0].mem_offset = Some(100);
        let mut unknown = machine();
        unknown.gpus[0].model = "Mystery GPU".into();
        let r = admit(&t, 7, Some(&unknown), &GpuRangeTable::defaults(), &params()).unwrap_err();
        assert_eq!(
            (r.field.as_str(), r.reason),
            ("oc[0].mem_offset", RefusalReason::NotAllowedOnModel)
        );
        // A "[0, 0]" lock range means the model offers no such lock (H100 memory clocks).
        let mut t = terms();
        t.oc[0].mem_lock = Some(2619);
        let mut h100 = machine();
        h100.gpus[0].model = "NVIDIA H100 80GB HBM3".into();
        let r = admit(&t, 7, Some(&h100), &GpuRangeTable::defaults(), &params()).unwrap_err();
        assert_eq!(
            (r.field.as_str(), r.reason),
            ("oc[0].mem_lock", RefusalReason::NotAllowedOnModel)
        );
    }

    #[test]
    fn price_bounds_and_min_bid() {
        for (units, ok) in [
            (9_999, false),
            (10_000, true),
            (500_000_000_000, true),
            (500_000_000_001, false),
        ] {
            let mut t = terms();
            t.price_per_day = Amount(units);
            let cheap_machine = admit(
                &t,
                7,
                Some(&Machine {
                    energy_price_usd_per_kwh: 0.0,
                    ..machine()
                }),
                &GpuRangeTable::defaults(),
                &params(),
            );
            assert_eq!(cheap_machine.is_ok(), ok, "price {units}");
        }
        // min bid 28.8 CLORE (see machine tests), reached by a bid at the cards' minimum.
        let mut t = terms();
        for oc in &mut t.oc {
            oc.pl = Some(150);
        }
        t.price_per_day = Amount(2_879_999_999);
        assert_eq!(
            reason(&t).1,
            RefusalReason::BelowMinBid {
                min_bid: Amount(2_880_000_000)
            }
        );
        t.price_per_day = Amount(2_880_000_000);
        assert!(check(&t).is_ok());
    }

    #[test]
    fn a_bid_must_cover_the_energy_of_its_own_power_limit() {
        // 4 × 300 W = 1200 W → 28.8 kWh/day × 0.125 USD = 3.6 USD = 57.6 CLORE at 0.0625.
        let mut t = terms();
        t.price_per_day = Amount(5_759_999_999);
        assert_eq!(
            reason(&t),
            (
                "price".into(),
                RefusalReason::BelowBidFloor {
                    floor: Amount(5_760_000_000),
                    total_pl_w: 1200
                }
            )
        );
        assert!(is_too_low(&check(&t).unwrap_err()));
        t.price_per_day = Amount(5_760_000_000);
        assert!(check(&t).is_ok());
        // The reserve price counts too.
        let mut reserved = machine();
        reserved.reserve_price = Amount::clore(80);
        let r = admit(
            &t,
            7,
            Some(&reserved),
            &GpuRangeTable::defaults(),
            &params(),
        )
        .unwrap_err();
        assert_eq!(
            r.reason,
            RefusalReason::BelowMinBid {
                min_bid: Amount::clore(80)
            }
        );
    }

    #[test]
    fn a_new_bid_needs_an_available_machine_and_one_interval_of_funds() {
        let p = params();
        let table = GpuRangeTable::defaults();
        // 144 CLORE/day for 60 s = 0.1 CLORE.
        let mut t = terms();
        t.price_per_day = Amount::clore(144);
        let new = |m: &Machine, balance| admit_new(&t, 7, Some(m), &table, &p, balance);
        assert!(new(&machine(), Amount(10_000_000)).is_ok());
        let r = new(&machine(), Amount(9_999_999)).unwrap_err();
        assert_eq!(
            (r.field.as_str(), r.reason),
            (
                "price",
                RefusalReason::InsufficientFunds {
                    needed: Amount(10_000_000),
                    balance: Amount(9_999_999)
                }
            )
        );
        let mut offline = machine();
        offline.live.online = false;
        let r = new(&offline, Amount::clore(1000)).unwrap_err();
        assert_eq!(
            (r.field.as_str(), r.reason),
            ("machine", RefusalReason::MachineUnavailable)
        );
    }

    #[test]
    fn env_limits() {
        let mut t = terms();
        t.env = BTreeMap::from([("K".repeat(128), "v".into())]);
        assert!(check(&t).is_ok());
        t.env = BTreeMap::from([("K".repeat(129), "v".into())]);
        assert_eq!(reason(&t).1, RefusalReason::EnvKeyTooLong);
        t.env = BTreeMap::from([("K".into(), "v".repeat(1536))]);
        assert!(check(&t).is_ok());
        t.env = BTreeMap::from([("K".into(), "v".repeat(1537))]);
        assert_eq!(reason(&t), ("env.K".into(), RefusalReason::EnvValueTooLong));
        // {"K0":"vvv…"} … sized to hit 12288 exactly: refused at 12288, accepted at 12287.
        let fill = |total: usize| {
            let mut env = BTreeMap::new();
            let mut used = 2; // {}
            let mut i = 0;
            while used < total {
                let key = format!("K{i:03}");
                let overhead = key.len() + 5 + usize::from(!env.is_empty());
                let len = (total - used - overhead).min(1536);
                env.insert(key, "v".repeat(len));
                used += overhead + len;
                i += 1;
            }
            env
        };
        t.env = fill(12_287);
        assert_eq!(serde_json::to_string(&t.env).unwrap().len(), 12_287);
        assert!(check(&t).is_ok());
        t.env = fill(12_288);
        assert_eq!(reason(&t).1, RefusalReason::EnvTooLarge);
    }

    #[test]
    fn image_and_lifetime() {
        let mut t = terms();
        t.image = String::new();
        assert!(matches!(reason(&t), (f, RefusalReason::BadImage(_)) if f == "image"));
        t.image = "Not Valid".into();
        assert!(matches!(reason(&t).1, RefusalReason::BadImage(_)));
        let mut t = terms();
        t.lifetime = Lifetime::Explicit(MAX_BID_LIFETIME_S);
        assert!(check(&t).is_ok());
        t.lifetime = Lifetime::Explicit(0);
        assert_eq!(
            reason(&t),
            ("lifetime_s".into(), RefusalReason::LifetimeZero)
        );
        t.lifetime = Lifetime::Explicit(MAX_BID_LIFETIME_S + 1);
        assert_eq!(
            reason(&t).1,
            RefusalReason::LifetimeTooLong {
                max_s: MAX_BID_LIFETIME_S
            }
        );
        let mut short = machine();
        short.max_rental_length_s = 3600;
        t.lifetime = Lifetime::Explicit(3601);
        let r = admit(&t, 7, Some(&short), &GpuRangeTable::defaults(), &params()).unwrap_err();
        assert_eq!(r.reason, RefusalReason::LifetimeTooLong { max_s: 3600 });
        // A default lifetime is clamped to the machine's maximum instead of refused.
        t.lifetime = Lifetime::Default(MAX_BID_LIFETIME_S);
        let admitted = admit(&t, 7, Some(&short), &GpuRangeTable::defaults(), &params()).unwrap();
        assert_eq!(admitted.lifetime_s, 3600);
        t.lifetime = Lifetime::Default(86_400);
        let admitted = admit(
            &t,
            7,
            Some(&machine()),
            &GpuRangeTable::defaults(),
            &params(),
        )
        .unwrap();
        assert_eq!(admitted.lifetime_s, 86_400);
    }

    #[test]
    fn refusals_read_well() {
        let mut t = terms();
        t.oc[1].pl = Some(999);
        let text = check(&t).unwrap_err().to_string();
        assert_eq!(
            text,
            "oc[1].pl: 999 is outside the allowed range [150, 400]"
        );
    }
}
