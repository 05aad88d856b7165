//! The time each machine's winner was confirmed running, accumulated from heartbeats in
//! memory and written to the store in batches: at the first confirmation of an interval
//! at once, then every few seconds and before each boundary. A crash loses at most the
//! last few seconds of confirmations, which are then not charged (never overcharged).

use std::collections::HashMap;
use std::sync::Mutex;

use gigaspot_market::bid::BidId;
use gigaspot_market::billing::ServedTime;
use gigaspot_market::machine::MachineId;

/// What is known of one machine's confirmations.
#[derive(Debug, Default)]
struct Tracker {
    /// The last confirmation: which bid, when.
    last: Option<(BidId, u64)>,
    /// The interval being accumulated and its served time.
    current: Option<(u64, ServedTime)>,
    /// Changed since it was last written.
    dirty: bool,
}

/// The served-time accumulators of every machine.
#[derive(Debug, Default)]
pub struct ServedTimes {
    machines: Mutex<HashMap<MachineId, Tracker>>,
}

/// One confirmation: the agent reported `bid` running with its settings applied at `at`,
/// in `interval` = `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Confirmation {
    /// The machine.
    pub machine: MachineId,
    /// The interval it belongs to.
    pub interval: u64,
    /// When the interval starts, unix seconds.
    pub start: u64,
    /// When it ends.
    pub end: u64,
    /// The bid running.
    pub bid: BidId,
    /// When it was confirmed.
    pub at: u64,
    /// How long one confirmation vouches for, seconds.
    pub bound_s: u64,
}

impl ServedTimes {
    /// Counts a confirmation. `stored` loads what the store holds for the interval; it is
    /// called only when this process has no accumulator for it yet (its first confirmation
    /// here, e.g. after a restart), so repeated heartbeats read nothing. Returns the served
    /// time to write at once when this is the interval's first confirmation here.
    pub fn confirm<E>(
        &self,
        c: Confirmation,
        stored: impl FnOnce() -> Result<Option<ServedTime>, E>,
    ) -> Result<Option<ServedTime>, E> {
        let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        let tracker = machines.entry(c.machine).or_default();
        let fresh = !matches!(tracker.current, Some((i, s)) if i == c.interval && s.bid == c.bid);
        if fresh {
            let mut served = stored()?
                .filter(|s| s.bid == c.bid)
                .unwrap_or_else(|| ServedTime::new(c.bid));
            // A confirmation just before the boundary vouches for the interval's start.
            if let Some((bid, at)) = tracker.last
                && bid == c.bid
                && at < c.start
            {
                served.confirm(at, c.start, c.end, c.bound_s);
            }
            tracker.current = Some((c.interval, served));
        }
        if let Some((_, served)) = &mut tracker.current {
            served.confirm(c.at, c.start, c.end, c.bound_s);
        }
        tracker.last = Some((c.bid, c.at));
        tracker.dirty = !fresh;
        Ok(if fresh {
            tracker.current.map(|(_, s)| s)
        } else {
            None
        })
    }

    /// The accumulators changed since they were last taken, to write.
    pub fn take_dirty(&self) -> Vec<(MachineId, u64, ServedTime)> {
        let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        machines
            .iter_mut()
            .filter(|(_, t)| t.dirty)
            .filter_map(|(machine, t)| {
                t.dirty = false;
                t.current
                    .map(|(interval, served)| (*machine, interval, served))
            })
            .collect()
    }

    /// Puts entries whose write failed back, to be written next time.
    pub fn restore_dirty(&self, entries: &[(MachineId, u64, ServedTime)]) {
        let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        for (machine, interval, _) in entries {
            if let Some(t) = machines.get_mut(machine)
                && t.current.is_some_and(|(i, _)| i == *interval)
            {
                t.dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A confirmation whose stored time is `stored`.
    fn confirm(
        times: &ServedTimes,
        c: Confirmation,
        stored: Option<ServedTime>,
    ) -> Option<ServedTime> {
        times
            .confirm(c, || Ok::<_, std::convert::Infallible>(stored))
            .unwrap()
    }

    fn at(machine: u64, interval: u64, start: u64, t: u64) -> Confirmation {
        Confirmation {
            machine,
            interval,
            start,
            end: start + 60,
            bid: 9,
            at: t,
            bound_s: 10,
        }
    }

    #[test]
    fn the_first_confirmation_is_written_at_once_the_rest_in_batches() {
        let times = ServedTimes::default();
        let first = confirm(&times, at(1, 5, 300, 320), None).unwrap();
        assert_eq!(first.seconds, 10);
        assert!(times.take_dirty().is_empty());
        assert!(confirm(&times, at(1, 5, 300, 325), None).is_none());
        let dirty = times.take_dirty();
        assert_eq!(
            dirty,
            vec![(
                1,
                5,
                ServedTime {
                    bid: 9,
                    seconds: 15,
                    covered_until: 335
                }
            )]
        );
        confirm(&times, at(1, 5, 300, 355), None);
        // The next interval starts covered by the last confirmation (355 + 10 = 365), then
        // 362 vouches up to 372.
        let next = confirm(&times, at(1, 6, 360, 362), None).unwrap();
        assert_eq!(next.seconds, 12);
        // After a restart the stored time is the starting point.
        let restarted = ServedTimes::default();
        let resumed = confirm(&restarted, at(1, 6, 360, 380), Some(next)).unwrap();
        assert_eq!(resumed.seconds, 22);
    }
}
