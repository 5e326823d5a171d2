//! The in-memory side of the task table: one entry per task, mirroring its persisted row, plus the
//! live counters a running download updates without locks.

use crate::engine::http::verdict::Validator;
use crate::engine::model::task::{TaskError, TaskInfo, TaskSpec, TaskState};
use crate::engine::ranges::map::SegmentRow;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Sentinel for "length unknown".
pub const UNKNOWN: u64 = u64::MAX;

/// Counters a runner updates as bytes flow.
#[derive(Debug)]
pub struct LiveProgress {
    /// Bytes transferred (for file tasks: bytes in the part file per the journal).
    pub bytes: AtomicU64,
    /// Resource length or [`UNKNOWN`].
    pub total: AtomicU64,
    /// Connections streaming now.
    pub connections: AtomicU32,
}

impl LiveProgress {
    /// Fresh counters.
    pub fn new(bytes: u64, total: Option<u64>) -> Self {
        LiveProgress { bytes: AtomicU64::new(bytes), total: AtomicU64::new(total.unwrap_or(UNKNOWN)), connections: AtomicU32::new(0) }
    }

    /// Length, when known.
    pub fn total(&self) -> Option<u64> {
        let t = self.total.load(Ordering::Relaxed);
        (t != UNKNOWN).then_some(t)
    }
}

impl LiveProgress {
    /// Counts one streaming connection until the guard drops.
    pub fn gauge(&self) -> ConnectionGauge<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGauge(self)
    }
}

/// Counts a streaming connection (see [`LiveProgress::gauge`]).
#[derive(Debug)]
pub struct ConnectionGauge<'a>(&'a LiveProgress);

impl Drop for ConnectionGauge<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What is known about the remote resource.
#[derive(Clone, Debug, Default)]
pub struct Resource {
    /// Length.
    pub total: Option<u64>,
    /// Validator for `If-Range`.
    pub validator: Option<Validator>,
}

/// Why a runner was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The caller paused the task.
    Pause,
    /// The caller cancelled (or removed) the task.
    Cancel,
    /// The manager is shutting down.
    Shutdown,
}

/// Controls a live runner.
#[derive(Debug)]
pub struct RunControl {
    /// Cancelled to stop the runner.
    pub stop: CancellationToken,
    /// Why.
    pub reason: Option<StopReason>,
    /// Asks the runner to sync its part file and journal now.
    pub flush: Arc<tokio::sync::Notify>,
    /// Counts the flushes the runner completed.
    pub flushed: watch::Receiver<u64>,
}

/// The runner's side of [`RunControl`]'s flush channel.
#[derive(Debug)]
pub struct FlushSignal {
    /// Flush requests.
    pub request: Arc<tokio::sync::Notify>,
    /// Completed flushes.
    pub done: watch::Sender<u64>,
}

impl FlushSignal {
    /// A connected pair: the runner's signal and the manager's control halves.
    pub fn pair() -> (FlushSignal, Arc<tokio::sync::Notify>, watch::Receiver<u64>) {
        let request = Arc::new(tokio::sync::Notify::new());
        let (done, rx) = watch::channel(0);
        (FlushSignal { request: request.clone(), done }, request, rx)
    }

    /// Records a completed flush.
    pub fn completed(&self) {
        self.done.send_modify(|n| *n += 1);
    }
}

/// Smoothed transfer speed.
#[derive(Debug)]
pub struct SpeedMeter {
    last: Option<(Instant, u64)>,
    speed: f64,
}

impl Default for SpeedMeter {
    fn default() -> Self {
        SpeedMeter { last: None, speed: 0.0 }
    }
}

impl SpeedMeter {
    /// Feeds a byte count; returns the smoothed speed in bytes per second.
    pub fn sample(&mut self, now: Instant, bytes: u64) -> f64 {
        if let Some((t, b)) = self.last {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            if dt > 0.0 {
                let inst = bytes.saturating_sub(b) as f64 / dt;
                // Time-constant smoothing (~1 s), independent of the sampling cadence.
                let alpha = 1.0 - (-dt).exp();
                self.speed = if self.speed == 0.0 { inst } else { self.speed + alpha * (inst - self.speed) };
            }
        }
        self.last = Some((now, bytes));
        self.speed
    }

    /// Last smoothed speed.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Forgets history (task stopped).
    pub fn reset(&mut self) {
        *self = SpeedMeter::default();
    }
}

/// Mutable part of an entry.
#[derive(Debug)]
pub struct EntryInner {
    /// State.
    pub state: TaskState,
    /// Last error.
    pub error: Option<TaskError>,
    /// Last update.
    pub updated_ms: i64,
    /// Priority.
    pub priority: i32,
    /// Resource facts.
    pub resource: Resource,
    /// Journal rows to resume from (kept here while no runner owns them).
    pub journal: Vec<SegmentRow>,
    /// Identity of the part file the journal describes (see `part_file::Identity`), when known.
    pub part_file: Option<String>,
    /// Present while a runner exists.
    pub run: Option<RunControl>,
    /// Queued but not in the ready queue (found queued at open with `resume_on_open = false`).
    pub dormant: bool,
    /// Result of a memory task.
    pub memory: Option<Vec<u8>>,
    /// Speed.
    pub speed: SpeedMeter,
    /// Bytes at the last progress event.
    pub last_reported: Option<u64>,
}

/// One task.
#[derive(Debug)]
pub struct TaskEntry {
    /// The request.
    pub spec: TaskSpec,
    /// Enqueue order.
    pub seq: i64,
    /// Creation time.
    pub created_ms: i64,
    /// Stored in the task table (file outputs).
    pub persisted: bool,
    /// Live counters.
    pub live: LiveProgress,
    /// Mutable state.
    pub inner: Mutex<EntryInner>,
    /// Broadcasts the state to waiters.
    pub state_tx: watch::Sender<TaskState>,
    /// Removed from the table while its runner was still stopping.
    pub removed: AtomicBool,
    /// Removed with `delete_file`: a file the stopping runner still publishes is deleted too.
    pub delete_file: AtomicBool,
    /// Enqueued by this process after it saw no `<destination>.part`, and not run since: no part
    /// file of this task's can exist, so its first run has no stale one to remove.
    pub no_part_yet: AtomicBool,
    /// The URL as statuses show it, redacted once on first use (a status is asked for far more
    /// often than a task is created, and redacting parses the URL).
    shown_url: std::sync::OnceLock<String>,
}

impl EntryInner {
    /// The mutable part of a task in `state`, with nothing known about its resource yet.
    pub fn new(state: TaskState, priority: i32, updated_ms: i64) -> Self {
        EntryInner {
            state,
            error: None,
            updated_ms,
            priority,
            resource: Resource::default(),
            journal: Vec::new(),
            part_file: None,
            run: None,
            dormant: false,
            memory: None,
            speed: SpeedMeter::default(),
            last_reported: None,
        }
    }
}

impl TaskEntry {
    /// A table entry.
    pub fn new(spec: TaskSpec, seq: i64, created_ms: i64, persisted: bool, live: LiveProgress, inner: EntryInner) -> Arc<Self> {
        let (state_tx, _) = watch::channel(inner.state);
        Arc::new(TaskEntry {
            spec,
            seq,
            created_ms,
            persisted,
            live,
            inner: Mutex::new(inner),
            state_tx,
            removed: AtomicBool::new(false),
            delete_file: AtomicBool::new(false),
            no_part_yet: AtomicBool::new(false),
            shown_url: std::sync::OnceLock::new(),
        })
    }

    /// Forgets the resource facts and the journal (the download starts over from zero), in memory
    /// and, for a stored task still in the table, in the task table.
    pub fn forget_resource(&self, store: &crate::engine::storage::store::Store) -> crate::engine::model::error::Result<()> {
        {
            let mut g = self.inner.lock();
            g.journal.clear();
            g.resource = Resource::default();
        }
        if self.persisted && !self.removed.load(Ordering::Acquire) {
            let mut conn = store.lock();
            let t = conn.transaction()?;
            crate::engine::storage::store::tx::set_resource(&t, self.spec.id.as_str(), None, None, None, &[])?;
            t.commit()?;
        }
        Ok(())
    }

    /// The current state.
    pub fn state(&self) -> TaskState {
        self.inner.lock().state
    }

    /// A status snapshot.
    pub fn info(&self) -> TaskInfo {
        let g = self.inner.lock();
        let total = self.live.total().or(g.resource.total);
        let bytes = self.live.bytes.load(Ordering::Relaxed);
        let running = g.state == TaskState::Running;
        let speed = if running { g.speed.speed() } else { 0.0 };
        let eta_seconds = match (running, total) {
            (true, Some(t)) if speed > 0.0 => Some(t.saturating_sub(bytes) as f64 / speed),
            _ => None,
        };
        TaskInfo {
            id: self.spec.id.clone(),
            url: self.shown_url.get_or_init(|| crate::engine::model::error::redact(&self.spec.url)).clone(),
            destination: self.spec.output.path().cloned(),
            output_kind: self.spec.output.kind(),
            state: g.state,
            bytes,
            total,
            speed,
            eta_seconds,
            connections: if running { self.live.connections.load(Ordering::Relaxed) } else { 0 },
            error: g.error.clone(),
            priority: g.priority,
            created_ms: self.created_ms,
            updated_ms: g.updated_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn speed_converges_to_the_steady_rate() {
        let mut m = SpeedMeter::default();
        let t0 = Instant::now();
        let mut s = 0.0;
        for i in 0..40u64 {
            s = m.sample(t0 + Duration::from_millis(250 * i), i * 250_000);
        }
        assert!((s - 1_000_000.0).abs() < 1.0, "{s}");
    }
}
