//! The in-memory side of the task table: one entry per task, mirroring its persisted row, plus the
//! live counters a running download updates without locks.

use super::rate::RateLimit;
use crate::engine::http::verdict::Validator;
use crate::engine::model::credentials::Access;
use crate::engine::model::network::{NetworkPolicy, WaitReason};
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
    /// Bytes the OS reports having fetched for the task's live leases, not yet ingested: shown
    /// in progress, never journaled.
    pub os_bytes: AtomicU64,
}

impl LiveProgress {
    /// Fresh counters.
    pub fn new(bytes: u64, total: Option<u64>) -> Self {
        LiveProgress {
            bytes: AtomicU64::new(bytes),
            total: AtomicU64::new(total.unwrap_or(UNKNOWN)),
            connections: AtomicU32::new(0),
            os_bytes: AtomicU64::new(0),
        }
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
    /// The task's remaining ranges go to the OS (the app is leaving the foreground).
    Handoff,
    /// A budgeted run is over (its time is spent, or a stop was requested): the task waits, held,
    /// for the next run.
    Budget,
    /// The network the host reports is gone, or the task's policy refuses it: the task waits,
    /// queued, with its reason, and resumes from its bytes when the network allows.
    Network,
    /// The task failed for good outside the runner (a chunk the OS fetched said so): the runner
    /// keeps its bytes for a resume and publishes nothing.
    Failed,
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
    /// The range map of the run's ranged transfer, while there is one: a chunk the OS fetched
    /// meanwhile is committed there, so that the run's journal writes never undo it.
    pub ranges: Option<Arc<crate::engine::run::connection::RunShared>>,
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
    /// The task's live leases: ranges the OS is fetching.
    pub leases: Vec<LiveLease>,
    /// A hand-off is stopping its runner to lease what is left: the runner's exit must not requeue
    /// it.
    pub handing_off: bool,
    /// The URL and headers that fresh credentials put in place of the spec's, this process.
    pub access: Option<Arc<Access>>,
    /// Which networks it may use.
    pub network_policy: NetworkPolicy,
    /// Why it waits, queued, instead of running (see `model::network`).
    pub waiting: Option<WaitReason>,
    /// Engine-judged network waits in a row (see `Config::wait_when_unreachable`).
    pub unreachable_streak: u32,
}

/// A range the OS is fetching for a task (see `handoff`).
#[derive(Clone, Debug)]
pub struct LiveLease {
    /// The lease id.
    pub id: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte (`u64::MAX`: a whole-file lease of unknown length).
    pub end: u64,
    /// A whole-file lease.
    pub whole: bool,
    /// Bytes the OS last reported for it.
    pub os_bytes: u64,
    /// When it was made, or last reported progress.
    pub last_progress: Instant,
}

impl LiveLease {
    /// Its length, when known.
    pub fn length(&self) -> Option<u64> {
        (self.end != u64::MAX).then(|| self.end - self.start)
    }
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
    /// Held while a chunk the OS fetched is ingested: one at a time per task.
    pub ingest: Mutex<()>,
    /// The chunk being copied into the part file: its lease does not end meanwhile.
    pub chunk_copy: super::chunk_copy::ChunkCopy,
    /// The task's bandwidth cap (in this process only).
    pub rate: Arc<RateLimit>,
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
            leases: Vec::new(),
            handing_off: false,
            access: None,
            network_policy: NetworkPolicy::Any,
            waiting: None,
            unreachable_streak: 0,
        }
    }
}

impl TaskEntry {
    /// The URL and headers the task is asked for with now: `None` for the spec's own (see
    /// [`Self::target`]).
    pub fn access(&self) -> Option<Arc<Access>> {
        self.inner.lock().access.clone()
    }

    /// The URL and headers of `access` (from [`Self::access`]), else the spec's.
    pub fn target<'a>(&'a self, access: &'a Option<Arc<Access>>) -> (&'a url::Url, &'a [(String, String)]) {
        match access {
            Some(a) => (&a.url, &a.headers),
            None => (&self.spec.url, &self.spec.headers),
        }
    }

    /// A table entry.
    pub fn new(spec: TaskSpec, seq: i64, created_ms: i64, persisted: bool, live: LiveProgress, inner: EntryInner) -> Arc<Self> {
        let (state_tx, _) = watch::channel(inner.state);
        let rate = RateLimit::new(spec.rate_limit);
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
            ingest: Mutex::new(()),
            chunk_copy: Default::default(),
            rate,
            shown_url: std::sync::OnceLock::new(),
        })
    }

    /// Forgets the resource facts and the journal (the download starts over from zero), in memory
    /// and, for a stored task still in the table, in the task table.
    /// Live leases end with it (their chunks can only belong to the old resource): their ids are
    /// returned, so that their OS tasks can be cancelled.
    pub fn forget_resource(&self, store: &crate::engine::storage::store::Store) -> crate::engine::model::error::Result<Vec<String>> {
        let released = {
            let mut g = self.chunk_copy.lock_between(&self.inner, None);
            g.journal.clear();
            g.resource = Resource::default();
            let released: Vec<String> = g.leases.drain(..).map(|l| l.id).collect();
            self.live.os_bytes.store(0, Ordering::Relaxed);
            released
        };
        if self.persisted && !self.removed.load(Ordering::Acquire) {
            let mut conn = store.lock();
            let t = conn.transaction()?;
            crate::engine::storage::store::tx::set_resource(&t, self.spec.id.as_str(), None, None, None, &[])?;
            crate::engine::storage::store::lease_tx::release_all(&t, self.spec.id.as_str())?;
            t.commit()?;
        }
        Ok(released)
    }

    /// Ends the given live leases (all of them with `None`) without their bytes, in the table and
    /// in memory; their segments wait, idle, for whoever fetches them next. Returns the ids ended.
    pub fn release_leases(
        &self,
        store: &crate::engine::storage::store::Store,
        which: Option<&[String]>,
    ) -> crate::engine::model::error::Result<Vec<String>> {
        use crate::engine::storage::store::{lease_tx, LeaseState};
        let mut g = self.chunk_copy.lock_between(&self.inner, which);
        let mut conn = store.lock();
        let ended: Vec<LiveLease> = {
            let (ended, kept): (Vec<LiveLease>, Vec<LiveLease>) =
                g.leases.drain(..).partition(|l| which.is_none_or(|ids| ids.contains(&l.id)));
            g.leases = kept;
            ended
        };
        if ended.is_empty() {
            return Ok(Vec::new());
        }
        if self.persisted {
            let t = conn.transaction()?;
            for l in &ended {
                lease_tx::set_state(&t, &l.id, LeaseState::Released)?;
            }
            t.commit()?;
        }
        if let Some(shared) = g.run.as_ref().and_then(|r| r.ranges.clone()) {
            let mut map = shared.map.lock();
            for l in &ended {
                map.release_external(&l.id);
            }
        }
        let reported: u64 = ended.iter().map(|l| l.os_bytes).sum();
        let _ = self.live.os_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(reported)));
        Ok(ended.into_iter().map(|l| l.id).collect())
    }

    /// The current state.
    pub fn state(&self) -> TaskState {
        self.inner.lock().state
    }

    /// A status snapshot.
    pub fn info(&self) -> TaskInfo {
        let g = self.inner.lock();
        let total = self.live.total().or(g.resource.total);
        let handed_off = !g.leases.is_empty();
        let bytes = self.live.bytes.load(Ordering::Relaxed) + if handed_off { self.live.os_bytes.load(Ordering::Relaxed) } else { 0 };
        let bytes = total.map_or(bytes, |t| bytes.min(t));
        let running = g.state == TaskState::Running;
        let speed = if running { g.speed.speed() } else { 0.0 };
        let eta_seconds = match (running, total) {
            (true, Some(t)) if speed > 0.0 => Some(t.saturating_sub(bytes) as f64 / speed),
            _ => None,
        };
        TaskInfo {
            id: self.spec.id.clone(),
            url: self.shown_url.get_or_init(|| crate::engine::model::error::redact(&self.spec.url)).clone(),
            destination: match &self.spec.output {
                crate::engine::model::task::Output::Unresolved(stored) => Some(std::path::PathBuf::from(stored)),
                output => output.path().cloned(),
            },
            output_kind: self.spec.output.kind(),
            state: g.state,
            bytes,
            total,
            speed,
            eta_seconds,
            connections: if running { self.live.connections.load(Ordering::Relaxed) } else { 0 },
            error: match self.spec.output.unresolved() {
                Some(stored) => Some((&crate::engine::model::roots::unknown_root(stored)).into()),
                None => g.error.clone(),
            },
            priority: g.priority,
            created_ms: self.created_ms,
            updated_ms: g.updated_ms,
            handed_off,
            network_policy: g.network_policy,
            waiting: g.waiting.filter(|_| g.state == TaskState::Queued),
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
