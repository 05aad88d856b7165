//! The billing interval clock: which interval a moment belongs to, when intervals start,
//! and how a new interval length takes effect at the next boundary without overlapping
//! or skipping an interval.
//!
//! Intervals are numbered consecutively for the market's whole life. The clock is a list
//! of epochs, each a run of intervals of one length starting at a boundary; changing the
//! length opens a new epoch at the next boundary, so interval numbers keep increasing and
//! every charge id `(machine, interval)` stays unique.

use serde::{Deserialize, Serialize};

/// A run of intervals of one length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Epoch {
    /// Number of the epoch's first interval.
    pub first_interval: u64,
    /// Unix second at which that interval starts.
    pub start: u64,
    /// Length of each interval, seconds (at least 1).
    pub length_s: u64,
}

/// The market's interval clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntervalClock {
    /// Epochs, oldest first; never empty.
    pub epochs: Vec<Epoch>,
}

impl IntervalClock {
    /// The clock of a market that has always had intervals of `length_s` seconds,
    /// numbered from the unix epoch (interval `n` starts at `n × length_s`).
    pub fn uniform(length_s: u32) -> Self {
        IntervalClock {
            epochs: vec![Epoch {
                first_interval: 0,
                start: 0,
                length_s: u64::from(length_s.max(1)),
            }],
        }
    }

    fn last(&self) -> Epoch {
        // `epochs` is never empty (constructors and `rebase` keep one).
        self.epochs.last().copied().unwrap_or(Epoch {
            first_interval: 0,
            start: 0,
            length_s: 60,
        })
    }

    /// The epoch that holds interval `interval`.
    fn epoch_of_interval(&self, interval: u64) -> Epoch {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.first_interval <= interval)
            .copied()
            .unwrap_or_else(|| self.epochs.first().copied().unwrap_or(self.last()))
    }

    /// The interval that unix second `now` falls in.
    pub fn interval_at(&self, now: u64) -> u64 {
        let epoch = self
            .epochs
            .iter()
            .rev()
            .find(|e| e.start <= now)
            .copied()
            .unwrap_or_else(|| self.epochs.first().copied().unwrap_or(self.last()));
        epoch.first_interval + now.saturating_sub(epoch.start) / epoch.length_s
    }

    /// When interval `interval` starts, unix seconds.
    pub fn start_of(&self, interval: u64) -> u64 {
        let e = self.epoch_of_interval(interval);
        e.start
            .saturating_add((interval.saturating_sub(e.first_interval)).saturating_mul(e.length_s))
    }

    /// How long interval `interval` lasts, seconds.
    pub fn length_of(&self, interval: u64) -> u64 {
        self.epoch_of_interval(interval).length_s
    }

    /// The current length of intervals, seconds.
    pub fn length_s(&self) -> u64 {
        self.last().length_s
    }

    /// The first boundary after `now`: when the next interval starts.
    pub fn next_boundary(&self, now: u64) -> u64 {
        self.start_of(self.interval_at(now) + 1)
    }

    /// The clock with intervals of `length_s` seconds from interval `from` on (which must
    /// not have started before the current epoch): a new epoch starting where `from`
    /// starts under the current clock. Returns `None` when nothing changes.
    pub fn rebase(&self, from: u64, length_s: u32) -> Option<IntervalClock> {
        let length_s = u64::from(length_s.max(1));
        let last = self.last();
        if last.length_s == length_s || from < last.first_interval {
            return None;
        }
        let start = self.start_of(from);
        let mut epochs = self.epochs.clone();
        if last.first_interval == from {
            epochs.pop();
        }
        epochs.push(Epoch {
            first_interval: from,
            start,
            length_s,
        });
        Some(IntervalClock { epochs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_uniform_clock_numbers_intervals_from_the_epoch() {
        let c = IntervalClock::uniform(60);
        assert_eq!(c.interval_at(119), 1);
        assert_eq!(c.interval_at(120), 2);
        assert_eq!(c.start_of(2), 120);
        assert_eq!(c.next_boundary(120), 180);
        assert_eq!(c.length_of(5), 60);
    }

    #[test]
    fn a_new_length_starts_at_the_next_boundary_and_numbers_keep_rising() {
        // 10 s intervals; at t = 1005 (interval 100) the operator asks for 20 s; the
        // engine rebases at the boundary t = 1010, where interval 101 starts.
        let c = IntervalClock::uniform(10);
        assert_eq!(c.interval_at(1005), 100);
        let c = c.rebase(101, 20).unwrap();
        assert_eq!(c.start_of(101), 1010);
        assert_eq!(c.length_of(100), 10);
        assert_eq!(c.length_of(101), 20);
        assert_eq!(c.interval_at(1029), 101);
        assert_eq!(c.interval_at(1030), 102);
        assert_eq!(c.interval_at(1009), 100);
        // Back to 10 s from interval 103 (t = 1050).
        let c = c.rebase(103, 10).unwrap();
        assert_eq!(c.start_of(103), 1050);
        assert_eq!(c.interval_at(1060), 104);
        assert_eq!(c.start_of(102), 1030);
        assert!(c.rebase(104, 10).is_none(), "no change, no new epoch");
    }

    proptest! {
        #[test]
        fn intervals_tile_time_without_gaps_or_overlaps(
            changes in proptest::collection::vec((1u64..50, 10u32..100), 0..6),
        ) {
            let mut c = IntervalClock::uniform(30);
            let mut at = 10_000u64;
            for (after, length) in changes {
                at += after;
                let next = c.interval_at(at) + 1;
                if let Some(rebased) = c.rebase(next, length) {
                    c = rebased;
                }
            }
            let mut previous = c.interval_at(9_000);
            for t in 9_000..at + 500 {
                let i = c.interval_at(t);
                prop_assert!(i == previous || i == previous + 1, "t={t}: {previous} -> {i}");
                prop_assert!(c.start_of(i) <= t && t < c.start_of(i) + c.length_of(i));
                previous = i;
            }
        }
    }
}
