//! Group commit: writers that applied their batches wait for one flush that covers them
//! all, instead of one flush each.
//!
//! Each applied write takes a ticket, in apply order. A writer whose ticket is not yet
//! durable either waits for the flush in progress or, when none is running, becomes the
//! leader: it flushes for every write applied so far and wakes the others. No thread of
//! its own; a flush that fails is reported to its leader, and the writers it would have
//! covered try again as leaders of their own.

use std::sync::{Condvar, Mutex, MutexGuard};

/// Tickets of applied writes and how far they are durable.
#[derive(Default)]
pub struct GroupCommit {
    progress: Mutex<Progress>,
    flushed: Condvar,
}

#[derive(Default)]
struct Progress {
    /// Ticket of the last applied write.
    applied: u64,
    /// Every ticket up to this one is on disk.
    durable: u64,
    /// A leader is flushing.
    flushing: bool,
}

impl GroupCommit {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a write that was just applied (call it before the next write is applied,
    /// e.g. under the writer lock) and returns its ticket.
    pub fn applied(&self) -> u64 {
        let mut progress = self.progress();
        progress.applied += 1;
        progress.applied
    }

    /// The ticket of the last applied write.
    pub fn last_applied(&self) -> u64 {
        self.progress().applied
    }

    /// Returns once `ticket` is durable, flushing with `flush` when no flush that covers
    /// it is running.
    pub fn wait_durable<E>(&self, ticket: u64, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut progress = self.progress();
        loop {
            if progress.durable >= ticket {
                return Ok(());
            }
            if progress.flushing {
                progress = self
                    .flushed
                    .wait(progress)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: everything applied before the flush starts is covered by it.
            progress.flushing = true;
            let target = progress.applied;
            drop(progress);
            let result = flush();
            progress = self.progress();
            progress.flushing = false;
            if result.is_ok() {
                progress.durable = progress.durable.max(target);
            }
            self.flushed.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn concurrent_writers_share_flushes_and_each_returns_durable() {
        let group = GroupCommit::default();
        let flushes = AtomicU64::new(0);
        // What the "disk" holds: the applied count at the start of the last flush.
        let on_disk = AtomicU64::new(0);
        let writers = 16;
        let per_writer = 50;
        std::thread::scope(|scope| {
            for _ in 0..writers {
                scope.spawn(|| {
                    for _ in 0..per_writer {
                        let ticket = group.applied();
                        group
                            .wait_durable(ticket, || {
                                let covered = group.last_applied();
                                std::thread::sleep(Duration::from_millis(1));
                                on_disk.fetch_max(covered, Ordering::SeqCst);
                                flushes.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, ()>(())
                            })
                            .unwrap();
                        assert!(on_disk.load(Ordering::SeqCst) >= ticket);
                    }
                });
            }
        });
        let flushes = flushes.load(Ordering::SeqCst);
        assert!(flushes >= 1);
        assert!(
            flushes < writers * per_writer,
            "{flushes} flushes for {} writes",
            writers * per_writer
        );
    }

    #[test]
    fn a_failed_flush_is_reported_and_the_next_one_retries() {
        let group = GroupCommit::default();
        let ticket = group.applied();
        assert_eq!(
            group.wait_durable(ticket, || Err("disk full")),
            Err("disk full")
        );
        assert_eq!(group.wait_durable(ticket, || Ok::<_, &str>(())), Ok(()));
        // Durable tickets return without flushing again.
        assert_eq!(group.wait_durable(ticket, || Err("not called")), Ok(()));
    }
}
