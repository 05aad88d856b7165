//! Clearing one machine for one interval (market.md, "Clearing"): candidates, core
//! re-checks, validators, strategy, tie-breaks, switch decision, and the decision record.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::admission::Rechecker;
use crate::bid::{Bid, BidId};
use crate::billing::IntervalCharge;
use crate::context::{CandidateBid, RunningBid};
use crate::gpu_ranges::GpuRangeTable;
use crate::machine::{Machine, MachineId};
use crate::money::Amount;
use crate::params::MarketParams;
use crate::plugin_input::{InputRecord, PluginInput};
use crate::plugin_traits::Plugins;
use crate::verdict::PluginRef;

/// Everything the clearing of one machine needs, gathered by the caller.
pub struct ClearingInput<'a> {
    /// The machine.
    pub machine: &'a Machine,
    /// The operator's clock ranges.
    pub table: &'a GpuRangeTable,
    /// Market parameters.
    pub params: &'a MarketParams,
    /// The interval being cleared.
    pub interval: u64,
    /// The start of the interval, unix seconds.
    pub now: u64,
    /// The bid running on the machine now, if any.
    pub running: Option<RunningBid>,
    /// The machine's reliability (served ÷ assigned intervals over the window).
    pub reliability: f64,
    /// The machine's bids, in any state; only live ones compete.
    pub bids: Vec<&'a Bid>,
}

/// What happened to one bid in one clearing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Verdict {
    /// Not a candidate: the core refused it this interval (unfunded, out of range,
    /// machine unavailable).
    Ineligible {
        /// Machine-readable reason.
        code: String,
        /// Explanation.
        message: String,
    },
    /// A validator rejected it.
    Rejected {
        /// The validator version.
        by: PluginRef,
        /// The validator's code.
        code: String,
        /// The validator's message.
        message: String,
    },
    /// The strategy scored it.
    Scored {
        /// The score; zero or less is not acceptable.
        score: f64,
    },
}

/// One bid's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidVerdict {
    /// The bid.
    pub bid: BidId,
    /// Its owner.
    pub owner: AccountId,
    /// What happened to it.
    pub verdict: Verdict,
}

/// A plugin fault met during the clearing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultRecord {
    /// The faulting version.
    pub plugin: PluginRef,
    /// The fault kind, e.g. `out_of_fuel`.
    pub kind: String,
    /// The fault in words.
    pub message: String,
}

/// The winner of an interval and what it will pay if the interval is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Winner {
    /// The winning bid.
    pub bid: BidId,
    /// Its owner.
    pub owner: AccountId,
    /// Its price per day.
    pub price_per_day: Amount,
    /// What one interval costs it.
    pub charge: IntervalCharge,
}

/// The decision record of one machine for one interval: why each bid won or lost, with
/// what was needed to replay it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    /// The machine.
    pub machine: MachineId,
    /// The interval.
    pub interval: u64,
    /// sha256 of the plugins' input (machine context and candidates; see
    /// [`crate::plugin_input::input_digest`]).
    pub input_digest: String,
    /// The strategy version that answered.
    pub strategy: Option<PluginRef>,
    /// The validator versions that answered, in order.
    pub validators: Vec<PluginRef>,
    /// Every live bid's verdict.
    pub verdicts: Vec<BidVerdict>,
    /// The winner, `None` when the machine idles.
    pub winner: Option<Winner>,
    /// The bid that ran before.
    pub previous: Option<BidId>,
    /// Whether the machine switches workloads.
    pub switched: bool,
    /// Plugin faults met.
    pub faults: Vec<FaultRecord>,
    /// Why the machine idles when it does.
    pub idle_reason: Option<String>,
}

/// Clears `input.machine` for `input.interval`. `can_pay(owner, amount)` tells whether an
/// owner can still pay `amount` this interval (the caller accounts for what the owner's
/// other winning bids already committed).
pub fn clear_machine(
    input: &ClearingInput<'_>,
    can_pay: impl Fn(AccountId, Amount) -> bool,
    plugins: &dyn Plugins,
) -> Decision {
    clear_machine_recorded(input, can_pay, plugins).0
}

/// A clearing's plugin input with its book digest, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The per-interval record (book digest, running bid, reliability).
    pub record: InputRecord,
    /// What the plugins were given.
    pub input: PluginInput,
}

/// [`clear_machine`], also returning what the plugins were given (`None` when no plugin
/// was called: the machine was unavailable).
pub fn clear_machine_recorded(
    input: &ClearingInput<'_>,
    can_pay: impl Fn(AccountId, Amount) -> bool,
    plugins: &dyn Plugins,
) -> (Decision, Option<Recorded>) {
    let machine = input.machine;
    let mut live: Vec<&Bid> = input
        .bids
        .iter()
        .copied()
        .filter(|b| b.is_live(input.now))
        .collect();
    live.sort_by_key(|b| b.id);
    warm(&live);
    let mut decision = Decision {
        machine: machine.id,
        interval: input.interval,
        input_digest: String::new(),
        strategy: None,
        validators: Vec::new(),
        verdicts: Vec::with_capacity(live.len()),
        winner: None,
        previous: input.running.map(|r| r.bid_id),
        switched: false,
        faults: Vec::new(),
        idle_reason: None,
    };
    let ineligible = |bid: &Bid, code: &str, message: String| BidVerdict {
        bid: bid.id,
        owner: bid.owner,
        verdict: Verdict::Ineligible {
            code: code.into(),
            message,
        },
    };
    if !machine.available() {
        let why = if machine.live.online {
            "not working properly"
        } else {
            "offline"
        };
        decision.verdicts = live
            .iter()
            .map(|b| ineligible(b, "machine-unavailable", format!("the machine is {why}")))
            .collect();
        decision.idle_reason = Some(format!("machine {why}"));
        return (finish(decision), None);
    }

    // 1–2. Candidates: funded and still within the machine's ranges.
    let rechecker = Rechecker::new(machine, input.table, input.params);
    let mut candidates: Vec<CandidateBid> = Vec::with_capacity(live.len());
    for bid in &live {
        let charge = IntervalCharge::new(bid.price_per_day, input.params);
        if !can_pay(bid.owner, charge.total) {
            decision.verdicts.push(ineligible(
                bid,
                "insufficient-funds",
                format!("the owner cannot pay the next interval ({})", charge.total),
            ));
        } else if let Err(refusal) = rechecker.check(bid) {
            decision
                .verdicts
                .push(ineligible(bid, "no-longer-admissible", refusal.to_string()));
        } else {
            candidates.push(bid.candidate());
        }
    }
    let recorded = PluginInput {
        context: machine.context(input.table, input.params, input.running, input.reliability),
        candidates,
    };
    let (book, digest) = recorded.digests();
    decision.input_digest = digest;

    // 3–4. Validators, strategy and tie-breaks.
    let judged = judge(&recorded.context, &recorded.candidates, plugins);
    decision.validators = judged.validators;
    decision.strategy = judged.strategy;
    decision.faults = judged.faults;
    decision.verdicts.extend(judged.verdicts);
    if let Some(id) = judged.winner
        && let Ok(i) = live.binary_search_by_key(&id, |b| b.id)
        && let Some(bid) = live.get(i)
    {
        decision.winner = Some(Winner {
            bid: bid.id,
            owner: bid.owner,
            price_per_day: bid.price_per_day,
            charge: IntervalCharge::new(bid.price_per_day, input.params),
        });
    }
    if decision.winner.is_none() {
        decision.idle_reason = Some("no acceptable bid".into());
    }
    let record = InputRecord {
        book,
        reliability: input.reliability,
        running: input.running,
        coupled: false,
    };
    (
        finish(decision),
        Some(Recorded {
            record,
            input: recorded,
        }),
    )
}

/// What the plugins made of one machine's candidates: steps 3 and 4 of the clearing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judgement {
    /// The validators' rejections and the strategy's scores, one per candidate that got
    /// either, in the order they were given.
    pub verdicts: Vec<BidVerdict>,
    /// The winning candidate: the highest positive finite score, ties to the running bid
    /// and then to the older bid.
    pub winner: Option<BidId>,
    /// The strategy version that answered.
    pub strategy: Option<PluginRef>,
    /// The validator versions that answered, in order.
    pub validators: Vec<PluginRef>,
    /// Plugin faults met.
    pub faults: Vec<FaultRecord>,
}

/// Runs the validators and the strategy over `candidates` (in id order) and picks the
/// winner by the market's tie-break rules: what a clearing, a replay and a "what would
/// win" search all do with a book.
pub fn judge(
    context: &crate::MachineContext,
    candidates: &[CandidateBid],
    plugins: &dyn Plugins,
) -> Judgement {
    let mut judged = Judgement::default();
    let owner_of = |id: BidId| {
        candidates
            .binary_search_by_key(&id, |c| c.id)
            .map_or(0, |i| candidates[i].owner_id)
    };
    let validation = plugins.validate(context, candidates);
    judged.validators = validation.answered_by;
    record_faults(&mut judged.faults, validation.faults);
    let rejected: std::collections::HashSet<BidId> = validation
        .rejections
        .iter()
        .map(|(_, r)| r.bid_id)
        .collect();
    for (by, rejection) in validation.rejections {
        judged.verdicts.push(BidVerdict {
            bid: rejection.bid_id,
            owner: owner_of(rejection.bid_id),
            verdict: Verdict::Rejected {
                by,
                code: rejection.code,
                message: rejection.message,
            },
        });
    }
    let remaining: std::borrow::Cow<'_, [CandidateBid]> = if rejected.is_empty() {
        std::borrow::Cow::Borrowed(candidates)
    } else {
        candidates
            .iter()
            .filter(|c| !rejected.contains(&c.id))
            .cloned()
            .collect::<Vec<_>>()
            .into()
    };
    if remaining.is_empty() {
        return judged;
    }
    let ranking = plugins.rank(context, &remaining);
    judged.strategy = ranking.answered_by;
    record_faults(&mut judged.faults, ranking.faults);
    let running = context.running.map(|r| r.bid_id);
    let mut best: Option<(f64, BidId)> = None;
    for score in &ranking.scores {
        judged.verdicts.push(BidVerdict {
            bid: score.bid_id,
            owner: owner_of(score.bid_id),
            verdict: Verdict::Scored { score: score.score },
        });
        if !(score.score.is_finite() && score.score > 0.0) {
            continue;
        }
        let better = match best {
            None => true,
            Some((top, top_id)) => {
                score.score > top
                    || (score.score == top && beats_on_tie(score.bid_id, top_id, running))
            }
        };
        if better {
            best = Some((score.score, score.bid_id));
        }
    }
    judged.winner = best.map(|(_, id)| id);
    judged
}

/// Reads the first byte of what the clearing reads of each bid on the heap (its per-GPU
/// settings, image and environment) in one tight loop, so that the cache misses of all
/// the machine's bids overlap instead of coming one after another in the loop that copies
/// them (the bids of a large market are far apart in memory).
fn warm(bids: &[&Bid]) {
    for bid in bids {
        // First and last element: a value may straddle cache lines.
        std::hint::black_box(bid.oc.first().map(|o| o.power_limit_w));
        std::hint::black_box(bid.oc.last().map(|o| o.power_limit_w));
        std::hint::black_box(bid.image.as_bytes().first().copied());
        std::hint::black_box(bid.image.as_bytes().last().copied());
        std::hint::black_box(
            bid.env
                .keys()
                .next()
                .and_then(|k| k.as_bytes().first().copied()),
        );
    }
}

/// Ties go to the running bid, then to the older bid (lower id).
fn beats_on_tie(challenger: BidId, holder: BidId, running: Option<BidId>) -> bool {
    match running {
        Some(r) if r == challenger => true,
        Some(r) if r == holder => false,
        _ => challenger < holder,
    }
}

fn finish(mut decision: Decision) -> Decision {
    decision.switched = decision.winner.map(|w| w.bid) != decision.previous;
    decision.verdicts.sort_by_key(|v| v.bid);
    decision
}

fn record_faults(into: &mut Vec<FaultRecord>, faults: Vec<(PluginRef, crate::PluginFault)>) {
    into.extend(faults.into_iter().map(|(plugin, fault)| FaultRecord {
        plugin,
        kind: fault.kind().into(),
        message: fault.to_string(),
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bid::BidState;
    use crate::context::GpuOc;
    use crate::machine::tests::machine;
    use crate::plugin_traits::StrategyOnly;
    use crate::price_per_watt::PricePerWatt;
    use crate::{CandidateBid, MachineContext, PluginFault, Score, Strategy};
    use std::collections::BTreeMap;

    fn bid(id: BidId, owner: AccountId, clore: u64, pl: u32) -> Bid {
        Bid {
            id,
            owner,
            machine: 1,
            price_per_day: Amount::clore(clore),
            image: "app".into(),
            env: BTreeMap::new(),
            oc: vec![
                GpuOc {
                    power_limit_w: pl,
                    core_lock_mhz: None,
                    mem_lock_mhz: None,
                    core_offset_mhz: None,
                    mem_offset_mhz: None
                };
                4
            ],
            created_at: 0,
            expires_at: u64::MAX,
            state: BidState::Active,
        }
    }

    fn clear(m: &Machine, bids: &[Bid], running: Option<BidId>, plugins: &dyn Plugins) -> Decision {
        let params = MarketParams {
            clore_usd: 1.0,
            ..MarketParams::default()
        };
        let input = ClearingInput {
            machine: m,
            table: &GpuRangeTable::defaults(),
            params: &params,
            interval: 5,
            now: 300,
            running: running.map(|bid_id| RunningBid {
                bid_id,
                owner_id: 1,
                price_per_day: 0,
                total_power_limit_w: None,
                running_for_s: 60,
            }),
            reliability: 1.0,
            bids: bids.iter().collect(),
        };
        clear_machine(&input, |owner, _| owner != 99, plugins)
    }

    fn ppw() -> StrategyOnly<PricePerWatt> {
        StrategyOnly(PricePerWatt::new())
    }

    #[test]
    fn the_best_price_per_watt_wins_and_the_machine_switches() {
        let bids = [bid(1, 7, 100, 400), bid(2, 8, 60, 200)];
        let d = clear(&machine(), &bids, Some(1), &ppw());
        assert_eq!(d.winner.unwrap().bid, 2);
        assert!(d.switched);
        assert_eq!(d.previous, Some(1));
        assert_eq!(d.strategy.unwrap().digest, "native:price-per-watt");
        assert!(d.input_digest.starts_with("sha256:"));
        assert!(matches!(d.verdicts[0].verdict, Verdict::Scored { score } if score > 0.0));
    }

    #[test]
    fn ties_go_to_the_running_bid_then_the_older_bid() {
        let bids = [
            bid(1, 7, 100, 300),
            bid(2, 8, 100, 300),
            bid(3, 9, 100, 300),
        ];
        assert_eq!(
            clear(&machine(), &bids, Some(3), &ppw())
                .winner
                .unwrap()
                .bid,
            3
        );
        assert!(!clear(&machine(), &bids, Some(3), &ppw()).switched);
        assert_eq!(
            clear(&machine(), &bids, None, &ppw()).winner.unwrap().bid,
            1
        );
        assert_eq!(
            clear(&machine(), &bids, Some(42), &ppw())
                .winner
                .unwrap()
                .bid,
            1
        );
    }

    #[test]
    fn unfunded_dead_and_out_of_range_bids_do_not_compete() {
        let mut cancelled = bid(4, 7, 1000, 300);
        cancelled.state = BidState::Cancelled;
        let mut expired = bid(5, 7, 1000, 300);
        expired.expires_at = 300;
        let bids = [
            bid(1, 99, 1000, 300),
            bid(2, 7, 1000, 401),
            cancelled,
            expired,
            bid(3, 8, 10, 300),
        ];
        let d = clear(&machine(), &bids, None, &ppw());
        assert_eq!(d.winner.unwrap().bid, 3);
        let code = |id| {
            d.verdicts
                .iter()
                .find(|v| v.bid == id)
                .map(|v| v.verdict.clone())
        };
        assert!(
            matches!(code(1), Some(Verdict::Ineligible { code, .. }) if code == "insufficient-funds")
        );
        assert!(
            matches!(code(2), Some(Verdict::Ineligible { code, message }) if code == "no-longer-admissible" && message.contains("oc[0].pl"))
        );
        assert_eq!(code(4), None);
        assert_eq!(code(5), None);
    }

    #[test]
    fn an_unavailable_machine_idles_with_the_reason() {
        let mut m = machine();
        m.live.online = false;
        let d = clear(&m, &[bid(1, 7, 100, 300)], Some(1), &ppw());
        assert_eq!(d.winner, None);
        assert!(d.switched, "stopping the running workload is a switch");
        assert_eq!(d.idle_reason.as_deref(), Some("machine offline"));
        assert!(
            matches!(&d.verdicts[0].verdict, Verdict::Ineligible { code, .. } if code == "machine-unavailable")
        );
    }

    struct Zero;
    impl Strategy for Zero {
        fn plugin_ref(&self) -> &PluginRef {
            static R: std::sync::OnceLock<PluginRef> = std::sync::OnceLock::new();
            R.get_or_init(|| PluginRef {
                name: "zero".into(),
                version: "1".into(),
                digest: "native:zero".into(),
            })
        }
        fn rank(
            &self,
            _: &MachineContext,
            bids: &[CandidateBid],
        ) -> Result<Vec<Score>, PluginFault> {
            if bids.len() > 1 {
                return Err(PluginFault::Trap("boom".into()));
            }
            Ok(bids
                .iter()
                .map(|b| Score {
                    bid_id: b.id,
                    score: 0.0,
                })
                .collect())
        }
    }

    #[test]
    fn nothing_acceptable_idles_and_faults_are_recorded() {
        let d = clear(
            &machine(),
            &[bid(1, 7, 100, 300)],
            None,
            &StrategyOnly(Zero),
        );
        assert_eq!(d.winner, None);
        assert_eq!(d.idle_reason.as_deref(), Some("no acceptable bid"));
        let d = clear(
            &machine(),
            &[bid(1, 7, 100, 300), bid(2, 7, 100, 300)],
            None,
            &StrategyOnly(Zero),
        );
        assert_eq!(d.winner, None);
        assert_eq!(d.faults.len(), 1);
        assert_eq!(d.faults[0].kind, "trap");
    }
}
