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
pub struct IntervalCharge {
    /// What the bid's owner pays: price per day × interval / 86,400, rounded down.
    pub total: Amount,
    /// The operator's share: `fee_bps` of the total, rounded down.
    pub fee: Amount,
    /// The host's share: the rest.
    pub payout: Amount,
}

impl IntervalCharge {
    /// The charge of one interval at `price_per_day` under `params`.
    pub fn new(price_per_day: Amount, params: &MarketParams) -> Self {
        let total = price_per_day.pro_rata(u64::from(params.billing_interval_s));
        let fee = total.share_bps(params.fee_bps);
        IntervalCharge {
            total,
            fee,
            // The fee is at most the total, so this cannot underflow.
            payout: Amount(total.0 - fee.0),
        }
    }
}

/// Who is charged for which served interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    proptest! {
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
