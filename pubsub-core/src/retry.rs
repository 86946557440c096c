//! Retry policies: exponential backoff with jitter.

use std::time::Duration;

/// How often and how patiently a failed handler is retried before its message is
/// dead-lettered.
///
/// ```
/// use std::time::Duration;
/// use pubsub::RetryPolicy;
/// let policy = RetryPolicy::exponential(5, Duration::from_millis(50)).max_backoff(Duration::from_secs(2));
/// assert_eq!(policy.max_retries, 5);
/// assert!(policy.backoff(1) >= Duration::from_millis(40));
/// assert!(policy.backoff(20) <= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: dead-letter on the first failure).
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any wait, jitter included.
    pub max_backoff: Duration,
    /// Growth factor of the wait per retry.
    pub multiplier: f64,
    /// Random spread of each wait, as a fraction (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 3 retries, 100 ms doubling up to 10 s, ±20 % jitter.
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// `max_retries` retries starting at `initial_backoff`, doubling.
    pub fn exponential(max_retries: u32, initial_backoff: Duration) -> Self {
        Self {
            max_retries,
            initial_backoff,
            ..Self::default()
        }
    }

    /// Sets the number of retries.
    #[must_use]
    pub fn retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Caps each wait.
    #[must_use]
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }

    /// Sets the jitter fraction (clamped to 0..=1).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The wait before retry number `retry` (1 = first retry), jitter applied.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(64) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let spread = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
        Duration::try_from_secs_f64((base * factor).max(0.0))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::exponential(5, Duration::from_millis(100))
            .max_backoff(Duration::from_millis(500))
            .jitter(0.0);
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(500));
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(500));
        let unbounded = RetryPolicy::default().max_backoff(Duration::MAX);
        assert!(
            unbounded.backoff(u32::MAX) <= Duration::MAX,
            "no overflow panic"
        );
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy::exponential(1, Duration::from_millis(100)).jitter(0.5);
        for _ in 0..1000 {
            let d = p.backoff(1);
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(150),
                "{d:?}"
            );
        }
    }
}
