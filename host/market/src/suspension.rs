//! A winner that cannot run loses the machine: the settlement of each assigned interval
//! is judged by whose fault it was unserved; after `suspend_after_failed_intervals`
//! consecutive intervals unserved by the bid's own fault the bid is suspended. Host-side
//! failures never count against a bid; they lower the machine's reliability.

use serde::{Deserialize, Serialize};

use crate::agent_protocol::{Fault, Unserved, UnservedReason};
use crate::bid::BidId;

/// Reliability is computed over this many days of intervals.
pub const RELIABILITY_WINDOW_DAYS: u64 = 7;

/// What an assigned interval turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntervalOutcome {
    /// The agent confirmed the winner running with its settings applied.
    Served,
    /// Not served, by the bid's own fault.
    BidFault(UnservedReason, String),
    /// Not served, by the host's fault (its agent's report, or no report: agent offline).
    HostFault,
}

/// Judges an assigned interval of `winner` from what the agent reported in it.
pub fn outcome(
    winner: BidId,
    served: Option<BidId>,
    unserved: Option<&Unserved>,
) -> IntervalOutcome {
    if served == Some(winner) {
        return IntervalOutcome::Served;
    }
    match unserved {
        Some(u) if u.bid == winner && u.reason.fault() == Fault::Bid => {
            IntervalOutcome::BidFault(u.reason, u.detail.clone())
        }
        _ => IntervalOutcome::HostFault,
    }
}

/// A bid's run of intervals unserved by its own fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidFailures {
    /// Consecutive assigned intervals unserved by the bid's fault.
    pub consecutive: u32,
    /// The latest reason.
    pub reason: UnservedReason,
    /// The agent's words for it.
    pub detail: String,
    /// The latest such interval.
    pub interval: u64,
}

impl BidFailures {
    /// Whether the run has reached `threshold` (0 = never suspend).
    pub fn suspends(&self, threshold: u32) -> bool {
        threshold > 0 && self.consecutive >= threshold
    }

    /// Why the bid is suspended, for its owner.
    pub fn explain(&self) -> String {
        let detail = if self.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.detail)
        };
        format!(
            "suspended after {} consecutive intervals not served by the bid's own fault: {}{detail}; \
             edit the bid (image, env or settings) to put it back in the market",
            self.consecutive,
            self.reason.describe()
        )
    }
}

/// The bid's failure run after `interval` had `outcome`: `None` when it is reset (served),
/// the previous run when the outcome does not count (host's fault).
pub fn next_failures(
    previous: Option<&BidFailures>,
    outcome: &IntervalOutcome,
    interval: u64,
) -> Option<BidFailures> {
    match outcome {
        IntervalOutcome::Served => None,
        IntervalOutcome::HostFault => previous.cloned(),
        IntervalOutcome::BidFault(reason, detail) => Some(BidFailures {
            consecutive: previous.map_or(0, |p| p.consecutive).saturating_add(1),
            reason: *reason,
            detail: detail.clone(),
            interval,
        }),
    }
}

/// Assigned and served intervals of a machine in one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    /// Intervals with a winner, except those unserved by the winner's own fault.
    pub assigned: u32,
    /// Of those, the served ones.
    pub served: u32,
}

impl Tally {
    /// Counts one settled interval (a bid's own failure is not the host's doing).
    pub fn count(&mut self, outcome: &IntervalOutcome) {
        match outcome {
            IntervalOutcome::Served => {
                self.assigned = self.assigned.saturating_add(1);
                self.served = self.served.saturating_add(1);
            }
            IntervalOutcome::HostFault => self.assigned = self.assigned.saturating_add(1),
            IntervalOutcome::BidFault(..) => {}
        }
    }
}

/// A machine's reliability at `now` from its tallies by (machine, day): served ÷ assigned
/// over the [`RELIABILITY_WINDOW_DAYS`] days up to `now`'s.
pub fn reliability_at(
    tallies: &std::collections::BTreeMap<(crate::machine::MachineId, u64), Tally>,
    machine: crate::machine::MachineId,
    now: u64,
) -> f64 {
    let today = now / 86_400;
    let first = today.saturating_sub(RELIABILITY_WINDOW_DAYS - 1);
    reliability(
        tallies
            .range((machine, first)..=(machine, today))
            .map(|(_, t)| t),
    )
}

/// served ÷ assigned over `tallies` (the window's days); 1.0 without any assigned
/// interval (a new machine has failed nobody).
pub fn reliability<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> f64 {
    let (assigned, served) = tallies.into_iter().fold((0u64, 0u64), |(a, s), t| {
        (a + u64::from(t.assigned), s + u64::from(t.served))
    });
    if assigned == 0 {
        1.0
    } else {
        served as f64 / assigned as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unserved(bid: BidId, reason: UnservedReason) -> Unserved {
        Unserved {
            bid,
            reason,
            detail: "x".into(),
        }
    }

    #[test]
    fn only_the_bid_s_own_failures_count_and_a_served_interval_resets() {
        let image = unserved(7, UnservedReason::ImageUnavailable);
        let driver = unserved(7, UnservedReason::DriverError);
        let bid_fault = outcome(7, None, Some(&image));
        assert!(matches!(bid_fault, IntervalOutcome::BidFault(..)));
        assert_eq!(outcome(7, None, Some(&driver)), IntervalOutcome::HostFault);
        assert_eq!(
            outcome(7, None, None),
            IntervalOutcome::HostFault,
            "agent offline"
        );
        assert_eq!(outcome(7, Some(7), Some(&image)), IntervalOutcome::Served);
        // Another bid's report does not count against this one.
        assert_eq!(
            outcome(7, None, Some(&unserved(8, UnservedReason::ExitedEarly))),
            IntervalOutcome::HostFault
        );
        let one = next_failures(None, &bid_fault, 10).unwrap();
        assert!(!one.suspends(2));
        let host = next_failures(Some(&one), &IntervalOutcome::HostFault, 11).unwrap();
        assert_eq!(
            host.consecutive, 1,
            "a host failure neither counts nor resets"
        );
        let two = next_failures(Some(&host), &bid_fault, 12).unwrap();
        assert!(two.suspends(2));
        assert!(!two.suspends(0), "0 never suspends");
        assert!(two.explain().contains("image is missing"));
        assert_eq!(
            next_failures(Some(&two), &IntervalOutcome::Served, 13),
            None
        );
    }

    #[test]
    fn reliability_is_served_over_assigned_without_the_bids_own_failures() {
        let mut t = Tally::default();
        t.count(&IntervalOutcome::Served);
        t.count(&IntervalOutcome::Served);
        t.count(&IntervalOutcome::HostFault);
        t.count(&IntervalOutcome::BidFault(
            UnservedReason::ExitedEarly,
            String::new(),
        ));
        assert_eq!((t.assigned, t.served), (3, 2));
        assert!((reliability([&t]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(reliability([&Tally::default()]), 1.0);
    }
}
