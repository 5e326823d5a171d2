//! The engine's public face: a [`Manager`] per state directory holds the global task table,
//! schedules runners, and reports status and events.
//!
//! Several processes may open one state directory. Each runs the tasks it owns (see
//! `storage::owners`: those it enqueued, resumed, or took over from a dead process) and mirrors the
//! others from the table (`shared.rs`); a pause, cancel or remove of a task another process runs
//! is written to the table for that process to apply (`remote.rs`).
//!
//! Lock order, everywhere: scheduler → task entry → store → event hub. Every state change goes
//! through [`Inner::transition`], which applies [`next_state`], persists the row, wakes waiters and
//! publishes the event, in that order.

use super::runner::{self, Env, Outcome};
use super::runtime;
use super::scheduler::{HostSlots, ReadyQueue};
use super::table::{EntryInner, FlushSignal, LiveLease, LiveProgress, Resource, RunControl, StopReason, TaskEntry};
use crate::engine::handoff::staging::Staging;
use crate::engine::http::transport::Transport;
use crate::engine::http::verdict::Validator;
use crate::engine::model::config::{Config, Limits};
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::events::{EventHub, ProgressEvent, StateEvent, Subscription};
use crate::engine::model::hash::{claim_key, Map, Set};
use crate::engine::model::request::Request;
use crate::engine::model::roots::{unknown_root, Roots};
use crate::engine::model::task::{next_state, Output, TaskError, TaskId, TaskInfo, TaskSpec, TaskState, Transition};
use crate::engine::ranges::map::SegmentRow;
use crate::engine::storage::journal::Journal;
use crate::engine::storage::owners::Owners;
use crate::engine::storage::part_file::part_path;
use crate::engine::storage::store::{now_ms, tx, Control, LeaseState, Recovery, Store, StoredTask, TaskRow};
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

mod budget;
mod caps;
mod control;
mod credentials;
mod dispatch;
mod enqueue;
mod handoff;
mod ingest;
mod leases;
mod network;
mod open;
mod remote;
mod shared;
mod transition;

pub use budget::{RunBudget, RunOutcome, StopCause};
use enqueue::release_claim;
pub use handoff::{HandoffOptions, HandoffReport};
pub use ingest::IngestOutcome;
pub use leases::{OsTask, ReconcileReport, STALE_LEASE};
use transition::ticker;

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
    /// Destinations of unfinished tasks (this process's and the others'), keyed by [`claim_key`].
    claims: Map<OsString, TaskId>,
    next_seq: i64,
    limits: Limits,
    /// Stored tasks whose lock in `owners` this process holds: queued here to run, or running.
    owned: Map<TaskId, i64>,
    /// Tasks queued or running in the table under another process, as last seen: checked for a
    /// dead owner a few hundred at a time, each tick (`foreign_order` is the rotation).
    foreign: Set<TaskId>,
    foreign_order: std::collections::VecDeque<TaskId>,
    /// The table revision this process's view of the other processes' tasks is at.
    rev: i64,
    /// A dispatch found a host's connection slots held by other processes: try again next tick.
    starved: bool,
    /// The network as the host last reported it; `None` until it does (see `network.rs`).
    network: Option<crate::engine::model::network::NetworkState>,
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
    /// Where chunks the OS fetched wait for their ingest.
    staging: Staging,
    /// Some task may have live leases (the ticker then reports their progress too).
    leased: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.get_mut().take() {
            t.abort();
        }
    }
}

impl Manager {
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

    /// A task's status. A task another process runs shows what the table last said (its progress
    /// at the journal's cadence, seen within a progress interval); a task this process does not
    /// know yet is looked up in the table.
    pub fn status(&self, id: &str) -> Result<TaskInfo> {
        Ok(self.inner.entry_or_sync(id)?.info())
    }

    /// A task's state alone: cheaper than [`Manager::status`] when that is all a caller needs
    /// (the CLI checks a whole batch with it before it exits).
    pub fn state(&self, id: &str) -> Result<TaskState> {
        Ok(self.inner.entry_or_sync(id)?.state())
    }

    /// Whether this process runs the task, or has it queued to run (false for a task another
    /// process runs, and for one nobody runs).
    pub fn runs_here(&self, id: &str) -> bool {
        let s = self.inner.sched.lock();
        self.inner.find(id).is_some_and(|e| s.ready.contains(&e.spec.id) || s.running.contains_key(&e.spec.id))
    }

    /// Every task, in enqueue order: this process's and the other processes' (as the table says).
    pub fn list(&self) -> Vec<TaskInfo> {
        self.inner.sync();
        let tasks = self.inner.tasks.read();
        let mut entries: Vec<&Arc<TaskEntry>> = tasks.values().collect();
        entries.sort_by_key(|e| e.seq);
        entries.into_iter().map(|e| e.info()).collect()
    }

    /// Pauses a task: connections stop, the partial file and journal stay.
    pub fn pause(&self, id: &str) -> Result<()> {
        self.inner.pause(id)
    }

    /// Pauses every task this process has queued or running, and those queued that nobody runs
    /// (not those other processes run); returns how many.
    pub fn pause_all(&self) -> usize {
        let ids: Vec<TaskId> = {
            let s = self.inner.sched.lock();
            let tasks = self.inner.tasks.read();
            tasks
                .values()
                .filter(|e| e.state().is_active() && (shared::is_mine(&s, e) || e.inner.lock().dormant))
                .map(|e| e.spec.id.clone())
                .collect()
        };
        ids.iter().filter(|id| self.inner.pause(id.as_str()).is_ok()).count()
    }

    /// Resumes a paused or failed task (continuing from its journal) in this process; a task
    /// queued or running in another process is left to it.
    pub fn resume(&self, id: &str) -> Result<()> {
        self.inner.resume(id)
    }

    /// Resumes everything unfinished that no other process runs: queued, paused, and failed
    /// tasks. Returns how many.
    pub fn resume_all(&self) -> usize {
        self.inner.sync();
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

    /// Forgets a task. Its partial file is removed; with `delete_file`, a completed file too. A task
    /// stored under a root this manager does not declare is forgotten with its files left where
    /// they are (with `delete_file`: `root_unknown`).
    pub fn remove(&self, id: &str, delete_file: bool) -> Result<()> {
        self.inner.remove(id, delete_file)
    }

    /// Changes a queued task's priority (higher runs first).
    pub fn set_priority(&self, id: &str, priority: i32) -> Result<()> {
        self.inner.set_priority(id, priority)
    }

    /// Waits until the task is no longer queued or running (or the manager shuts down, or the task
    /// is queued but held because the directory was opened without resuming), and returns its status.
    /// Returns at once for a task stored under a root this manager does not declare.
    pub async fn wait(&self, id: &str) -> Result<TaskInfo> {
        let entry = self.inner.entry(id)?;
        let mut rx = entry.state_tx.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            let held = state == TaskState::Queued && entry.inner.lock().dormant;
            let gone = entry.removed.load(Ordering::Acquire);
            // A task this manager cannot resolve does not move here (see `open`).
            let unresolved = entry.spec.output.unresolved().is_some();
            if !state.is_active() || held || gone || unresolved || self.inner.shutting_down.load(Ordering::Acquire) {
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
    /// resuming, and tasks waiting for the network, do not count). Cheap: one lock, no allocation.
    pub fn is_busy(&self) -> bool {
        let s = self.inner.sched.lock();
        s.ready.has_eligible() || !s.running.is_empty()
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
    /// opened again (or in another process that has it open with `resume_on_open`: this process
    /// gives up its tasks). The manager accepts no new work afterwards.
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
        self.inner.disown_all();
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
}

fn task_not_found(id: &str) -> Error {
    Error::new(ErrorCode::TaskNotFound, format!("no task with id '{id}'"))
}

impl Inner {
    fn entry(&self, id: &str) -> Result<Arc<TaskEntry>> {
        self.find(id).ok_or_else(|| task_not_found(id))
    }

    /// [`Inner::entry`], looking at the table's changes first when the task is not known here
    /// (another process may have just enqueued it).
    fn entry_or_sync(self: &Arc<Self>, id: &str) -> Result<Arc<TaskEntry>> {
        match self.find(id) {
            Some(e) => Ok(e),
            None => {
                self.sync();
                self.entry(id)
            }
        }
    }

    /// This process's ownership locks.
    fn owners(&self) -> &Owners {
        self.env.store.owners().expect("a manager's table is opened for writing")
    }

    /// The live task `id`, if there is one (no error built for the common miss of a new id).
    fn find(&self, id: &str) -> Option<Arc<TaskEntry>> {
        self.tasks.read().get(id).filter(|e| !e.removed.load(Ordering::Acquire)).cloned()
    }

    fn shutting_down_error() -> Error {
        Error::new(ErrorCode::ShutDown, "the manager is shut down")
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
