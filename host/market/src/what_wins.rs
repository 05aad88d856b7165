//! "What would have won": for a bid that lost a clearing, the lowest price at its own
//! power limits that wins the same book under the same plugins, or the largest total
//! power limit that wins at its own price, or why no price can win.
//!
//! Both are found by re-running the validators and the strategy ([`judge`]) over the
//! recorded book with the bid changed: a doubling search for a winning price, then a
//! bisection on base units between the highest price found losing and the lowest found
//! winning; a bisection on a uniform cut of every GPU's power limit (each stopping at its
//! card minimum) for the power. Every run is one validator and one strategy call per
//! plugin; a search makes at most [`MAX_CALLS`] runs (the doubling and the bisection over
//! the whole price range take at most about 80), and each call is bounded in fuel and time
//! by the runtime as in a tick. The bisection keeps a price that wins and one a base unit
//! lower that loses, both run; it assumes that a higher price never makes a bid rank
//! lower, nor a lower power limit (true of the built-in and first-party strategies): for a
//! strategy that is not monotone the answer is still a price that wins with one unit less
//! losing, but not necessarily the lowest such.

use serde::{Deserialize, Serialize};

use crate::bid::BidId;
use crate::clearing::{Verdict, judge};
use crate::context::{CandidateBid, MachineContext};
use crate::money::Amount;
use crate::plugin_traits::Plugins;

/// Runs of the plugins one search may make.
pub const MAX_CALLS: u32 = 160;

/// The highest price a search tries: the highest price admission accepts.
pub const MAX_PRICE: u64 = crate::admission::MAX_PRICE.0;

/// What it would take a bid to win a book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhatWins {
    /// The lowest price per day, at the bid's own power limits, that wins; `None` when no
    /// price up to the search's ceiling wins (see `cannot_win`).
    pub price_to_win: Option<Amount>,
    /// The largest total power limit in W (each GPU's limit cut by the same watts, none
    /// below its card minimum) that wins at the bid's own price; `None` when even the
    /// card minimums lose.
    pub power_limit_to_win_w: Option<u32>,
    /// Why no price can win, when none can: a validator's rejection, a zero score, an
    /// ineligible state.
    pub cannot_win: Option<String>,
    /// Whether the bid wins as it is.
    pub wins_now: bool,
    /// Plugin runs the searches made.
    pub calls: u32,
}

/// A search over one book for one candidate.
struct Search<'a> {
    context: &'a MachineContext,
    book: Vec<CandidateBid>,
    at: usize,
    plugins: &'a dyn Plugins,
    calls: u32,
}

impl Search<'_> {
    /// Whether the candidate wins with `change` applied; the verdict it got.
    fn wins(&mut self, change: impl FnOnce(&mut CandidateBid)) -> (bool, Option<Verdict>) {
        let original = self.book[self.at].clone();
        change(&mut self.book[self.at]);
        self.calls += 1;
        let judged = judge(self.context, &self.book, self.plugins);
        let id = self.book[self.at].id;
        self.book[self.at] = original;
        let verdict = judged
            .verdicts
            .into_iter()
            .find(|v| v.bid == id)
            .map(|v| v.verdict);
        (judged.winner == Some(id), verdict)
    }

    fn budget_left(&self) -> bool {
        self.calls < MAX_CALLS
    }
}

/// What it would take `bid` (one of `candidates`, in id order) to win `context`'s book
/// under `plugins`; `floor` is the lowest price the market accepts (the machine's
/// minimum bid).
pub fn what_wins(
    context: &MachineContext,
    candidates: &[CandidateBid],
    bid: BidId,
    plugins: &dyn Plugins,
) -> WhatWins {
    let Some(at) = candidates.iter().position(|c| c.id == bid) else {
        return WhatWins {
            cannot_win: Some("the bid was not a candidate in this clearing".into()),
            ..WhatWins::default()
        };
    };
    let mut search = Search {
        context,
        book: candidates.to_vec(),
        at,
        plugins,
        calls: 0,
    };
    let own = search.book[at].clone();
    let (wins_now, _) = search.wins(|_| {});
    let mut out = WhatWins {
        wins_now,
        ..WhatWins::default()
    };
    if wins_now {
        out.price_to_win = Some(Amount(own.price_per_day.max(context.min_bid)));
        out.power_limit_to_win_w = Some(own.total_power_limit_w);
        out.calls = search.calls;
        return out;
    }
    let (price, why) = lowest_winning_price(&mut search, own.price_per_day.max(context.min_bid));
    out.price_to_win = price.map(Amount);
    out.cannot_win = why;
    out.power_limit_to_win_w = largest_winning_power(&mut search, &own);
    out.calls = search.calls;
    out
}

/// The lowest price from `from` up that wins, or why none up to [`MAX_PRICE`] does.
fn lowest_winning_price(search: &mut Search<'_>, from: u64) -> (Option<u64>, Option<String>) {
    let price = |p: u64| move |c: &mut CandidateBid| c.price_per_day = p;
    // `lo` loses (or is below the floor); find a winning `hi`.
    let (lo_wins, _) = search.wins(price(from));
    if lo_wins {
        return (Some(from), None);
    }
    let mut lo = from;
    let mut hi = from.max(1);
    loop {
        if !search.budget_left() {
            return (None, Some("the search ran out of plugin calls".into()));
        }
        hi = hi.saturating_mul(2).min(MAX_PRICE);
        let (wins, verdict) = search.wins(price(hi));
        if wins {
            break;
        }
        lo = hi;
        if hi >= MAX_PRICE {
            return (None, Some(why_not(verdict)));
        }
    }
    while hi - lo > 1 && search.budget_left() {
        let mid = lo + (hi - lo) / 2;
        if search.wins(price(mid)).0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    (Some(hi), None)
}

/// Why a bid lost at the highest price tried.
fn why_not(verdict: Option<Verdict>) -> String {
    match verdict {
        Some(Verdict::Rejected { by, code, message }) => format!(
            "no price wins: validator {} rejects it ({code}: {message})",
            by.name
        ),
        Some(Verdict::Scored { score }) if !(score.is_finite() && score > 0.0) => {
            "no price wins: the strategy scores it zero at any price".into()
        }
        Some(Verdict::Ineligible { message, .. }) => format!("no price wins: {message}"),
        _ => format!(
            "no price up to the market's maximum ({} CLORE/day) wins",
            Amount(MAX_PRICE)
        ),
    }
}

/// The largest total power limit that wins at the bid's own price, cutting every GPU's
/// limit by the same watts (none below its card minimum).
fn largest_winning_power(search: &mut Search<'_>, own: &CandidateBid) -> Option<u32> {
    let floors: Vec<u32> = own
        .oc
        .iter()
        .enumerate()
        .map(|(i, o)| {
            search.context.gpus.get(i).map_or(o.power_limit_w, |g| {
                g.power_limit_w.min.min(o.power_limit_w)
            })
        })
        .collect();
    let cut_oc = |cut: u32| {
        let mut oc = own.oc.clone();
        for (o, floor) in oc.iter_mut().zip(&floors) {
            o.power_limit_w = o.power_limit_w.saturating_sub(cut).max(*floor);
        }
        oc
    };
    let apply = |oc: Vec<crate::context::GpuOc>| {
        move |c: &mut CandidateBid| {
            c.total_power_limit_w = oc.iter().map(|o| o.power_limit_w).sum();
            c.oc = oc;
        }
    };
    let max_cut = own
        .oc
        .iter()
        .zip(&floors)
        .map(|(o, f)| o.power_limit_w - f)
        .max()
        .unwrap_or(0);
    if max_cut == 0 || !search.budget_left() || !search.wins(apply(cut_oc(max_cut))).0 {
        return None;
    }
    // `lo` loses (no cut), `hi` wins.
    let (mut lo, mut hi) = (0, max_cut);
    while hi - lo > 1 && search.budget_left() {
        let mid = lo + (hi - lo) / 2;
        if search.wins(apply(cut_oc(mid))).0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(cut_oc(hi).iter().map(|o| o.power_limit_w).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::GpuOc;
    use crate::gpu_ranges::GpuRangeTable;
    use crate::machine::tests::machine;
    use crate::params::MarketParams;
    use crate::plugin_traits::StrategyOnly;
    use crate::price_per_watt::PricePerWatt;

    fn candidate(id: u64, clore: u64, pl: u32) -> CandidateBid {
        CandidateBid {
            id,
            owner_id: id + 10,
            price_per_day: Amount::clore(clore).0,
            oc: vec![
                GpuOc {
                    power_limit_w: pl,
                    core_lock_mhz: None,
                    mem_lock_mhz: None,
                    core_offset_mhz: None,
                    mem_offset_mhz: None,
                };
                4
            ],
            total_power_limit_w: pl * 4,
            created_at: 0,
            image: "app".into(),
            env_keys: vec![],
        }
    }

    fn context() -> MachineContext {
        machine().context(
            &GpuRangeTable::defaults(),
            &MarketParams {
                clore_usd: 1.0,
                ..MarketParams::default()
            },
            None,
            1.0,
        )
    }

    #[test]
    fn the_price_found_wins_and_one_base_unit_less_loses() {
        let plugins = StrategyOnly(PricePerWatt::new());
        let book = vec![candidate(1, 100, 300), candidate(2, 90, 300)];
        let found = what_wins(&context(), &book, 2, &plugins);
        assert!(!found.wins_now);
        let price = found.price_to_win.unwrap().0;
        let with = |p: u64| {
            let mut b = book.clone();
            b[1].price_per_day = p;
            judge(&context(), &b, &plugins).winner
        };
        // The older bid wins a tie: one base unit more than its price per watt.
        assert_eq!(with(price), Some(2));
        assert_eq!(with(price - 1), Some(1));
        assert!(found.calls <= MAX_CALLS);
        // At 90 CLORE it would win with less power.
        let watts = found.power_limit_to_win_w.unwrap();
        assert!(watts < 1200, "{watts}");
    }

    #[test]
    fn a_winner_is_told_so_and_an_unknown_bid_cannot_win() {
        let plugins = StrategyOnly(PricePerWatt::new());
        let book = vec![candidate(1, 100, 300), candidate(2, 90, 300)];
        assert!(what_wins(&context(), &book, 1, &plugins).wins_now);
        assert!(
            what_wins(&context(), &book, 9, &plugins)
                .cannot_win
                .unwrap()
                .contains("not a candidate")
        );
    }
}
