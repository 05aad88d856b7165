//! Per-key rate limits: a token bucket per API key (or per peer address for anonymous
//! requests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets keyed by caller.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Allows `per_minute` requests a minute per caller, in bursts of up to that many.
    /// Zero disables the limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `caller`; when none is left, the whole seconds until one is.
    pub fn check(&self, caller: [u8; 32]) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle callers now and then, so the map stays bounded.
        if buckets.len() > 100_000 {
            buckets
                .retain(|_, b| now.duration_since(b.updated).as_secs_f64() * per_second < capacity);
        }
        let bucket = buckets.entry(caller).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_with_whole_seconds() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(limiter.check([1; 32]), Ok(()));
        }
        let wait = limiter.check([1; 32]).unwrap_err();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another caller has its own bucket.
        assert_eq!(limiter.check([2; 32]), Ok(()));
        assert_eq!(RateLimiter::new(0).check([1; 32]), Ok(()));
    }
}
