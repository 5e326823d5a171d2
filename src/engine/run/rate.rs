//! Bandwidth caps: one [`RateLimit`] for the whole manager and one per task, both changeable while
//! bytes flow. A connection charges each chunk it reads to its task's cap and to the global one,
//! then waits until both have allowed it; while it waits it reads nothing, so TCP's flow control
//! slows the server down.
//!
//! The cap is a byte budget that grows at the rate (a token bucket kept as an allowance line):
//! `allowed(t) = base_bytes + rate × (t − base)`. Each charge takes a place in line (`charged`
//! after adding the chunk) and its connection waits until the allowance reaches that place, so
//! the connections of a task (and the tasks under the global cap) are served in the order they
//! charged: fair among them, and exact over time whatever the chunk sizes. Idle time earns at most
//! [`burst`] bytes.
//!
//! A change of rate re-bases the line at the allowance reached so far and wakes every waiter,
//! which works out its wait again: bytes already charged are paid at the new rate, so raising or
//! lifting a cap takes effect at once, and lowering one cannot be dodged by bytes already in line.
//!
//! Why not the `governor` crate: its quota is fixed when a limiter is built, so a new cap means a
//! new limiter that forgets the bytes in line, and the connections sleeping on the old one keep
//! the old schedule (nothing wakes them); it also refuses a charge larger than its burst, while a
//! read here may return any size up to the read limit.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes a cap lets through at once after idle time: a tenth of a second's worth, at least 16 KiB.
pub fn burst(rate: u64) -> u64 {
    (rate / 10).max(16 << 10)
}

/// Largest read worth doing under a cap of `rate` bytes per second: about 1/32 of a second's
/// worth, so that connections take turns often and a window's count is not lumpy. The HTTP
/// client raises it to its smallest read size.
pub fn read_size(rate: u64) -> usize {
    usize::try_from(rate / 32).unwrap_or(usize::MAX)
}

#[derive(Debug)]
struct Line {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    base: Instant,
    base_bytes: u64,
    /// Bytes charged so far (counted only while capped).
    charged: u64,
}

impl Line {
    fn allowed(&self, now: Instant) -> u64 {
        let earned = u128::from(self.rate) * now.saturating_duration_since(self.base).as_nanos() / 1_000_000_000;
        self.base_bytes.saturating_add(u64::try_from(earned).unwrap_or(u64::MAX))
    }

    /// Starts the line again at `now` with what it allowed so far (at most a burst ahead of the
    /// bytes charged).
    fn rebase(&mut self, now: Instant) {
        let allowed = if self.rate == 0 { self.charged } else { self.allowed(now) };
        self.base = now;
        self.base_bytes = allowed;
    }

    /// Charges `n` bytes at `now`; returns the place in line to wait for, `None` when unlimited.
    fn charge(&mut self, n: u64, now: Instant) -> Option<u64> {
        if self.rate == 0 {
            return None;
        }
        let most = self.charged.saturating_add(burst(self.rate));
        if self.allowed(now) > most {
            self.base = now;
            self.base_bytes = most;
        }
        self.charged = self.charged.saturating_add(n);
        Some(self.charged)
    }

    /// How long the place `at` still waits at `now`; `None` once it may go (or the cap is lifted).
    fn wait(&self, at: u64, now: Instant) -> Option<std::time::Duration> {
        let allowed = self.allowed(now);
        if self.rate == 0 || allowed >= at {
            return None;
        }
        let nanos = u128::from(at - allowed) * 1_000_000_000 / u128::from(self.rate);
        Some(std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(std::time::Duration::from_millis(1)))
    }

    fn set(&mut self, rate: u64, now: Instant) {
        self.rebase(now);
        if self.rate == 0 {
            // Nothing was counted while unlimited: the line starts with a burst.
            self.base_bytes = self.charged.saturating_add(burst(rate));
        }
        self.rate = rate;
    }
}

/// A bandwidth cap in bytes per second (0 = none), shared by every connection it governs.
#[derive(Debug)]
pub struct RateLimit {
    /// The rate, read without the lock on every chunk (the common case is no cap at all).
    rate: AtomicU64,
    line: Mutex<Line>,
    changed: Notify,
}

impl RateLimit {
    /// A cap of `rate` bytes per second; `None` or 0 for none.
    pub fn new(rate: Option<u64>) -> Arc<Self> {
        let rate = rate.unwrap_or(0);
        let line = Line { rate, base: Instant::now(), base_bytes: burst(rate), charged: 0 };
        Arc::new(RateLimit { rate: AtomicU64::new(rate), line: Mutex::new(line), changed: Notify::new() })
    }

    /// The cap, `None` for none.
    pub fn get(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|&r| r > 0)
    }

    /// Changes the cap (`None` or 0 lifts it); connections waiting on it work out their wait again.
    pub fn set(&self, rate: Option<u64>) {
        let rate = rate.unwrap_or(0);
        self.line.lock().set(rate, Instant::now());
        self.rate.store(rate, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// [`Self::set`], when `rate` differs from the cap in force (a set restarts the allowance line).
    pub fn follow(&self, rate: Option<u64>) {
        if self.get() != rate {
            self.set(rate);
        }
    }

    /// Charges `n` bytes and waits until the cap allows them.
    pub async fn pass(&self, n: u64) {
        if self.rate.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(at) = self.line.lock().charge(n, Instant::now()) else { return };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Some(wait) = self.line.lock().wait(at, Instant::now()) else { return };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changed => {}
            }
        }
    }
}

/// The caps one connection answers to: its task's and the manager's.
#[derive(Clone, Debug)]
pub struct Throttle {
    /// The task's cap.
    pub task: Arc<RateLimit>,
    /// The cap over all tasks.
    pub global: Arc<RateLimit>,
}

impl Throttle {
    /// Charges a chunk of `n` bytes to both caps and waits until both allow it.
    pub async fn pass(&self, n: u64) {
        self.task.pass(n).await;
        self.global.pass(n).await;
    }

    /// The read size that suits the tighter cap (`None` when there is none).
    pub fn read_size(&self) -> Option<usize> {
        match (self.task.get(), self.global.get()) {
            (None, None) => None,
            (a, b) => Some(read_size(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(rate: u64, at: Instant) -> Line {
        Line { rate, base: at, base_bytes: burst(rate), charged: 0 }
    }

    #[test]
    fn a_burst_passes_at_once_then_bytes_wait_their_turn_in_order() {
        let t0 = Instant::now();
        let mut l = line(1_000_000, t0);
        let first = l.charge(100_000, t0).unwrap();
        assert_eq!(l.wait(first, t0), None, "a tenth of a second's worth is the burst");
        let a = l.charge(100_000, t0).unwrap();
        let b = l.charge(100_000, t0).unwrap();
        assert_eq!(l.wait(a, t0), Some(Duration::from_millis(100)));
        assert_eq!(l.wait(b, t0), Some(Duration::from_millis(200)), "the later charge waits longer");
        assert_eq!(l.wait(b, t0 + Duration::from_millis(200)), None);
    }

    #[test]
    fn idle_time_earns_one_burst_only() {
        let t0 = Instant::now();
        let mut l = line(1_000_000, t0);
        let later = t0 + Duration::from_secs(60);
        let at = l.charge(100_000, later).unwrap();
        assert_eq!(l.wait(at, later), None);
        let at = l.charge(500_000, later).unwrap();
        assert_eq!(l.wait(at, later), Some(Duration::from_millis(500)));
    }

    #[test]
    fn a_new_rate_applies_to_bytes_already_in_line() {
        let t0 = Instant::now();
        let mut l = line(1_000_000, t0);
        l.charge(100_000, t0);
        let at = l.charge(1_000_000, t0).unwrap();
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.wait(at, t1), Some(Duration::from_millis(500)));
        // Halfway through, the cap doubles: the other half goes in a quarter of a second.
        l.set(2_000_000, t1);
        assert_eq!(l.wait(at, t1), Some(Duration::from_millis(250)));
        // Then drops to a tenth: what is left waits ten times longer.
        let t2 = t1 + Duration::from_millis(125);
        l.set(200_000, t2);
        assert_eq!(l.wait(at, t2), Some(Duration::from_millis(1250)));
        l.set(0, t2);
        assert_eq!(l.wait(at, t2), None, "a lifted cap lets everything through");
        assert_eq!(l.charge(u64::MAX, t2), None, "nothing is counted without a cap");
    }

    #[test]
    fn a_cap_set_after_none_starts_with_a_burst() {
        let t0 = Instant::now();
        let mut l = line(0, t0);
        l.set(1_000_000, t0);
        let at = l.charge(100_000, t0).unwrap();
        assert_eq!(l.wait(at, t0), None);
        let at = l.charge(1_000, t0).unwrap();
        assert_eq!(l.wait(at, t0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn read_size_follows_the_tighter_cap() {
        let t = Throttle { task: RateLimit::new(Some(320_000)), global: RateLimit::new(None) };
        assert_eq!(t.read_size(), Some(10_000));
        t.global.set(Some(32_000));
        assert_eq!(t.read_size(), Some(1_000));
        t.task.set(None);
        t.global.set(Some(0));
        assert_eq!(t.read_size(), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiter_wakes_when_its_cap_is_lifted() {
        let cap = RateLimit::new(Some(16_384));
        cap.pass(16_384).await;
        let waiting = {
            let cap = cap.clone();
            tokio::spawn(async move { cap.pass(1 << 30).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a gigabyte at 16 KiB/s waits");
        cap.set(None);
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken by the change").unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_sharing_a_cap_get_equal_shares() {
        let cap = RateLimit::new(Some(400_000));
        let counts: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let workers: Vec<_> = counts
            .iter()
            .map(|c| {
                let (cap, c) = (cap.clone(), c.clone());
                tokio::spawn(async move {
                    loop {
                        // A read in between, as a connection does.
                        tokio::task::yield_now().await;
                        cap.pass(4_000).await;
                        c.fetch_add(4_000, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        for w in &workers {
            w.abort();
        }
        let got: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let (least, most) = (*got.iter().min().unwrap(), *got.iter().max().unwrap());
        assert!(most - least <= 8_000, "shares {got:?}");
        let total: u64 = got.iter().sum();
        // Half a second at 400 kB/s, plus the burst; a slow machine only lowers it.
        assert!(total <= 200_000 + burst(400_000) + 16_000, "{total} bytes in half a second");
    }
}
