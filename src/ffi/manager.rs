//! `DownloadManager`: the exported object over one state directory.

use super::callbacks::{ChunkSink, EventListener, EventStream, ListenerRegistration, SinkAdapter};
use super::error::DownloadError;
use super::gate::{gated, Foreign};
use super::types::{BatchItem, DownloadRequest, HttpHeader, Limits, ManagerConfig, TaskStatus};
use crate::engine::{self, runtime};
use std::sync::Arc;

/// A download manager over one state directory (its persistent task table). Opening the same
/// directory twice in one process gives the same underlying manager.
///
/// Several processes may have one state directory open at once (an app and its extension or
/// widget in an App Group container, an app and its worker process). Shared between them: the
/// task table (every process lists every task, with the progress its owner's journal records,
/// seen within a progress interval), destination claims and ids, the per-host connection cap, and
/// pause / cancel / remove (a task another process runs is paused, cancelled or removed by that
/// process within a progress interval). Not shared: each process runs only the tasks it enqueued
/// or resumed (or, with `resume_on_open`, took over from a process that died), events report
/// what this process sees, `max_running_tasks` is per process, and memory and stream outputs stay
/// in the process that asked for them.
#[derive(uniffi::Object)]
pub struct DownloadManager {
    pub(crate) inner: engine::Manager,
}

type R<T> = Result<T, DownloadError>;

#[uniffi::export]
impl DownloadManager {
    /// Opens (creating if needed) the manager of `state_dir`, which other processes may have open
    /// too. Errors: `LocksUnavailable` where the directory's file system has no working file locks
    /// (processes could not tell who runs a task), `PermissionDenied` where it cannot be written,
    /// `StateDirLocked` while an older version of Ferry (one process at a time) holds it.
    /// `config.roots` names the directories whose paths may change between launches (an iOS app's
    /// Documents and Caches, an App Group container): tasks under them follow them (see
    /// `ManagerConfig.roots`); a bad root is `InvalidConfig`.
    #[uniffi::constructor(default(config = None))]
    pub fn open(state_dir: String, config: Option<ManagerConfig>) -> R<Arc<Self>> {
        let inner = engine::Manager::open(state_dir, config.unwrap_or_default().into())?;
        Ok(Arc::new(DownloadManager { inner }))
    }

    /// The state directory.
    pub fn state_dir(&self) -> String {
        self.inner.dir().to_string_lossy().into_owned()
    }

    /// Enqueues a download; returns its task id.
    pub fn enqueue(&self, request: DownloadRequest) -> R<String> {
        Ok(self.inner.enqueue(request.into_engine(None))?.as_str().to_string())
    }

    /// Enqueues many downloads (the first start while the rest are recorded); one result per request, in order.
    pub fn enqueue_batch(&self, requests: Vec<DownloadRequest>) -> Vec<BatchItem> {
        let reqs = requests.into_iter().map(|r| r.into_engine(None)).collect();
        self.inner
            .enqueue_batch(reqs)
            .into_iter()
            .map(|r| match r {
                Ok(id) => BatchItem::Enqueued { task_id: id.as_str().to_string() },
                Err(e) => BatchItem::Rejected { error: engine::TaskError::from(&e).into() },
            })
            .collect()
    }

    /// Enqueues a download whose bytes go to `sink` (the request must not name a destination).
    pub fn enqueue_stream(&self, request: DownloadRequest, sink: Arc<dyn ChunkSink>) -> R<String> {
        let sink: Arc<dyn engine::ChunkSink> = Arc::new(SinkAdapter(Foreign::new(sink)));
        Ok(self.inner.enqueue(request.into_engine(Some(sink)))?.as_str().to_string())
    }

    /// A task's status.
    pub fn status(&self, task_id: String) -> R<TaskStatus> {
        Ok(self.inner.status(&task_id)?.into())
    }

    /// Every task, in enqueue order.
    pub fn list(&self) -> Vec<TaskStatus> {
        self.inner.list().into_iter().map(Into::into).collect()
    }

    /// Pauses a task (keeps the partial file).
    pub fn pause(&self, task_id: String) -> R<()> {
        Ok(self.inner.pause(&task_id)?)
    }

    /// Resumes a paused or failed task here (a task another process runs is left to it).
    pub fn resume(&self, task_id: String) -> R<()> {
        Ok(self.inner.resume(&task_id)?)
    }

    /// Cancels a task and deletes its partial file.
    pub fn cancel(&self, task_id: String) -> R<()> {
        Ok(self.inner.cancel(&task_id)?)
    }

    /// Forgets a task; with `delete_file`, also deletes a completed file.
    #[uniffi::method(default(delete_file = false))]
    pub fn remove(&self, task_id: String, delete_file: bool) -> R<()> {
        Ok(self.inner.remove(&task_id, delete_file)?)
    }

    /// Changes a task's priority (higher runs first).
    pub fn set_priority(&self, task_id: String, priority: i32) -> R<()> {
        Ok(self.inner.set_priority(&task_id, priority)?)
    }

    /// Pauses every queued or running task; returns how many.
    pub fn pause_all(&self) -> u32 {
        self.inner.pause_all() as u32
    }

    /// Resumes every queued, paused or failed task; returns how many.
    pub fn resume_all(&self) -> u32 {
        self.inner.resume_all() as u32
    }

    /// Waits until the task is no longer queued or running (or the manager shuts down).
    /// Abandoning the wait leaves nothing behind.
    pub async fn wait(&self, task_id: String) -> R<TaskStatus> {
        Ok(gated(self.inner.wait(&task_id)).await?.into())
    }

    /// `wait` on the caller's thread, for hosts that wait synchronously: blocks (not for a UI
    /// thread) up to `timeout_ms` (`None`: no limit) and returns `None` on timeout. Nothing calls
    /// back into the host, so it works to the end of a host's exit (Python's `Manager.wait`).
    pub fn wait_blocking(&self, task_id: String, timeout_ms: Option<u64>) -> R<Option<TaskStatus>> {
        let m = self.inner.clone();
        let Some(waited) = blocking(async move { m.wait(&task_id).await }, timeout_ms, Abandon::Stop) else { return Ok(None) };
        Ok(Some(waited?.into()))
    }

    /// Fetches a small resource into memory (up to `limit` bytes). Abandoning the call forgets the
    /// fetch.
    pub async fn fetch_bytes(&self, url: String, headers: Vec<HttpHeader>, limit: u64) -> R<Vec<u8>> {
        let headers = headers.into_iter().map(|h| (h.name, h.value)).collect();
        Ok(gated(self.inner.fetch_bytes(&url, headers, limit)).await?)
    }

    /// Takes the bytes of a completed memory task.
    pub fn take_bytes(&self, task_id: String) -> R<Vec<u8>> {
        Ok(self.inner.take_bytes(&task_id)?)
    }

    /// Current limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits().into()
    }

    /// Changes limits at run time.
    pub fn set_limits(&self, limits: Limits) -> R<()> {
        Ok(self.inner.set_limits(limits.into())?)
    }

    /// The cap on all downloads together, in bytes per second (absent: none).
    pub fn rate_limit(&self) -> Option<u64> {
        self.inner.rate_limit()
    }

    /// Caps all downloads together at `bytes_per_sec` (absent or 0 lifts the cap), at once for
    /// running downloads too.
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        self.inner.set_rate_limit(bytes_per_sec);
    }

    /// A task's own cap, in bytes per second (absent: none).
    pub fn task_rate_limit(&self, task_id: String) -> R<Option<u64>> {
        Ok(self.inner.task_rate_limit(&task_id)?)
    }

    /// Caps one task over all its connections (absent or 0 lifts the cap), on top of the global
    /// cap, at once if it runs. Stored with a file task: it holds after a reopen and reaches another
    /// process that runs the task within its progress interval.
    pub fn set_task_rate_limit(&self, task_id: String, bytes_per_sec: Option<u64>) -> R<()> {
        Ok(self.inner.set_task_rate_limit(&task_id, bytes_per_sec)?)
    }

    /// Registers a listener; keep the registration alive as long as you want events.
    pub fn add_listener(&self, listener: Arc<dyn EventListener>) -> Arc<ListenerRegistration> {
        ListenerRegistration::start(self.inner.subscribe(), listener)
    }

    /// A pull-style event stream.
    pub fn events(&self) -> Arc<EventStream> {
        EventStream::new(self.inner.subscribe())
    }

    /// Syncs every running download's part file and journal now (call it when the app goes to the
    /// background): everything transferred so far then survives even a power loss.
    pub async fn flush(&self) {
        let m = self.inner.clone();
        let _ = gated(runtime::handle().spawn(async move { m.flush().await })).await;
    }

    /// Stops all transfers (journals synced; they resume on the next open) and accepts no new work
    /// until the directory is opened again.
    pub async fn shutdown(&self) {
        let m = self.inner.clone();
        let _ = gated(runtime::handle().spawn(async move { m.shutdown().await })).await;
    }

    /// `shutdown` on the caller's thread (see `wait_blocking`), waiting up to `timeout_ms`; false
    /// if it had not finished by then (it goes on).
    pub fn shutdown_blocking(&self, timeout_ms: u64) -> bool {
        let m = self.inner.clone();
        blocking(async move { m.shutdown().await }, Some(timeout_ms), Abandon::GoOn).is_some()
    }
}

/// What becomes of work that [`blocking`] stopped waiting for.
enum Abandon {
    /// It stops (a wait nobody reads).
    Stop,
    /// It goes on (a shutdown must finish).
    GoOn,
}

/// Runs `work` on the engine's runtime and waits for it on this thread, at most `timeout_ms`
/// (`None`: no limit); `None` on timeout.
fn blocking<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
    timeout_ms: Option<u64>,
    abandon: Abandon,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let task = runtime::handle().spawn(async move {
        let _ = tx.send(work.await);
    });
    let got = match timeout_ms {
        Some(ms) => rx.recv_timeout(std::time::Duration::from_millis(ms)).ok(),
        None => rx.recv().ok(),
    };
    if got.is_none() && matches!(abandon, Abandon::Stop) {
        task.abort();
    }
    got
}
