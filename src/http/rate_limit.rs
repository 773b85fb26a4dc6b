//! Rate limits per caller (a native key, a POS client, a cblink app, a discount-card merchant):
//! a token bucket each, so one runaway till cannot starve the chain. Only authenticated callers
//! are counted, so there is one bucket per configured client at most.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How many requests a caller may make: `per_s` a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_s: u32,
    pub burst: u32,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        assert!(
            limit.per_s > 0 && limit.burst > 0,
            "a limit lets something through"
        );
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `caller` at `now`: `Err(seconds)` to wait before retrying when its
    /// bucket is empty.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), u32> {
        let (per_s, burst) = (f64::from(self.limit.per_s), f64::from(self.limit.burst));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(caller) {
            Some(bucket) => bucket,
            None => buckets.entry(caller.to_string()).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_s;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_s).ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(RateLimit { per_s: 2, burst: 3 });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("till", t0), Ok(()));
        }
        assert_eq!(limiter.take("till", t0), Err(1));
        // Another caller has its own bucket.
        assert_eq!(limiter.take("other", t0), Ok(()));
        // Half a second gives one request back at 2 a second, and no more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take("till", t1), Ok(()));
        assert_eq!(limiter.take("till", t1), Err(1));
        // A long pause refills the bucket to its burst, never past it.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.take("till", t2), Ok(()));
        }
        assert!(limiter.take("till", t2).is_err());
    }

    #[test]
    fn the_wait_is_how_long_one_token_takes() {
        let limiter = RateLimiter::new(RateLimit { per_s: 1, burst: 1 });
        let t0 = Instant::now();
        assert_eq!(limiter.take("a", t0), Ok(()));
        assert_eq!(limiter.take("a", t0), Err(1));
        let slow = RateLimiter::new(RateLimit { per_s: 1, burst: 1 });
        assert_eq!(slow.take("a", t0), Ok(()));
        assert_eq!(slow.take("a", t0 + Duration::from_millis(100)), Err(1));
    }
}
