//! Login rate limiting: failed attempts per key (username, client address) in a
//! sliding window; a key over its limit is refused until its oldest failure
//! leaves the window. Memory is bounded: idle keys are pruned, and past
//! [`MAX_KEYS`] keys the oldest are dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys remembered.
pub const MAX_KEYS: usize = 10_000;

/// Failed logins per key in a window.
pub struct LoginLimiter {
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// A limiter over `window`.
    pub fn new(window: Duration) -> LoginLimiter {
        LoginLimiter {
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `key` has `max` failures in the window.
    pub fn check(&self, key: &str, max: u32, now: Instant) -> Result<(), u64> {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = m.get_mut(key) else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() < max as usize {
            return Ok(());
        }
        let oldest = *q.front().expect("max > 0 failures");
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs().max(1))
    }

    /// Count a failure of `key`.
    pub fn fail(&self, key: &str, now: Instant) {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_KEYS && !m.contains_key(key) {
            let window = self.window;
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if m.len() >= MAX_KEYS {
                let oldest = m
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    m.remove(&k);
                }
            }
        }
        m.entry(key.to_string()).or_default().push_back(now);
    }

    /// Forget `key`'s failures (after a successful login).
    pub fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_the_window_only() {
        let l = LoginLimiter::new(Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.check("u:ann", 3, t0).is_ok(), "attempt {i}");
            l.fail("u:ann", t0);
        }
        assert_eq!(l.check("u:ann", 3, t0), Err(60));
        assert!(l.check("u:bob", 3, t0).is_ok());
        assert_eq!(l.check("u:ann", 3, t0 + Duration::from_secs(50)), Err(10));
        assert!(l.check("u:ann", 3, t0 + Duration::from_secs(60)).is_ok());
        l.fail("u:ann", t0);
        l.clear("u:ann");
        assert!(l.check("u:ann", 1, t0).is_ok());
    }
}
