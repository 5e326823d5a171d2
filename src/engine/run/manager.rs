//! The engine's public face: a [`Manager`] per state directory holds the global task table,
//! schedules runners, and reports status and events.
//!
//! Lock order, everywhere: scheduler → task entry → store → event hub. Every state change goes
//! through [`Inner::transition`], which applies [`next_state`], persists the row, wakes waiters and
//! publishes the event, in that order.

use super::runner::{self, Env, Outcome};
use super::runtime;
use super::scheduler::{HostSlots, ReadyQueue};
use super::table::{EntryInner, FlushSignal, LiveProgress, Resource, RunControl, StopReason, TaskEntry};
use crate::engine::http::transport::Transport;
use crate::engine::http::verdict::Validator;
use crate::engine::model::config::{Config, Limits};
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::events::{EventHub, ProgressEvent, StateEvent, Subscription};
use crate::engine::model::hash::{path_key, Map, Set};
use crate::engine::model::request::Request;
use crate::engine::model::task::{next_state, Output, TaskError, TaskId, TaskInfo, TaskSpec, TaskState, Transition};
use crate::engine::storage::journal::Journal;
use crate::engine::storage::part_file::part_path;
use crate::engine::storage::store::{now_ms, Recovery, Store, StoredTask, TaskRow};
use futures_util::FutureExt;
use once_cell::sync::Lazy;
use parking_lot::{Mutex, RwLock};
use std::ffi::{OsStr, OsString};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

static REGISTRY: Lazy<Mutex<Map<PathBuf, Weak<Inner>>>> = Lazy::new(Default::default);

/// A download manager bound to one state directory. Cheap to clone; every clone is the same manager.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("dir", &self.inner.dir).finish()
    }
}

struct Sched {
    ready: ReadyQueue,
    running: Map<TaskId, tokio::task::JoinHandle<()>>,
    /// Runners whose transfer is over and who only publish now: they hold no network slot.
    publishing: Set<TaskId>,
    /// Destinations of unfinished tasks, keyed by [`path_key`].
    claims: Map<OsString, TaskId>,
    next_seq: i64,
    limits: Limits,
}

struct Inner {
    env: Arc<Env>,
    dir: PathBuf,
    tasks: RwLock<Map<TaskId, Arc<TaskEntry>>>,
    sched: Mutex<Sched>,
    events: EventHub,
    recovery: Recovery,
    shutting_down: AtomicBool,
    ticker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Woken whenever the scheduler finds nothing queued and nothing running.
    idle: tokio::sync::Notify,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.get_mut().take() {
            t.abort();
        }
    }
}

impl Manager {
    /// Opens the manager of `dir` (created if missing). Within one process, opening the same
    /// directory again (by any path) returns the same manager (and ignores the new configuration).
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Manager> {
        config.validate()?;
        let dir = std::path::absolute(dir.as_ref()).map_err(|e| Error::io("resolving the state directory", &e))?;
        // One directory, one manager, however it is spelled (symlinks, `..`): the registry and the
        // lock file must agree on what "the same directory" is.
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the state directory", &e))?;
        let dir = std::fs::canonicalize(&dir).map_err(|e| Error::io("resolving the state directory", &e))?;
        let mut registry = REGISTRY.lock();
        if let Some(inner) = registry.get(&dir).and_then(Weak::upgrade) {
            drop(registry);
            inner.revive();
            return Ok(Manager { inner });
        }
        let (store, stored, recovery) = Store::open(&dir)?;
        let store = Arc::new(store);
        let journal = Arc::new(Journal::start(&store));
        let transport = {
            let _rt = runtime::handle().enter();
            Transport::new(&config)?
        };
        let hosts = HostSlots::new(config.limits.max_connections_per_host);
        let next_seq = stored.iter().map(|t| t.row.seq).max().unwrap_or(0) + 1;
        let progress_interval = config.progress_interval;
        let resume_on_open = config.resume_on_open;
        let limits = config.limits;
        let env = Arc::new(Env { transport, store, journal, hosts, config: RwLock::new(config) });
        let mut sched = Sched {
            ready: ReadyQueue::default(),
            running: Map::default(),
            publishing: Default::default(),
            claims: Map::default(),
            next_seq,
            limits,
        };
        let mut tasks = Map::with_capacity_and_hasher(stored.len(), Default::default());
        for t in stored {
            let Some(entry) = entry_from_stored(t) else { continue };
            let state = entry.state();
            let id = entry.spec.id.clone();
            if let (Output::File(dest), false) = (&entry.spec.output, matches!(state, TaskState::Completed | TaskState::Cancelled)) {
                sched.claims.insert(path_key(dest).into_owned(), id.clone());
            }
            if state == TaskState::Queued {
                if resume_on_open {
                    sched.ready.push(id.clone(), entry.spec.host_key(), entry.spec.priority, entry.seq);
                } else {
                    entry.inner.lock().dormant = true;
                }
            }
            tasks.insert(id, entry);
        }
        let inner = Arc::new(Inner {
            env,
            dir: dir.clone(),
            tasks: RwLock::new(tasks),
            sched: Mutex::new(sched),
            events: EventHub::default(),
            recovery,
            shutting_down: AtomicBool::new(false),
            ticker: Mutex::new(None),
            idle: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&inner);
        *inner.ticker.lock() = Some(runtime::handle().spawn(ticker(weak, progress_interval)));
        registry.insert(dir, Arc::downgrade(&inner));
        drop(registry);
        inner.dispatch();
        Ok(Manager { inner })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What opening found (crash recovery, reboot).
    pub fn recovery(&self) -> &Recovery {
        &self.inner.recovery
    }

    /// Enqueues one download; returns its id. Idempotent: the same id with the same request
    /// returns the id of the existing task and downloads nothing again.
    pub fn enqueue(&self, request: Request) -> Result<TaskId> {
        self.enqueue_batch(vec![request]).pop().unwrap_or_else(|| Err(Error::internal("empty batch result")))
    }

    /// Enqueues many downloads (recorded a few hundred per transaction; the first start at once). One result per request, in order.
    pub fn enqueue_batch(&self, requests: Vec<Request>) -> Vec<Result<TaskId>> {
        self.inner.enqueue_batch(requests)
    }

    /// A task's status.
    pub fn status(&self, id: &str) -> Result<TaskInfo> {
        Ok(self.inner.entry(id)?.info())
    }

    /// A task's state alone: cheaper than [`Manager::status`] when that is all a caller needs
    /// (the CLI checks a whole batch with it before it exits).
    pub fn state(&self, id: &str) -> Result<TaskState> {
        Ok(self.inner.entry(id)?.state())
    }

    /// Every task, in enqueue order.
    pub fn list(&self) -> Vec<TaskInfo> {
        let tasks = self.inner.tasks.read();
        let mut entries: Vec<&Arc<TaskEntry>> = tasks.values().collect();
        entries.sort_by_key(|e| e.seq);
        entries.into_iter().map(|e| e.info()).collect()
    }

    /// Pauses a task: connections stop, the partial file and journal stay.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.inner.pause(id)
    }

    /// Pauses every queued or running task; returns how many.
    pub fn pause_all(&self) -> usize {
        let ids: Vec<TaskId> = self.inner.tasks.read().values().filter(|e| e.state().is_active()).map(|e| e.spec.id.clone()).collect();
        ids.iter().filter(|id| self.inner.pause(id.as_str()).is_ok()).count()
    }

    /// Resumes a paused or failed task (continuing from its journal).
    pub fn resume(&self, id: &str) -> Result<()> {
        self.inner.resume(id)
    }

    /// Resumes everything unfinished: queued, paused, and failed tasks. Returns how many.
    pub fn resume_all(&self) -> usize {
        let ids: Vec<TaskId> = self
            .inner
            .tasks
            .read()
            .values()
            .filter(|e| matches!(e.state(), TaskState::Queued | TaskState::Paused | TaskState::Failed))
            .map(|e| e.spec.id.clone())
            .collect();
        ids.iter().filter(|id| self.inner.resume(id.as_str()).is_ok()).count()
    }

    /// Cancels a task and removes its partial file. Cancelling a finished task does nothing.
    pub fn cancel(&self, id: &str) -> Result<()> {
        self.inner.cancel(id)
    }

    /// Forgets a task. Its partial file is removed; with `delete_file`, a completed file too.
    pub fn remove(&self, id: &str, delete_file: bool) -> Result<()> {
        self.inner.remove(id, delete_file)
    }

    /// Changes a queued task's priority (higher runs first).
    pub fn set_priority(&self, id: &str, priority: i32) -> Result<()> {
        self.inner.set_priority(id, priority)
    }

    /// Waits until the task is no longer queued or running (or the manager shuts down, or the task
    /// is queued but held because the directory was opened without resuming), and returns its status.
    pub async fn wait(&self, id: &str) -> Result<TaskInfo> {
        let entry = self.inner.entry(id)?;
        let mut rx = entry.state_tx.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            let held = state == TaskState::Queued && entry.inner.lock().dormant;
            if !state.is_active() || held || self.inner.shutting_down.load(Ordering::Acquire) {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        Ok(entry.info())
    }

    /// Takes the bytes of a completed memory task.
    pub fn take_bytes(&self, id: &str) -> Result<Vec<u8>> {
        let entry = self.inner.entry(id)?;
        let mut g = entry.inner.lock();
        match (g.state, g.memory.take()) {
            (TaskState::Completed, Some(b)) => Ok(b),
            (TaskState::Completed, None) => Err(Error::new(ErrorCode::InvalidState, "the bytes were already taken")),
            (s, _) => Err(Error::new(ErrorCode::InvalidState, format!("task is {s}, not completed"))),
        }
    }

    /// Fetches a small resource into memory (up to `limit` bytes) and forgets the task afterwards.
    pub async fn fetch_bytes(&self, url: &str, headers: Vec<(String, String)>, limit: u64) -> Result<Vec<u8>> {
        /// Forgets the fetch's task however the fetch ends, including when the caller stops waiting.
        struct Forget(Manager, TaskId);
        impl Drop for Forget {
            fn drop(&mut self) {
                let _ = self.0.remove(self.1.as_str(), false);
            }
        }
        let id =
            self.enqueue(Request { url: url.to_string(), headers, memory_limit: Some(limit), priority: i32::MAX, ..Default::default() })?;
        let _forget = Forget(self.clone(), id.clone());
        let info = self.wait(id.as_str()).await?;
        match info.state {
            TaskState::Completed => self.take_bytes(id.as_str()),
            _ => Err(info
                .error
                .as_ref()
                .map(Error::from)
                .unwrap_or_else(|| Error::new(ErrorCode::Cancelled, format!("fetch ended {}", info.state)))),
        }
    }

    /// Subscribes to events.
    pub fn subscribe(&self) -> Subscription {
        self.inner.events.subscribe()
    }

    /// Current limits.
    pub fn limits(&self) -> Limits {
        self.inner.sched.lock().limits
    }

    /// Changes limits at run time.
    pub fn set_limits(&self, limits: Limits) -> Result<()> {
        limits.validate()?;
        {
            let mut s = self.inner.sched.lock();
            s.limits = limits;
            self.inner.env.hosts.set_cap(limits.max_connections_per_host);
            self.inner.env.config.write().limits = limits;
        }
        self.inner.dispatch();
        Ok(())
    }

    /// Connections held right now, per `host:port`.
    pub fn connections_per_host(&self) -> Vec<(String, u32)> {
        self.inner.env.hosts.snapshot()
    }

    /// Whether any task is queued to run or running (held tasks of a directory opened without
    /// resuming do not count). Cheap: one lock, no allocation.
    pub fn is_busy(&self) -> bool {
        let s = self.inner.sched.lock();
        !s.ready.is_empty() || !s.running.is_empty()
    }

    /// Returns once no task is queued to run or running ([`Manager::is_busy`] is false), or the
    /// manager shuts down. Woken by the scheduler the moment the last runner exits, so a batch that
    /// takes a tenth of a second is not padded by a polling interval; paths that leave the
    /// scheduler idle without passing through it are caught by a slow re-check.
    pub async fn wait_idle(&self) {
        loop {
            let woken = self.inner.idle.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.is_busy() || self.inner.shutting_down.load(Ordering::Acquire) {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), woken).await;
        }
    }

    /// Number of tasks with a live runner.
    pub fn running_count(&self) -> usize {
        self.inner.sched.lock().running.len()
    }

    /// Stops every runner (they sync their partial files and journals), waits for them, and
    /// flushes the journal. Running tasks stay queued in the table and resume when the directory is
    /// opened again. The manager accepts no new work afterwards.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<tokio::task::JoinHandle<()>> = {
            let mut s = self.inner.sched.lock();
            for id in s.running.keys() {
                if let Some(e) = self.inner.tasks.read().get(id) {
                    if let Some(run) = e.inner.lock().run.as_mut() {
                        run.reason.get_or_insert(StopReason::Shutdown);
                        run.stop.cancel();
                    }
                }
            }
            s.publishing.clear();
            s.running.drain().map(|(_, h)| h).collect()
        };
        for h in handles {
            let _ = h.await;
        }
        self.inner.env.journal.flushed().await;
        self.inner.events.close();
        // Wakes whoever waits on a task (see `wait`); most tasks have no one.
        for e in self.inner.tasks.read().values().filter(|e| e.state_tx.receiver_count() > 0) {
            e.state_tx.send_modify(|_| {});
        }
        self.inner.idle.notify_waiters();
    }

    /// Syncs every running download's part file and journal now, so that everything transferred so
    /// far survives even a power loss (call it when the app goes to the background). Waits at most
    /// ten seconds per task.
    pub async fn flush(&self) {
        let targets: Vec<(Arc<tokio::sync::Notify>, watch::Receiver<u64>)> = {
            let ids: Vec<TaskId> = self.inner.sched.lock().running.keys().cloned().collect();
            let tasks = self.inner.tasks.read();
            ids.iter()
                .filter_map(|id| tasks.get(id))
                .filter_map(|e| e.inner.lock().run.as_ref().map(|r| (r.flush.clone(), r.flushed.clone())))
                .collect()
        };
        let mut waits = Vec::new();
        for (request, mut flushed) in targets {
            let before = *flushed.borrow_and_update();
            request.notify_one();
            waits.push(async move {
                let done = async {
                    while *flushed.borrow_and_update() == before {
                        if flushed.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), done).await;
            });
        }
        futures_util::future::join_all(waits).await;
        self.inner.env.journal.flushed().await;
    }

    /// Blocking form of [`Manager::shutdown`] for threads outside the engine's runtime.
    pub fn shutdown_blocking(&self) {
        let m = self.clone();
        runtime::handle().block_on(async move { m.shutdown().await });
    }

    /// Reads the task list of a state directory without opening it for writing (another process
    /// may own it).
    pub fn list_read_only(dir: impl AsRef<Path>) -> Result<Vec<TaskInfo>> {
        let (_store, stored) = Store::open_read_only(dir.as_ref())?;
        Ok(stored.into_iter().filter_map(entry_from_stored).map(|e| e.info()).collect())
    }
}

fn entry_from_stored(t: StoredTask) -> Option<Arc<TaskEntry>> {
    let StoredTask { row, ranges } = t;
    let url = url::Url::parse(&row.url).ok()?;
    let spec = TaskSpec {
        id: TaskId::from_stored(row.id.clone()),
        url,
        output: Output::File(PathBuf::from(&row.destination)),
        headers: row.headers.clone(),
        connections: row.connections,
        sha256: row.sha256.clone(),
        priority: row.priority,
        overwrite: row.overwrite,
    };
    let validator = Validator::from_columns(row.etag.clone(), row.last_modified.clone());
    let bytes = if ranges.is_empty() {
        if row.state == TaskState::Completed {
            row.bytes
        } else {
            0
        }
    } else {
        ranges.iter().map(|r| r.written - r.start).sum()
    };
    let inner = EntryInner {
        error: row.error,
        resource: Resource { total: row.total, validator },
        journal: ranges,
        // The identity, also out of a publish mark that the open found stale.
        part_file: row.part_file.as_deref().map(|p| crate::engine::storage::part_file::Identity::file_part(p).to_string()),
        ..EntryInner::new(row.state, row.priority, row.updated_ms)
    };
    Some(TaskEntry::new(spec, row.seq, row.created_ms, true, LiveProgress::new(bytes, row.total), inner))
}

fn task_not_found(id: &str) -> Error {
    Error::new(ErrorCode::TaskNotFound, format!("no task with id '{id}'"))
}

impl Inner {
    fn entry(&self, id: &str) -> Result<Arc<TaskEntry>> {
        self.find(id).ok_or_else(|| task_not_found(id))
    }

    /// The live task `id`, if there is one (no error built for the common miss of a new id).
    fn find(&self, id: &str) -> Option<Arc<TaskEntry>> {
        self.tasks.read().get(id).filter(|e| !e.removed.load(Ordering::Acquire)).cloned()
    }

    /// Accepts work again after a shutdown (opening a directory whose manager is shut down but
    /// still alive in this process gives that manager back).
    fn revive(self: &Arc<Self>) {
        if !self.shutting_down.swap(false, Ordering::SeqCst) {
            return;
        }
        let resume = self.env.config.read().resume_on_open;
        {
            let mut s = self.sched.lock();
            for e in self.tasks.read().values() {
                if e.state() == TaskState::Queued && !s.ready.contains(&e.spec.id) {
                    if resume {
                        s.ready.push(e.spec.id.clone(), e.spec.host_key(), e.inner.lock().priority, e.seq);
                    } else {
                        e.inner.lock().dormant = true;
                    }
                }
            }
        }
        self.dispatch();
    }

    fn shutting_down_error() -> Error {
        Error::new(ErrorCode::ShutDown, "the manager is shut down")
    }

    /// The single place where a task changes state.
    fn transition(&self, e: &TaskEntry, t: Transition, error: Option<TaskError>) -> Result<TaskState> {
        self.transition_with(e, t, error, true)
    }

    /// [`Inner::transition`]; `persist = false` when the caller already wrote the new state (a
    /// completion recorded by the publisher together with its batch).
    fn transition_with(&self, e: &TaskEntry, t: Transition, error: Option<TaskError>, persist: bool) -> Result<TaskState> {
        let (from, to, error) = {
            let mut g = e.inner.lock();
            let from = g.state;
            let to = next_state(from, t)?;
            g.state = to;
            match t {
                Transition::Fail => g.error = error,
                Transition::Start | Transition::Resume | Transition::Complete | Transition::Cancel => g.error = None,
                _ => {}
            }
            g.updated_ms = now_ms();
            if !to.is_active() {
                g.speed.reset();
            }
            // Running is not written: the first journal commit marks it (see store::tx::set_bytes),
            // and a crash turns running into queued anyway.
            if persist && e.persisted && !e.removed.load(Ordering::Acquire) && to != TaskState::Running {
                let bytes = e.live.bytes.load(Ordering::Relaxed);
                let id = e.spec.id.as_str();
                let written = if to == TaskState::Completed {
                    self.env.store.complete(id, bytes)
                } else {
                    self.env.store.set_state(id, to, g.error.as_ref(), bytes)
                };
                if let Err(err) = written {
                    tracing::warn!("could not persist state of {}: {err}", e.spec.id);
                }
            }
            (from, to, g.error.clone())
        };
        e.state_tx.send_replace(to);
        self.events.state(StateEvent { id: e.spec.id.clone(), from: Some(from), to, error });
        Ok(to)
    }

    /// Enqueues in chunks, each one transaction followed by a dispatch: the first downloads start
    /// after a few tasks are recorded instead of after the whole batch (recording 10,000 tasks takes
    /// tens of milliseconds). Duplicates across chunks are caught like those within one, because
    /// each chunk sees the tasks and claims of the chunks before it.
    fn enqueue_batch(self: &Arc<Self>, requests: Vec<Request>) -> Vec<Result<TaskId>> {
        const FIRST_CHUNK: usize = 32;
        const CHUNK: usize = 512;
        let mut results = Vec::with_capacity(requests.len());
        let mut rest = requests.into_iter();
        let mut size = FIRST_CHUNK;
        loop {
            let chunk: Vec<Request> = rest.by_ref().take(size).collect();
            if chunk.is_empty() {
                return results;
            }
            results.extend(self.enqueue_chunk(chunk));
            size = CHUNK;
        }
    }

    fn enqueue_chunk(self: &Arc<Self>, requests: Vec<Request>) -> Vec<Result<TaskId>> {
        if self.shutting_down.load(Ordering::Acquire) {
            return requests.iter().map(|_| Err(Self::shutting_down_error())).collect();
        }
        // Validate outside the lock; an id that already exists is checked for idempotency first,
        // because its destination may legitimately exist by now.
        let mut dirs = crate::engine::model::request::DirChecks::default();
        let prepared: Vec<Result<Prepared>> = requests
            .into_iter()
            .map(|r| {
                if let Some(id) = r.task_id.as_deref() {
                    if let Some(existing) = self.find(id) {
                        // The same request: URL, output, headers and checksum (as validation
                        // normalises them). Priority, connections and overwrite may differ.
                        let same = r.as_given().is_ok_and(|given| existing.spec.same_request(&given));
                        return if same {
                            Ok(Prepared::Existing(existing.spec.id.clone()))
                        } else {
                            Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{id}' exists with a different request")))
                        };
                    }
                }
                r.validate_with(&mut dirs).map(Prepared::New)
            })
            .collect();
        let mut results: Vec<Result<TaskId>> = Vec::with_capacity(prepared.len());
        let mut new_entries: Vec<Arc<TaskEntry>> = Vec::new();
        let mut rows: Vec<TaskRow> = Vec::new();
        let mut s = self.sched.lock();
        // The claims of this chunk's new tasks, by [`path_key`]: they join `claims` once recorded.
        let mut batch_dests: Map<OsString, TaskId> = Map::with_capacity_and_hasher(prepared.len(), Default::default());
        {
            let tasks = self.tasks.read();
            // Sized once: growing them rehashed every path key several times.
            let mut batch_ids: Map<TaskId, usize> = Map::with_capacity_and_hasher(prepared.len(), Default::default());
            s.claims.reserve(prepared.len());
            for p in prepared {
                let spec = match p {
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                    Ok(Prepared::Existing(id)) => {
                        results.push(Ok(id));
                        continue;
                    }
                    Ok(Prepared::New(spec)) => spec,
                };
                if let Some(existing) = tasks.get(&spec.id) {
                    results.push(if existing.spec.same_request(&spec) && !existing.removed.load(Ordering::Acquire) {
                        Ok(spec.id.clone())
                    } else {
                        Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{}' already exists with a different request", spec.id)))
                    });
                    continue;
                }
                if let Some(&j) = batch_ids.get(&spec.id) {
                    let same = new_entries[j].spec.same_request(&spec);
                    results.push(if same {
                        Ok(spec.id.clone())
                    } else {
                        Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{}' appears twice in the batch", spec.id)))
                    });
                    continue;
                }
                if let Output::File(dest) = &spec.output {
                    let key = path_key(dest);
                    if let Some(busy) = claim_conflict(&s.claims, &batch_dests, dest, &key) {
                        results.push(Err(busy));
                        continue;
                    }
                    batch_dests.insert(key.into_owned(), spec.id.clone());
                }
                let seq = s.next_seq;
                s.next_seq += 1;
                let now = now_ms();
                let persisted = matches!(spec.output, Output::File(_));
                if persisted {
                    rows.push(TaskRow {
                        id: spec.id.as_str().to_string(),
                        seq,
                        url: spec.url.to_string(),
                        destination: spec.output.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
                        headers: spec.headers.clone(),
                        connections: spec.connections,
                        sha256: spec.sha256.clone(),
                        priority: spec.priority,
                        overwrite: spec.overwrite,
                        state: TaskState::Queued,
                        total: None,
                        etag: None,
                        last_modified: None,
                        bytes: 0,
                        error: None,
                        created_ms: now,
                        updated_ms: now,
                        part_file: None,
                    });
                }
                let inner = EntryInner::new(TaskState::Queued, spec.priority, now);
                let entry = TaskEntry::new(spec, seq, now, persisted, LiveProgress::new(0, None), inner);
                // validate_destination refused an existing part file unless overwriting.
                entry.no_part_yet.store(!entry.spec.overwrite, Ordering::Relaxed);
                batch_ids.insert(entry.spec.id.clone(), new_entries.len());
                results.push(Ok(entry.spec.id.clone()));
                new_entries.push(entry);
            }
        }
        if let Err(e) = self.env.store.insert_tasks(&rows) {
            let failed: Vec<TaskId> = new_entries.iter().map(|e| e.spec.id.clone()).collect();
            for r in results.iter_mut() {
                if matches!(r, Ok(id) if failed.contains(id)) {
                    *r = Err(e.clone());
                }
            }
            return results;
        }
        s.claims.extend(batch_dests);
        {
            let mut tasks = self.tasks.write();
            for e in &new_entries {
                s.ready.push(e.spec.id.clone(), e.spec.host_key(), e.spec.priority, e.seq);
                tasks.insert(e.spec.id.clone(), e.clone());
            }
        }
        drop(s);
        for e in &new_entries {
            self.events.state(StateEvent { id: e.spec.id.clone(), from: None, to: TaskState::Queued, error: None });
        }
        self.dispatch();
        results
    }

    fn dispatch(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut s = self.sched.lock();
        loop {
            if s.running.len() - s.publishing.len()
                >= (s.limits.max_running_tasks as usize).min(crate::engine::storage::fd_table::running_cap())
            {
                break;
            }
            // Each waiting file holds a descriptor; a publisher slower than the network must not
            // let them pile up to the descriptor limit.
            if s.publishing.len() >= crate::engine::storage::fd_table::publish_backlog() {
                break;
            }
            let Sched { ready, running, .. } = &mut *s;
            let hosts = &self.env.hosts;
            let Some((id, host)) = ready.pop_best(|h| hosts.has_free(h), |id| running.contains_key(id)) else { break };
            let Some(entry) = self.tasks.read().get(&id).cloned() else { continue };
            let Some(slot) = hosts.try_acquire(&host) else {
                ready.push(id, host, entry.inner.lock().priority, entry.seq);
                break;
            };
            if self.transition(&entry, Transition::Start, None).is_err() {
                continue;
            }
            let stop = CancellationToken::new();
            let (signal, flush, flushed) = FlushSignal::pair();
            {
                let mut g = entry.inner.lock();
                g.run = Some(RunControl { stop: stop.clone(), reason: None, flush, flushed });
                g.dormant = false;
            }
            let inner = self.clone();
            let weak = Arc::downgrade(self);
            let task_id = id.clone();
            let transferred = Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let mut s = inner.sched.lock();
                    if s.running.contains_key(&task_id) {
                        s.publishing.insert(task_id);
                    }
                    drop(s);
                    inner.dispatch();
                }
            });
            let handle = runtime::handle().spawn(async move {
                // Boxed: the runner's state machine is kilobytes, and the task cell would copy it.
                let run = Box::pin(runner::run(inner.env.clone(), entry.clone(), stop, slot, signal, transferred));
                let outcome = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(o) => o,
                    Err(_) => Outcome::Failed(Error::internal("the download runner panicked")),
                };
                inner.on_exit(&entry, outcome);
            });
            s.running.insert(id, handle);
        }
        if s.ready.is_empty() && s.running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    fn on_exit(self: &Arc<Self>, entry: &Arc<TaskEntry>, outcome: Outcome) {
        {
            let mut s = self.sched.lock();
            s.running.remove(&entry.spec.id);
            s.publishing.remove(&entry.spec.id);
            let reason = entry.inner.lock().run.take().and_then(|r| r.reason);
            let state = entry.state();
            let id = entry.spec.id.as_str();
            match outcome {
                Outcome::Completed { bytes, recorded } => {
                    entry.live.bytes.store(bytes, Ordering::Relaxed);
                    entry.live.total.store(bytes, Ordering::Relaxed);
                    self.events.progress(ProgressEvent {
                        id: entry.spec.id.clone(),
                        bytes,
                        total: Some(bytes),
                        speed: 0.0,
                        eta_seconds: Some(0.0),
                    });
                    // Paused (and perhaps resumed again) while publishing: the file is in place,
                    // so the task is completed. The detour is not persisted: the table must go
                    // straight to completed, whatever a pause wrote meanwhile.
                    let detour = state != TaskState::Running;
                    if state == TaskState::Paused {
                        let _ = self.transition_with(entry, Transition::Resume, None, false);
                    }
                    if matches!(entry.state(), TaskState::Queued) {
                        s.ready.remove(&entry.spec.id);
                        entry.inner.lock().dormant = false;
                        let _ = self.transition_with(entry, Transition::Start, None, false);
                    }
                    let _ = self.transition_with(entry, Transition::Complete, None, !recorded || detour);
                }
                Outcome::Failed(_) | Outcome::Stopped if reason == Some(StopReason::Cancel) => {
                    // The partial goes first: whoever sees "cancelled" must find no part file.
                    self.discard_partial(entry);
                    if !matches!(state, TaskState::Cancelled | TaskState::Completed) {
                        let _ = self.transition(entry, Transition::Cancel, None);
                    }
                }
                Outcome::Failed(e) => {
                    if state == TaskState::Running {
                        let _ = self.transition(entry, Transition::Fail, Some((&e).into()));
                    }
                }
                Outcome::Stopped => {
                    if reason == Some(StopReason::Shutdown) && state == TaskState::Running {
                        let _ = self.transition(entry, Transition::Recover, None);
                    }
                }
            }
            let state = entry.state();
            let removed = entry.removed.load(Ordering::Acquire);
            if state == TaskState::Cancelled || (removed && state != TaskState::Completed) {
                self.discard_partial(entry);
            }
            if removed && state == TaskState::Completed && entry.delete_file.load(Ordering::Acquire) {
                // Removed with its file while the file was being published.
                if let Some(dest) = entry.spec.output.path() {
                    let _ = std::fs::remove_file(dest);
                }
            }
            if removed {
                if let Err(e) = self.env.store.delete_task(id) {
                    tracing::warn!("could not delete {id}: {e}");
                }
                let mut tasks = self.tasks.write();
                if tasks.get(&entry.spec.id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                    tasks.remove(&entry.spec.id);
                }
            }
            if removed || matches!(state, TaskState::Completed | TaskState::Cancelled) {
                release_claim(&mut s, entry);
            }
            if state == TaskState::Queued && !s.ready.contains(&entry.spec.id) && !self.shutting_down.load(Ordering::Acquire) {
                s.ready.push(entry.spec.id.clone(), entry.spec.host_key(), entry.inner.lock().priority, entry.seq);
            }
        }
        self.dispatch();
    }

    /// Removes a task's partial file and journal.
    fn discard_partial(&self, entry: &TaskEntry) {
        if let Output::File(dest) = &entry.spec.output {
            let _ = std::fs::remove_file(part_path(dest));
        }
        entry.live.bytes.store(0, Ordering::Relaxed);
        if let Err(e) = entry.forget_resource(&self.env.store) {
            tracing::warn!("could not clear the journal of {}: {e}", entry.spec.id);
        }
    }

    /// Asks a live runner to stop; a cancel, once asked for, is never downgraded. False when no
    /// runner is alive.
    fn stop_runner(entry: &TaskEntry, reason: StopReason) -> bool {
        let mut g = entry.inner.lock();
        match g.run.as_mut() {
            Some(run) => {
                if run.reason != Some(StopReason::Cancel) {
                    run.reason = Some(reason);
                }
                run.stop.cancel();
                true
            }
            None => false,
        }
    }

    fn cancel_pending(entry: &TaskEntry) -> bool {
        entry.inner.lock().run.as_ref().is_some_and(|r| r.reason == Some(StopReason::Cancel))
    }

    fn pause(self: &Arc<Self>, id: &str) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        if Self::cancel_pending(&e) {
            return Ok(());
        }
        match e.state() {
            TaskState::Paused => Ok(()),
            TaskState::Queued => {
                s.ready.remove(&e.spec.id);
                e.inner.lock().dormant = false;
                self.transition(&e, Transition::Pause, None).map(drop)
            }
            TaskState::Running => {
                self.transition(&e, Transition::Pause, None)?;
                Self::stop_runner(&e, StopReason::Pause);
                Ok(())
            }
            other => Err(Error::new(ErrorCode::InvalidState, format!("cannot pause a task that is {other}"))),
        }
    }

    fn resume(self: &Arc<Self>, id: &str) -> Result<()> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Self::shutting_down_error());
        }
        {
            let mut s = self.sched.lock();
            let e = self.entry(id)?;
            match e.state() {
                TaskState::Running => return Ok(()),
                TaskState::Queued => {
                    let was_dormant = std::mem::replace(&mut e.inner.lock().dormant, false);
                    if !was_dormant && s.ready.contains(&e.spec.id) {
                        // Already waiting its turn (a batch resumed right after enqueueing it).
                        return Ok(());
                    }
                }
                TaskState::Paused | TaskState::Failed => {
                    self.transition(&e, Transition::Resume, None)?;
                }
                other => return Err(Error::new(ErrorCode::InvalidState, format!("cannot resume a task that is {other}"))),
            }
            let priority = e.inner.lock().priority;
            s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
        }
        self.dispatch();
        Ok(())
    }

    fn cancel(self: &Arc<Self>, id: &str) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        match e.state() {
            TaskState::Completed | TaskState::Cancelled => Ok(()),
            _ => {
                s.ready.remove(&e.spec.id);
                // With a live runner the task turns cancelled once the runner stopped and the
                // partial file is gone (see on_exit); otherwise right now, in the same order.
                if !Self::stop_runner(&e, StopReason::Cancel) {
                    self.discard_partial(&e);
                    self.transition(&e, Transition::Cancel, None)?;
                    release_claim(&mut s, &e);
                }
                Ok(())
            }
        }
    }

    fn remove(self: &Arc<Self>, id: &str, delete_file: bool) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        e.delete_file.store(delete_file, Ordering::Release);
        e.removed.store(true, Ordering::Release);
        s.ready.remove(&e.spec.id);
        let state = e.state();
        if delete_file && state == TaskState::Completed {
            if let Some(dest) = e.spec.output.path() {
                let _ = std::fs::remove_file(dest);
            }
        }
        if !Self::stop_runner(&e, StopReason::Cancel) {
            if state != TaskState::Completed {
                self.discard_partial(&e);
            }
            self.env.store.delete_task(e.spec.id.as_str())?;
            self.tasks.write().remove(&e.spec.id);
            release_claim(&mut s, &e);
        }
        Ok(())
    }

    fn set_priority(self: &Arc<Self>, id: &str, priority: i32) -> Result<()> {
        {
            let mut s = self.sched.lock();
            let e = self.entry(id)?;
            e.inner.lock().priority = priority;
            if e.persisted {
                self.env.store.set_priority(id, priority)?;
            }
            if s.ready.contains(&e.spec.id) {
                s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
            }
        }
        self.dispatch();
        Ok(())
    }
}

enum Prepared {
    Existing(TaskId),
    New(TaskSpec),
}

/// Why `dest` cannot be claimed: it is a live task's destination, a live task's part file
/// (`<dest>` = `<other>.part`), or its own part file is a live task's destination. Either way two
/// tasks would write one file.
/// Whether `dest` (whose [`path_key`] is `key`) is taken: by another task, as the part file of
/// another task's destination, or as the destination whose part file this would be.
fn claim_conflict(claims: &Map<OsString, TaskId>, batch: &Map<OsString, TaskId>, dest: &Path, key: &OsStr) -> Option<Error> {
    let owner = |key: &OsStr| claims.get(key).or_else(|| batch.get(key)).cloned();
    if let Some(owner) = owner(key) {
        return Some(Error::new(ErrorCode::DestinationBusy, format!("'{}' is already the destination of task '{owner}'", dest.display())));
    }
    let part = part_path(dest);
    if let Some(owner) = owner(&path_key(&part)) {
        return Some(Error::new(
            ErrorCode::DestinationBusy,
            format!("'{}' (where this download would be written) is the destination of task '{owner}'", part.display()),
        ));
    }
    use std::os::unix::ffi::OsStrExt;
    let stem = dest.file_name()?.as_bytes().strip_suffix(b".part").filter(|s| !s.is_empty())?;
    let other = dest.with_file_name(std::ffi::OsStr::from_bytes(stem));
    owner(&path_key(&other))
        .map(|owner| Error::new(ErrorCode::DestinationBusy, format!("'{}' is the partial file of task '{owner}'", dest.display())))
}

fn release_claim(s: &mut Sched, e: &TaskEntry) {
    if let Some(dest) = e.spec.output.path() {
        // One lookup in the common case; another task's claim (rare) is put back.
        if let Some((path, owner)) = s.claims.remove_entry(&*path_key(dest)) {
            if owner != e.spec.id {
                s.claims.insert(path, owner);
            }
        }
    }
}

/// Emits coalesced progress events for running tasks at the configured cadence.
async fn ticker(inner: Weak<Inner>, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let running: Vec<Arc<TaskEntry>> = {
            let ids: Vec<TaskId> = inner.sched.lock().running.keys().cloned().collect();
            let tasks = inner.tasks.read();
            ids.iter().filter_map(|id| tasks.get(id).cloned()).collect()
        };
        let now = Instant::now();
        for e in running {
            let bytes = e.live.bytes.load(Ordering::Relaxed);
            let total = e.live.total();
            let speed = {
                let mut g = e.inner.lock();
                if g.state != TaskState::Running {
                    continue;
                }
                let speed = g.speed.sample(now, bytes);
                if g.last_reported == Some(bytes) {
                    continue;
                }
                g.last_reported = Some(bytes);
                speed
            };
            let eta_seconds = match total {
                Some(t) if speed > 0.0 => Some(t.saturating_sub(bytes) as f64 / speed),
                _ => None,
            };
            inner.events.progress(ProgressEvent { id: e.spec.id.clone(), bytes, total, speed, eta_seconds });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_types_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<super::Manager>();
        is::<super::TaskInfo>();
        is::<super::Subscription>();
        is::<crate::engine::model::events::Event>();
    }
}
