//! Work that no request waits on runs below the requests' priority.
//!
//! A snapshot build serializes tens of megabytes on every core; at the same priority as the
//! async workers it holds readers and writers in the run queue for its whole length (on a
//! 2-core machine, `get_gigaspot`'s p99 under write load was mostly time queued behind
//! builds). Run on a thread that called [`lower_priority`], the kernel's scheduler gives
//! the request threads the cores first and the build the rest.

/// The nice value of background threads (0 is the default, 19 the lowest priority).
pub const NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`NICE`] (on Linux the nice value is
/// per thread, and threads it starts inherit it). A thread cannot raise its priority back
/// without privilege, so call this only on a thread made for the background work, never
/// on a pooled one. Best effort: elsewhere than Linux, or if refused, nothing changes.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: `gettid` and `setpriority` take plain integers and touch no memory of ours.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        // `getpriority` answers the nice value itself (-1 is a valid answer, not an error).
        if libc::getpriority(libc::PRIO_PROCESS, tid) < NICE {
            libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
        }
    }
}

/// Runs `work` on a new thread at background priority and returns its result (a panic
/// in `work` resumes on the caller).
pub fn run<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_priority();
                work()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn work_runs_at_the_background_nice_value_and_the_caller_keeps_its_own() {
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = own();
        let inside = super::run(|| (own(), std::thread::scope(|s| s.spawn(own).join().unwrap())));
        assert_eq!(inside, (super::NICE.max(before), super::NICE.max(before)));
        assert_eq!(own(), before);
    }
}
