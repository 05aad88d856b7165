//! Batched intake: concurrent requests of one kind (new bids) queue up, and whichever
//! caller takes the writer lock first writes everything queued in one batch, then hands
//! each caller its own answer.
//!
//! Group commit (`group_commit`) shares one flush between writers, but each writer still
//! applies its own batch under the writer lock, one after another; sled's apply of a small
//! batch is ~20 µs alone and ~150 µs when 32 writers contend with the flushes, which made
//! the lock, not the disk, the bound of bid intake. Here a leader drains the queue under
//! the lock, decides every request in queue order as a sequential pass would, and applies
//! one batch: N requests cost one apply and one flush.
//!
//! One leader at a time: a caller that finds no leader leads; the others wait for their
//! answer, and a leader that finishes hands the lead to the first request still queued, so
//! the next batch holds everything that queued during this one. A leader that panics
//! answers every request it took with the `failed` answer and still hands the lead on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The queue of one kind of request, answered with `Res`.
pub struct Intake<Req, Res> {
    queue: Mutex<Queue<Req, Res>>,
    batches: AtomicU64,
    requests: AtomicU64,
}

struct Queue<Req, Res> {
    items: Vec<(Req, Arc<Slot<Res>>)>,
    /// A caller is leading (or has been handed the lead).
    leading: bool,
}

impl<Req, Res> Default for Intake<Req, Res> {
    fn default() -> Self {
        Intake {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                leading: false,
            }),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }
}

/// How many batches the intake wrote and how many requests they held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Batches decided by a leader.
    pub batches: u64,
    /// Requests in them.
    pub requests: u64,
}

/// Where one caller waits for its answer or for the lead.
struct Slot<Res> {
    state: Mutex<SlotState<Res>>,
    changed: Condvar,
}

enum SlotState<Res> {
    /// In the queue, waiting.
    Queued,
    /// In the queue, and its caller is to lead the next batch.
    Lead,
    /// Taken by a leader, not answered yet.
    Taken,
    /// Answered.
    Done(Res),
    /// The answer was handed to the caller.
    Collected,
}

/// What a waiting caller is told.
enum Wake<Res> {
    Lead,
    Answer(Res),
}

impl<Res> Slot<Res> {
    fn state(&self) -> MutexGuard<'_, SlotState<Res>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, next: SlotState<Res>) {
        *self.state() = next;
        self.changed.notify_all();
    }

    /// Waits until this caller is to lead or has its answer.
    fn wait(&self) -> Wake<Res> {
        let mut state = self.state();
        loop {
            match std::mem::replace(&mut *state, SlotState::Collected) {
                SlotState::Lead => {
                    *state = SlotState::Queued;
                    return Wake::Lead;
                }
                SlotState::Done(answer) => return Wake::Answer(answer),
                waiting => {
                    *state = waiting;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    /// The answer, once set.
    fn take_answer(&self) -> Option<Res> {
        match std::mem::replace(&mut *self.state(), SlotState::Collected) {
            SlotState::Done(answer) => Some(answer),
            _ => None,
        }
    }
}

/// Ends a leader's turn, also when it panics: answers every request it took and left
/// unanswered with `failed()`, then hands the lead to the first queued request (or
/// clears it).
struct Turn<'a, Req, Res, F: Fn() -> Res> {
    intake: &'a Intake<Req, Res>,
    slots: Vec<Arc<Slot<Res>>>,
    failed: &'a F,
}

impl<Req, Res, F: Fn() -> Res> Drop for Turn<'_, Req, Res, F> {
    fn drop(&mut self) {
        for slot in self.slots.drain(..) {
            slot.set(SlotState::Done((self.failed)()));
        }
        let mut queue = self.intake.queue();
        match queue.items.first() {
            Some((_, next)) => next.set(SlotState::Lead),
            None => queue.leading = false,
        }
    }
}

impl<Req, Res> Intake<Req, Res> {
    /// Queues `request` and returns its answer. The caller that leads takes the writer
    /// lock with `lock`, drains the queue and decides the whole batch with `lead` (which
    /// gets the lock's guard and the requests in queue order, and returns one answer per
    /// request, in the same order).
    pub fn submit<G, F>(
        &self,
        request: Req,
        lock: impl Fn() -> G,
        lead: impl Fn(G, Vec<Req>) -> Vec<Res>,
        failed: F,
    ) -> Res
    where
        F: Fn() -> Res,
    {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Queued),
            changed: Condvar::new(),
        });
        let leads_now = {
            let mut queue = self.queue();
            queue.items.push((request, Arc::clone(&slot)));
            !std::mem::replace(&mut queue.leading, true)
        };
        if !leads_now && let Wake::Answer(answer) = slot.wait() {
            return answer;
        }
        let guard = lock();
        let (requests, slots): (Vec<Req>, Vec<Arc<Slot<Res>>>) =
            std::mem::take(&mut self.queue().items).into_iter().unzip();
        for s in &slots {
            *s.state() = SlotState::Taken;
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let mut turn = Turn {
            intake: self,
            slots,
            failed: &failed,
        };
        let mut answers = lead(guard, requests).into_iter();
        for s in turn.slots.drain(..) {
            s.set(SlotState::Done(answers.next().unwrap_or_else(&failed)));
        }
        drop(turn);
        slot.take_answer().unwrap_or_else(failed)
    }

    /// Batches and requests so far.
    pub fn stats(&self) -> IntakeStats {
        IntakeStats {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<Req, Res>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn concurrent_requests_are_decided_in_batches_and_each_gets_its_own_answer() {
        let intake: Intake<u64, u64> = Intake::default();
        let writer = Mutex::new(0u64);
        let threads = 16;
        let per_thread = 200;
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (intake, writer) = (&intake, &writer);
                scope.spawn(move || {
                    for n in 0..per_thread {
                        let request = t * 1_000_000 + n;
                        let answer = intake.submit(
                            request,
                            || writer.lock().unwrap(),
                            |mut decided, requests| {
                                // A slow write, so that others queue behind it.
                                std::thread::sleep(Duration::from_micros(200));
                                *decided += requests.len() as u64;
                                requests.iter().map(|r| r * 2).collect()
                            },
                            || u64::MAX,
                        );
                        assert_eq!(answer, request * 2);
                    }
                });
            }
        });
        let stats = intake.stats();
        assert_eq!(stats.requests, threads * per_thread);
        assert_eq!(*writer.lock().unwrap(), threads * per_thread);
        assert!(
            stats.batches < stats.requests / 2,
            "{stats:?}: requests were not batched"
        );
    }

    #[test]
    fn a_leader_that_panics_answers_the_requests_it_took_with_the_failure() {
        let intake: Intake<u64, Result<u64, String>> = Intake::default();
        let writer = Mutex::new(());
        let lock = || writer.lock().unwrap_or_else(|p| p.into_inner());
        let failed = || Err("the intake failed".to_owned());
        let held = lock();
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let callers: Vec<_> = (1..=2)
                .map(|r| {
                    let (intake, lock) = (&intake, &lock);
                    scope.spawn(move || {
                        intake.submit(r, lock, |_, _: Vec<u64>| panic!("bug"), failed)
                    })
                })
                .collect();
            // Both queued behind the held lock: whichever leads takes both.
            while intake.queue().items.len() < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(held);
            callers.into_iter().map(|c| c.join()).collect()
        });
        let panicked = outcomes.iter().filter(|o| o.is_err()).count();
        let failed_answers = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Err(e)) if e == "the intake failed"))
            .count();
        assert_eq!((panicked, failed_answers), (1, 1), "{outcomes:?}");
        // The intake still works.
        let next = intake.submit(
            3,
            lock,
            |_, requests| requests.into_iter().map(Ok).collect(),
            failed,
        );
        assert_eq!(next, Ok(3));
    }
}
