//! Billing a served interval: pay-as-bid, pro rata, with the operator's fee taken from
//! the host's side.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::bid::BidId;
use crate::ledger::{Party, Transfer, TransferKind, charge_id, fee_id};
use crate::machine::MachineId;
use crate::money::Amount;
use crate::params::MarketParams;

/// What one interval of a bid costs and how it splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntervalCharge {
    /// What the bid's owner pays: price per day × interval / 86,400, rounded down.
    pub total: Amount,
    /// The operator's share: `fee_bps` of the total, rounded down.
    pub fee: Amount,
    /// The host's share: the rest.
    pub payout: Amount,
}

impl IntervalCharge {
    /// The charge of one whole interval at `price_per_day` under `params` (what a winner
    /// commits for the interval).
    pub fn new(price_per_day: Amount, params: &MarketParams) -> Self {
        IntervalCharge::for_seconds(
            price_per_day,
            u64::from(params.billing_interval_s),
            params.fee_bps,
        )
    }

    /// The charge of `seconds` served at `price_per_day`, with `fee_bps` of it for the
    /// operator; everything rounded down to a base unit.
    pub fn for_seconds(price_per_day: Amount, seconds: u64, fee_bps: u32) -> Self {
        let total = price_per_day.pro_rata(seconds);
        let fee = total.share_bps(fee_bps);
        IntervalCharge {
            total,
            fee,
            // The fee is at most the total, so this cannot underflow.
            payout: Amount(total.0 - fee.0),
        }
    }
}

/// The time a bid's workload was confirmed running with its settings applied during one
/// interval, from the agent's heartbeats. Each confirmation at `t` vouches for
/// `[t, t + bound)` (the agent confirms again within its heartbeat period); the served
/// time is the length of the union of those spans within the interval, so it never
/// exceeds the interval and never counts a second twice. A confirmation from the
/// interval before vouches for the start of this one in the same way, so a workload that
/// keeps running is served from the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServedTime {
    /// The bid confirmed running.
    pub bid: BidId,
    /// Seconds served so far.
    pub seconds: u64,
    /// The end of the time counted so far, unix seconds.
    pub covered_until: u64,
}

impl ServedTime {
    /// Nothing served yet of `bid`.
    pub fn new(bid: BidId) -> Self {
        ServedTime {
            bid,
            seconds: 0,
            covered_until: 0,
        }
    }

    /// Counts a confirmation at `at` for the interval `[start, end)`, vouching for
    /// `bound_s` seconds; confirmations must come in time order.
    pub fn confirm(&mut self, at: u64, start: u64, end: u64, bound_s: u64) {
        let from = at.max(start).max(self.covered_until);
        let until = at.saturating_add(bound_s).min(end);
        if until > from {
            self.seconds += until - from;
            self.covered_until = until;
        }
    }
}

/// Who is charged for which served interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServedInterval {
    /// The machine that served.
    pub machine: MachineId,
    /// Its host, paid the payout.
    pub host: AccountId,
    /// The interval served.
    pub interval: u64,
    /// The bid that held the machine.
    pub bid: BidId,
    /// The bid's owner, who pays.
    pub owner: AccountId,
}

/// The transfers of a served interval: the owner pays the host the payout and the
/// operator's fee account the fee. Zero legs are left out. Their ids derive from
/// (machine, interval), so booking them twice is impossible.
pub fn charge_transfers(
    served: &ServedInterval,
    charge: IntervalCharge,
    fee_account: AccountId,
    at: u64,
) -> Vec<Transfer> {
    let leg = |id: String, to: AccountId, amount: Amount, kind| Transfer {
        id,
        from: Party::Account(served.owner),
        to: Party::Account(to),
        amount,
        kind,
        interval: Some(served.interval),
        bid: Some(served.bid),
        machine: Some(served.machine),
        at,
    };
    let mut transfers = Vec::with_capacity(2);
    if charge.payout > Amount::ZERO {
        let id = charge_id(served.machine, served.interval);
        transfers.push(leg(id, served.host, charge.payout, TransferKind::Charge));
    }
    if charge.fee > Amount::ZERO {
        let id = fee_id(served.machine, served.interval);
        transfers.push(leg(id, fee_account, charge.fee, TransferKind::Fee));
    }
    transfers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::apply;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn one_minute_of_100_clore_a_day_with_the_default_fee() {
        let charge = IntervalCharge::new(Amount::clore(100), &MarketParams::default());
        assert_eq!(charge.total, Amount(6_944_444));
        assert_eq!(charge.fee, Amount(173_611));
        assert_eq!(charge.payout, Amount(6_770_833));
    }

    #[test]
    fn served_time_counts_confirmed_seconds_once() {
        // Interval [1000, 1060), confirmations vouch for 10 s.
        let mut s = ServedTime::new(7);
        s.confirm(1050, 1000, 1060, 10); // a late start: [1050, 1060)
        assert_eq!(s.seconds, 10);
        let mut s = ServedTime::new(7);
        s.confirm(995, 1000, 1060, 10); // the interval before vouches for [1000, 1005)
        for t in (1005..1060).step_by(5) {
            s.confirm(t, 1000, 1060, 10);
        }
        assert_eq!(
            s.seconds, 60,
            "a running workload is served the whole interval"
        );
        let mut s = ServedTime::new(7);
        s.confirm(1000, 1000, 1060, 10);
        s.confirm(1030, 1000, 1060, 10); // a 20 s silence in between is not counted
        assert_eq!(s.seconds, 20);
        // 100 CLORE/day for 20 s with the default fee.
        let c = IntervalCharge::for_seconds(Amount::clore(100), 20, 250);
        assert_eq!(c.total, Amount(2_314_814));
        assert_eq!(c.fee.checked_add(c.payout).unwrap(), c.total);
    }

    proptest! {
        #[test]
        fn the_charge_never_exceeds_price_times_served_time(
            price in 10_000u64..500_000_000_000,
            length in 10u64..=600,
            bound in 1u64..=60,
            confirmations in proptest::collection::vec(0u64..700, 0..40),
            fee_bps in 0u32..=5000,
        ) {
            let start = 10_000u64;
            let end = start + length;
            let mut times: Vec<u64> = confirmations.iter().map(|c| start - 60 + c).collect();
            times.sort_unstable();
            let mut s = ServedTime::new(1);
            for t in &times {
                s.confirm(*t, start, end, bound);
            }
            // Never more than the interval, nor more than the spans vouched for.
            prop_assert!(s.seconds <= length);
            let vouched: u64 = (start..end)
                .filter(|sec| times.iter().any(|t| *t <= *sec && *sec < t + bound))
                .count() as u64;
            prop_assert_eq!(s.seconds, vouched);
            let charge = IntervalCharge::for_seconds(Amount(price), s.seconds, fee_bps);
            // price × served / 86400, rounded down: never more.
            prop_assert!(u128::from(charge.total.0) * 86_400 <= u128::from(price) * u128::from(s.seconds));
            prop_assert_eq!(charge.fee.checked_add(charge.payout).unwrap(), charge.total);
        }

        #[test]
        fn debits_equal_credits_exactly(
            price in 10_000u64..500_000_000_000,
            interval in 10u32..=3600,
            fee_bps in 0u32..=5000,
        ) {
            let params = MarketParams { billing_interval_s: interval, fee_bps, clore_usd: 0.02 };
            let charge = IntervalCharge::new(Amount(price), &params);
            let served = ServedInterval { machine: 1, host: 2, interval: 9, bid: 3, owner: 4 };
            let mut balances = BTreeMap::from([(4, charge.total)]);
            for t in charge_transfers(&served, charge, 5, 0) {
                apply(&mut balances, &t).unwrap();
            }
            let owner = balances.get(&4).copied().unwrap_or_default();
            let host = balances.get(&2).copied().unwrap_or_default();
            let operator = balances.get(&5).copied().unwrap_or_default();
            prop_assert_eq!(owner, Amount::ZERO);
            prop_assert_eq!(host.checked_add(operator).unwrap(), charge.total);
            prop_assert_eq!(operator, charge.fee);
        }
    }
}
