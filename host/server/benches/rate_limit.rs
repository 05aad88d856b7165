//! Rate-limiter benchmark, printed as a table (numbers recorded in docs/http-service.md):
//! checks per second of the service's limiter (`governor`'s keyed GCRA limiter) beside the
//! reference it replaced (a token bucket per caller in one `Mutex<HashMap>`, which scanned
//! every caller on each check once it tracked more than 100,000), measured in the same run:
//!
//! - every thread checking its own few callers (API keys of busy bots);
//! - a flood of distinct callers (one check per caller, as from many networks), past the
//!   100,000 callers where the reference starts scanning.
//!
//! `cargo bench -p gigaspot-server --bench rate_limit`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use gigaspot_server::rate_limit::RateLimiter;

/// The reference: the hand-written limiter the service used before `governor`.
struct MutexBuckets {
    per_minute: u32,
    buckets: Mutex<HashMap<[u8; 32], (f64, Instant)>>,
}

impl MutexBuckets {
    fn new(per_minute: u32) -> Self {
        MutexBuckets {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn check(&self, caller: [u8; 32]) -> Result<(), u64> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() > 100_000 {
            buckets.retain(|_, (_, updated)| {
                now.duration_since(*updated).as_secs_f64() * per_second < capacity
            });
        }
        let (tokens, updated) = buckets.entry(caller).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*updated).as_secs_f64() * per_second).min(capacity);
        *updated = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Names the caller of a thread's `i`-th check.
type Callers = fn(usize, u64) -> [u8; 32];

fn key(thread: usize, n: u64) -> [u8; 32] {
    let mut k = [0; 32];
    k[0] = thread as u8;
    k[1..9].copy_from_slice(&n.to_le_bytes());
    k
}

/// Checks per second over `threads` threads, each making `per_thread` checks of the callers
/// `callers(thread, i)` names.
fn run(
    threads: usize,
    per_thread: u64,
    callers: Callers,
    check: &(dyn Fn([u8; 32]) -> Result<(), u64> + Sync),
) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..per_thread {
                    let _ = std::hint::black_box(check(callers(t, i)));
                }
            });
        }
    });
    (threads as u64 * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    // Far above what the benchmark makes, so every check is a success.
    let per_minute = 1_000_000_000;
    println!("| workload ({threads} threads) | governor checks/s | reference checks/s | ratio |");
    println!("|---|---|---|---|");
    let cases: [(&str, u64, Callers); 2] = [
        ("8 callers per thread", 1_000_000, |t, i| key(t, i % 8)),
        ("60,000 new callers per thread", 60_000, key),
    ];
    for (name, per_thread, callers) in cases {
        let governor = RateLimiter::new(per_minute);
        let g = run(threads, per_thread, callers, &|k| governor.check(k));
        let reference = MutexBuckets::new(per_minute);
        let r = run(threads, per_thread, callers, &|k| reference.check(k));
        println!("| {name} | {g:.0} | {r:.0} | {:.1}× |", g / r);
    }
}
