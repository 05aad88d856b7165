//! Counterfactual clearings: a recorded clearing judged again under other plugins
//! (a backtest's candidate, a shadow strategy) and compared with what the market decided:
//! whether the winner changes, switches, and the host's revenue of the interval — its
//! payout after the operator's fee (`gross`) and that minus the energy of the winner's
//! power limits at the host's electricity price (`net`), counting the interval as served
//! whole at the winner's price.

use serde::Serialize;

use crate::account::AccountId;
use crate::bid::BidId;
use crate::billing::IntervalCharge;
use crate::clearing::{Decision, judge};
use crate::economics::energy_floor_units;
use crate::machine::MachineId;
use crate::money::Amount;
use crate::plugin_input::PluginInput;
use crate::plugin_traits::Plugins;

/// Signed CLORE base units (a net revenue may be negative), shown as decimal CLORE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Units(pub i128);

impl Serialize for Units {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let number: serde_json::Number = self
            .to_string()
            .parse()
            .map_err(serde::ser::Error::custom)?;
        number.serialize(s)
    }
}

impl std::fmt::Display for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let unit = u128::from(crate::economics::UNITS_PER_CLORE);
        write!(f, "{sign}{}.{:08}", abs / unit, abs % unit)
    }
}

impl std::ops::AddAssign for Units {
    fn add_assign(&mut self, other: Units) {
        self.0 = self.0.saturating_add(other.0);
    }
}

/// Revenue of the live market and of the candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Revenue {
    /// The hosts' payout, live.
    pub live_gross: Units,
    /// The hosts' payout, candidate.
    pub candidate_gross: Units,
    /// Payout minus energy, live.
    pub live_net: Units,
    /// Payout minus energy, candidate.
    pub candidate_net: Units,
}

impl Revenue {
    /// Adds `other` to this.
    pub fn add(&mut self, other: &Revenue) {
        self.live_gross += other.live_gross;
        self.candidate_gross += other.candidate_gross;
        self.live_net += other.live_net;
        self.candidate_net += other.candidate_net;
    }
}

/// One side's winner of a clearing.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Side {
    owner: AccountId,
    price: u64,
    power_w: u32,
}

/// One clearing judged again.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// The machine.
    pub machine: MachineId,
    /// Its host.
    pub host: AccountId,
    /// Whether the winner would change.
    pub changed: bool,
    /// Whether the machine switched, live.
    pub switched_live: bool,
    /// Whether it would switch, candidate.
    pub switched_candidate: bool,
    /// Revenue of this clearing.
    pub revenue: Revenue,
    /// The live winner's owner and the candidate's.
    pub winners: (Option<AccountId>, Option<AccountId>),
    /// The live winning bid and the candidate's.
    pub bids: (Option<BidId>, Option<BidId>),
    /// Candidate faults.
    pub faults: u64,
}

/// Judges one recorded clearing again under `plugins` and compares it with the record;
/// `fee_bps` is the operator's fee.
pub fn compare(
    decision: &Decision,
    input: &PluginInput,
    plugins: &dyn Plugins,
    fee_bps: u32,
) -> Compared {
    let judged = judge(&input.context, &input.candidates, plugins);
    let side = |bid: Option<u64>| {
        let id = bid?;
        let c = input.candidates.iter().find(|c| c.id == id)?;
        Some(Side {
            owner: c.owner_id,
            price: c.price_per_day,
            power_w: c.total_power_limit_w,
        })
    };
    let live = side(decision.winner.map(|w| w.bid));
    let candidate = side(judged.winner);
    let context = &input.context;
    let (live_gross, live_net) = revenue_of(live, context, fee_bps);
    let (candidate_gross, candidate_net) = revenue_of(candidate, context, fee_bps);
    Compared {
        machine: context.id,
        host: context.host_id,
        changed: decision.winner.map(|w| w.bid) != judged.winner,
        switched_live: decision.switched,
        switched_candidate: judged.winner != decision.previous,
        revenue: Revenue {
            live_gross,
            candidate_gross,
            live_net,
            candidate_net,
        },
        winners: (live.map(|s| s.owner), candidate.map(|s| s.owner)),
        bids: (decision.winner.map(|w| w.bid), judged.winner),
        faults: judged.faults.len() as u64,
    }
}

/// A winner's interval as the host's payout and that net of energy.
fn revenue_of(side: Option<Side>, context: &crate::MachineContext, fee_bps: u32) -> (Units, Units) {
    let Some(s) = side else {
        return (Units(0), Units(0));
    };
    let interval_s = u64::from(context.billing_interval_s);
    let payout = IntervalCharge::for_seconds(Amount(s.price), interval_s, fee_bps).payout;
    let energy_day = energy_floor_units(
        u64::from(s.power_w),
        context.energy_price_usd_per_kwh,
        context.clore_usd,
    )
    .unwrap_or(u64::MAX);
    let energy = Amount(energy_day).pro_rata(interval_s);
    (
        Units(i128::from(payout.0)),
        Units(i128::from(payout.0) - i128::from(energy.0)),
    )
}
