//! Retry policy: which failures are worth another attempt, how long to wait, and when to give up.
//!
//! Retryable: connect failures, timeouts, 5xx, 408, 429 and truncated bodies. Everything else
//! (other 4xx, validation, disk) is fatal at once. Waits grow exponentially with full jitter,
//! a server's `Retry-After` is honoured (within a ceiling), and a budget bounds the number of
//! attempts in a row that made no progress: a connection that keeps delivering bytes between drops
//! is never given up on, one that fails over and over without a byte is. Each connection counts
//! its own attempts (a network outage fails all of a download's connections at once, and must not
//! cost it more than it costs a download on one connection); [`RetryBudget`] counts the run's own
//! attempts at its first request, and any connection's progress refills it.
//! Every retry resumes from the journal's offset; nothing is fetched twice on purpose.

use super::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// Retry tuning.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in a row without progress allowed per connection (and for a run's first request)
    /// before the task fails.
    pub budget: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Longest backoff (and longest `Retry-After` honoured; a longer one fails the attempt).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { budget: 8, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `attempt` (1 = first retry) after `error`.
    /// Returns `None` when the error must not be retried.
    pub fn delay(&self, attempt: u32, error: &Error) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        if let Some(server) = error.retry_after() {
            return (server <= self.max_delay).then_some(server);
        }
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        // Full jitter, but never less than half the base so a flapping server is not hammered.
        let floor = self.base_delay / 2;
        let span = cap.saturating_sub(floor);
        Some(floor + span.mul_f64(rand::random::<f64>()))
    }
}

impl RetryPolicy {
    /// The wait before a task that could not connect at all tries again (see
    /// `Config::wait_when_unreachable`): the longest backoff, doubled with each such wait in a
    /// row (`streak`, from 1), up to sixteen times it.
    pub fn unreachable_delay(&self, streak: u32) -> Duration {
        self.max_delay.saturating_mul(1 << streak.saturating_sub(1).min(4))
    }
}

/// A run's budget of fruitless attempts at its first request (the probe), refilled by any
/// connection's progress. Connections count their own (see `connection.rs`).
#[derive(Debug)]
pub struct RetryBudget {
    left: AtomicU32,
    total: u32,
}

impl RetryBudget {
    /// A full budget.
    pub fn new(total: u32) -> Self {
        RetryBudget { left: AtomicU32::new(total), total }
    }

    /// Spends one attempt; false when none is left.
    pub fn spend(&self) -> bool {
        self.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }

    /// Progress was made: the budget is full again.
    pub fn refill(&self) {
        self.left.store(self.total, Ordering::Release);
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::error::ErrorCode;

    #[test]
    fn fatal_errors_are_not_retried() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, &Error::from_status(404, None)), None);
        assert_eq!(p.delay(1, &Error::new(ErrorCode::DiskFull, "x")), None);
        assert_eq!(p.delay(1, &Error::new(ErrorCode::ChecksumMismatch, "x")), None);
    }

    #[test]
    fn backoff_grows_with_jitter_within_bounds() {
        let p = RetryPolicy { budget: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2) };
        let e = Error::new(ErrorCode::Network, "reset");
        for attempt in 1..20 {
            let d = p.delay(attempt, &e).unwrap();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_secs(2), "{attempt}: {d:?}");
        }
        let late: Duration = (0..50).map(|_| p.delay(6, &e).unwrap()).sum();
        let early: Duration = (0..50).map(|_| p.delay(1, &e).unwrap()).sum();
        assert!(late > early * 2, "{late:?} vs {early:?}");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_ceiling() {
        let p = RetryPolicy { budget: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(10) };
        let e = Error::from_status(503, Some(Duration::from_secs(3)));
        assert_eq!(p.delay(1, &e), Some(Duration::from_secs(3)));
        let e = Error::from_status(429, Some(Duration::from_secs(3600)));
        assert_eq!(p.delay(1, &e), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn unreachable_waits_double_up_to_a_ceiling() {
        let p = RetryPolicy { budget: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_secs(3) };
        let waits: Vec<u64> = (1..8).map(|n| p.unreachable_delay(n).as_secs()).collect();
        assert_eq!(waits, [3, 6, 12, 24, 48, 48, 48]);
    }

    #[test]
    fn budget_spends_and_refills() {
        let b = RetryBudget::new(2);
        assert!(b.spend() && b.spend() && !b.spend());
        b.refill();
        assert!(b.spend());
    }
}
