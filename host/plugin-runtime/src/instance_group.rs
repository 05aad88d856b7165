//! Instance groups: a run of plugin calls on one thread in which each plugin version
//! answers from one instance, made fresh for the group and dropped at its end.
//!
//! Outside a group every call gets a fresh instance. The clearing groups the calls of a
//! fixed run of machines (the machines of one decision chunk, in machine order), so a
//! plugin that keeps state sees the same sequence of calls in every tick and gives the
//! same answers, while the cost of an instance is paid once per group instead of once per
//! machine. What a plugin keeps never crosses a group, a tick or a thread.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The open group's instances by sandbox id; `None` outside a group.
    static GROUP: RefCell<Option<HashMap<u64, Box<dyn Any>>>> = const { RefCell::new(None) };
}

/// A process-wide unique id for a sandbox, so that a group never hands one plugin's
/// instance to another (addresses of dropped sandboxes are reused).
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `calls` as one group on this thread. A group opened inside another joins it.
/// The group's instances are dropped when `calls` returns or unwinds.
pub fn in_group<R>(calls: impl FnOnce() -> R) -> R {
    /// Closes the group it opened, also on unwinding.
    struct Close(bool);
    impl Drop for Close {
        fn drop(&mut self) {
            if self.0 {
                // Taken out first: instances are dropped with the borrow released.
                let instances = GROUP.with(|g| g.borrow_mut().take());
                drop(instances);
            }
        }
    }
    let opened = GROUP.with(|g| {
        let mut g = g.borrow_mut();
        let fresh = g.is_none();
        if fresh {
            *g = Some(HashMap::new());
        }
        fresh
    });
    let _close = Close(opened);
    calls()
}

/// The open group's instance of sandbox `id`, taken out for a call; `None` when no group
/// is open or the group has none yet.
pub(crate) fn take<T: 'static>(id: u64) -> Option<T> {
    let kept = GROUP.with(|g| g.borrow_mut().as_mut()?.remove(&id))?;
    kept.downcast::<T>().ok().map(|b| *b)
}

/// Keeps `instance` of sandbox `id` for the group's next call; without an open group it
/// is dropped.
pub(crate) fn keep<T: 'static>(id: u64, instance: T) {
    let refused = GROUP.with(|g| match g.borrow_mut().as_mut() {
        Some(group) => {
            group.insert(id, Box::new(instance));
            None
        }
        None => Some(instance),
    });
    drop(refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_live_for_their_group_only() {
        keep(1, 10u32);
        assert_eq!(take::<u32>(1), None, "no group: nothing is kept");
        in_group(|| {
            assert_eq!(take::<u32>(1), None);
            keep(1, 10u32);
            // A nested group joins the open one.
            in_group(|| assert_eq!(take::<u32>(1), Some(10)));
            keep(1, 11u32);
            assert_eq!(take::<u64>(1), None, "another type is not handed out");
        });
        in_group(|| assert_eq!(take::<u32>(1), None, "a new group starts empty"));
    }

    #[test]
    fn a_group_is_closed_when_its_calls_unwind() {
        let unwound = std::panic::catch_unwind(|| {
            in_group(|| {
                keep(2, 5u8);
                panic!("a bug of ours");
            })
        });
        assert!(unwound.is_err());
        keep(2, 6u8);
        assert_eq!(take::<u8>(2), None, "the group was closed");
    }
}
