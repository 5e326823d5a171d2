//! How many connections one download should use.
//!
//! With an explicit count the answer is that count. In automatic mode the engine starts with the
//! probe connection alone and measures it over a short window. A stream fast enough on its own, or
//! nearly done, stays single. Otherwise the engine tries the maximum at once and keeps it only if
//! the aggregate rate rose clearly over the next window; if not, it returns to two connections (see
//! [`FALLBACK_MIN`]) and the runner sheds the others.
//!
//! Why one step to the maximum rather than a gentle ramp: servers and CDNs that cap connections cap
//! each one from its own start, so every connection opened late is capacity lost for good. With
//! 16 connections at 8 MiB/s each, the earlier ramp (1, then 4, then 16, one window each) reached
//! 16 after 250 ms and cost 3–8 % of a 2 s download; one step costs about 1 %. A link that one
//! connection already fills pays for the try with one window of extra connections, which are then
//! shed.
//!
//! Sans-I/O: feed it samples, read the target.

use std::time::{Duration, Instant};

/// How many connections a task may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Exactly this many (when the file is large enough to split).
    Fixed(u32),
    /// Adaptive, up to this many.
    Auto(u32),
}

/// The fewest connections a step that did not pay falls back to. The step has cut the file into
/// as many ranges as it opened connections; one connection left alone would fetch them one after
/// another, idle for a round trip before each, while two keep the link busy across those gaps.
const FALLBACK_MIN: u32 = 2;

/// Tuning for the automatic mode.
#[derive(Clone, Copy, Debug)]
pub struct ControllerTuning {
    /// Length of a measurement window.
    pub window: Duration,
    /// Do not grow when the remainder would take less than this at the current rate.
    pub min_remaining_time: Duration,
    /// Minimum rate ratio after the step for the step to count as worth it.
    pub keep_gain: f64,
    /// Per-connection rate (bytes/s) above which growing is not even tried: servers and CDNs that
    /// cap connections cap them far below this, and a local bottleneck (CPU, disk writeback) makes
    /// a fast stream dip now and then, which extra connections would only make worse.
    pub fast_per_connection: f64,
}

impl Default for ControllerTuning {
    fn default() -> Self {
        ControllerTuning {
            window: Duration::from_millis(150),
            min_remaining_time: Duration::from_millis(1500),
            keep_gain: 1.5,
            fast_per_connection: 64e6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Measuring the rate at the current target.
    Measuring { since: Instant, bytes_at: u64, previous_rate: Option<f64> },
    /// Settled: no more growth.
    Settled,
}

/// Decides the connection target of one download.
#[derive(Clone, Debug)]
pub struct Controller {
    mode: ConnectionMode,
    tuning: ControllerTuning,
    target: u32,
    phase: Phase,
}

impl Controller {
    /// A controller starting now with `bytes` already transferred in this run.
    pub fn new(mode: ConnectionMode, tuning: ControllerTuning, now: Instant, bytes: u64) -> Self {
        let (target, phase) = match mode {
            ConnectionMode::Fixed(n) => (n.max(1), Phase::Settled),
            ConnectionMode::Auto(max) if max <= 1 => (1, Phase::Settled),
            ConnectionMode::Auto(_) => (1, Phase::Measuring { since: now, bytes_at: bytes, previous_rate: None }),
        };
        Controller { mode, tuning, target, phase }
    }

    /// The number of connections to aim for now.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Whether the controller may still change its mind.
    pub fn is_settled(&self) -> bool {
        self.phase == Phase::Settled
    }

    /// The server turned a connection away: aim for one connection fewer from now on (at least
    /// one), whatever the mode, and stop growing. Returns whether the target fell.
    ///
    /// One fewer per refusal, not "as many as are open now": a refusal can take seconds to show
    /// (a request never answered times out), and by then the connections the server did allow may
    /// have finished their ranges and be waiting for work, so counting the open ones would cap
    /// the task below what the server allows. Each refusal costs one request, so a task asks at
    /// most its target again before it settles.
    pub fn turned_away(&mut self) -> bool {
        self.phase = Phase::Settled;
        if self.target > 1 {
            self.target -= 1;
            return true;
        }
        false
    }

    /// Feeds a sample: total bytes transferred in this run, bytes still to fetch, and how many
    /// connections are actually streaming. Returns the (possibly new) target.
    pub fn sample(&mut self, now: Instant, bytes: u64, remaining: u64, streaming: u32) -> u32 {
        let ConnectionMode::Auto(max) = self.mode else { return self.target };
        let Phase::Measuring { since, bytes_at, previous_rate } = self.phase else { return self.target };
        let elapsed = now.saturating_duration_since(since);
        // Measure once the connections of this step are all streaming, or once it is clear that
        // not all of them can start (a host's connection cap shared with other tasks, a server
        // refusing more): then the step is judged by those that did.
        let short = streaming < self.target;
        let waited = elapsed > self.tuning.window * 10;
        if elapsed < self.tuning.window || (short && !waited) {
            return self.target;
        }
        // Before the step the target is the probe's one connection.
        if short && (previous_rate.is_none() || streaming <= 1) {
            // Not one more connection could start: nothing to judge, stop growing.
            self.phase = Phase::Settled;
            return self.target;
        }
        let rate = bytes.saturating_sub(bytes_at) as f64 / elapsed.as_secs_f64();
        if let Some(prev) = previous_rate {
            if rate < prev * self.tuning.keep_gain {
                // The step did not pay: fall back and stop.
                self.target = FALLBACK_MIN.min(max);
                self.phase = Phase::Settled;
                return self.target;
            }
        }
        if self.target >= max {
            self.phase = Phase::Settled;
            return self.target;
        }
        let remaining_time = if rate > 0.0 { remaining as f64 / rate } else { f64::INFINITY };
        let per_connection = rate / f64::from(streaming.max(1));
        if remaining_time < self.tuning.min_remaining_time.as_secs_f64() || per_connection >= self.tuning.fast_per_connection {
            // Nearly done at this rate: hold, but look again. Servers that allow a burst before
            // their per-connection cap look fast for the first window.
            self.phase = Phase::Measuring { since: now, bytes_at: bytes, previous_rate: None };
            return self.target;
        }
        self.target = max;
        self.phase = Phase::Measuring { since: now, bytes_at: bytes, previous_rate: Some(rate) };
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a link where each connection gets `per_conn` bytes/s up to `link` bytes/s in total.
    fn simulate(mode: ConnectionMode, per_conn: f64, link: f64, size: u64) -> Vec<u32> {
        let t0 = Instant::now();
        let mut c = Controller::new(mode, ControllerTuning::default(), t0, 0);
        let mut bytes = 0f64;
        let mut targets = vec![c.target()];
        let dt = Duration::from_millis(50);
        let mut now = t0;
        while (bytes as u64) < size {
            now += dt;
            let rate = (per_conn * c.target() as f64).min(link);
            bytes += rate * dt.as_secs_f64();
            let t = c.sample(now, bytes as u64, size.saturating_sub(bytes as u64), c.target());
            if *targets.last().unwrap() != t {
                targets.push(t);
            }
        }
        targets
    }

    #[test]
    fn fixed_is_fixed() {
        assert_eq!(simulate(ConnectionMode::Fixed(8), 1e6, 1e9, 50_000_000), vec![8]);
    }

    #[test]
    fn capped_connections_grow_to_the_maximum_in_one_step() {
        let t = simulate(ConnectionMode::Auto(16), 8e6, 1e10, 256 << 20);
        assert_eq!(t, vec![1, 16]);
        let t = simulate(ConnectionMode::Auto(32), 8e6, 1e10, 256 << 20);
        assert_eq!(t, vec![1, 32]);
    }

    #[test]
    fn a_fast_single_stream_stays_single() {
        // Saturated at one connection: growing does not pay, so it falls back to two, which keep
        // the link busy while each asks for the next of the ranges the step cut.
        let t = simulate(ConnectionMode::Auto(16), 40e6, 40e6, 4 << 30);
        assert_eq!(t, vec![1, 16, 2]);
        // Fast enough per connection that growing is not even tried, however long it takes.
        let t = simulate(ConnectionMode::Auto(16), 300e6, 300e6, 16 << 30);
        assert_eq!(t, vec![1]);
        // Nearly done before the first window closes: never grows.
        let t = simulate(ConnectionMode::Auto(16), 900e6, 900e6, 1 << 30);
        assert_eq!(t, vec![1]);
    }

    #[test]
    fn growth_is_kept_when_it_pays_and_undone_when_it_does_not() {
        // 8 MB/s per connection, 40 MB/s link: 16 connections are five times one.
        let t = simulate(ConnectionMode::Auto(16), 8e6, 40e6, 1 << 30);
        assert_eq!(t, vec![1, 16]);
        // A link only 40 % above one connection's rate: not worth sixteen connections.
        let t = simulate(ConnectionMode::Auto(16), 8e6, 11.2e6, 1 << 30);
        assert_eq!(t, vec![1, 16, 2]);
    }

    #[test]
    fn a_burst_before_a_cap_does_not_hide_the_cap() {
        // 2 MB arrive at once, then each connection is held to 2 MB/s.
        let t0 = Instant::now();
        let mut c = Controller::new(ConnectionMode::Auto(16), ControllerTuning::default(), t0, 0);
        let size = 24_000_000u64;
        let mut bytes = 2_000_000f64;
        let mut now = t0;
        let mut targets = vec![1];
        while (bytes as u64) < size && now < t0 + Duration::from_secs(30) {
            now += Duration::from_millis(50);
            bytes += 2e6 * c.target() as f64 * 0.05;
            let t = c.sample(now, bytes as u64, size.saturating_sub(bytes as u64), c.target());
            if *targets.last().unwrap() != t {
                targets.push(t);
            }
        }
        assert_eq!(targets, vec![1, 16]);
    }

    #[test]
    fn connections_that_never_start_settle_the_controller() {
        let t0 = Instant::now();
        let mut c = Controller::new(ConnectionMode::Auto(16), ControllerTuning::default(), t0, 0);
        assert_eq!(c.sample(t0 + Duration::from_millis(400), 4_000_000, 1 << 30, 1), 16);
        assert_eq!(c.sample(t0 + Duration::from_secs(5), 40_000_000, 1 << 30, 1), 16);
        assert!(c.is_settled());
    }

    #[test]
    fn a_server_turning_connections_away_lowers_the_target_in_any_mode() {
        let t0 = Instant::now();
        let mut c = Controller::new(ConnectionMode::Auto(16), ControllerTuning::default(), t0, 0);
        assert_eq!(c.sample(t0 + Duration::from_millis(200), 1_600_000, 1 << 30, 1), 16);
        for _ in 0..13 {
            assert!(c.turned_away());
        }
        assert_eq!(c.target(), 3, "16 asked, 13 turned away");
        assert!(c.is_settled());
        assert_eq!(c.sample(t0 + Duration::from_secs(3), 100_000_000, 1 << 30, 3), 3, "a settled target never grows again");
        let mut c = Controller::new(ConnectionMode::Fixed(2), ControllerTuning::default(), t0, 0);
        assert!(c.turned_away());
        assert!(!c.turned_away());
        assert_eq!(c.target(), 1, "at least one");
    }

    #[test]
    fn a_step_that_could_only_partly_start_is_judged_by_the_connections_that_did() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // One connection at 8 MB/s; the step to 16 gets only 3 (the host's cap), which triple the rate.
        let mut c = Controller::new(ConnectionMode::Auto(16), ControllerTuning::default(), t0, 0);
        assert_eq!(c.sample(ms(200), 1_600_000, 1 << 30, 1), 16);
        assert_eq!(c.sample(ms(1000), 1_600_000 + 19_200_000, 1 << 30, 3), 16, "still waiting for the rest");
        assert_eq!(c.sample(ms(1800), 1_600_000 + 38_400_000, 1 << 30, 3), 16);
        assert!(c.is_settled());
        // The same, but the three bring nothing: back to two.
        let mut c = Controller::new(ConnectionMode::Auto(16), ControllerTuning::default(), t0, 0);
        assert_eq!(c.sample(ms(200), 1_600_000, 1 << 30, 1), 16);
        assert_eq!(c.sample(ms(1800), 1_600_000 + 12_800_000, 1 << 30, 3), 2);
        assert!(c.is_settled());
    }
}
