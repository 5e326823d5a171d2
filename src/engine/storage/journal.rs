//! The journal writer: a thread that group-commits written offsets to the task table.
//!
//! Connections never touch SQLite. After handing bytes to the kernel they advance their segment's
//! `written` offset in memory and ring the journal; the journal thread gathers every dirty segment
//! of every task and commits them in one transaction, at most once per [`MIN_INTERVAL`]. The journal
//! therefore never claims a byte that was not written, and a killed process loses at most the last
//! interval of journal lag (the bytes are simply fetched again).
//!
//! Lock order: the store connection first, then a task's range map. Structural changes (splits,
//! restarts) take the same order, so a stale offset can never be written over a newer layout.

use super::store::Store;
use crate::engine::model::error::Result;
use rusqlite::Transaction;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Crash point (see [`super::crash`]) inside a journal transaction, its rows written and not yet
/// committed: a process killed in the middle of a table write.
pub const CRASH_COMMIT: &str = "journal:committing";

/// Longest wait for a flush.
const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// Shortest time between two journal commits.
pub const MIN_INTERVAL: Duration = Duration::from_millis(5);

/// Something with progress to journal.
pub trait JournalSource: Send + Sync {
    /// Writes what changed since the last commit into `tx` (runs under the store lock).
    fn commit(&self, tx: &Transaction<'_>) -> Result<()>;
    /// Called by the journal before `commit`, so later changes ring again.
    fn clear_pending(&self);
}

enum Msg {
    Dirty(Arc<dyn JournalSource>),
    /// Answered once everything rung before it is committed (async callers: no runtime thread
    /// blocks, and none is started to wait).
    Flush(tokio::sync::oneshot::Sender<()>),
    Stop,
}

/// Handle to the journal thread.
#[derive(Debug)]
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Journal {
    /// Starts the journal thread for a store. The thread holds only a weak reference.
    pub fn start(store: &Arc<Store>) -> Journal {
        let (tx, rx) = mpsc::channel();
        let weak = Arc::downgrade(store);
        let thread =
            std::thread::Builder::new().name("ferry-journal".into()).spawn(move || run(weak, rx)).expect("spawning the journal thread");
        Journal { tx, thread: Some(thread) }
    }

    /// Rings the journal for `source`.
    pub fn notify(&self, source: Arc<dyn JournalSource>) {
        let _ = self.tx.send(Msg::Dirty(source));
    }

    /// Waits until everything rung so far is committed.
    pub async fn flushed(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, rx).await;
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(store: Weak<Store>, rx: mpsc::Receiver<Msg>) {
    let mut last_commit = Instant::now() - MIN_INTERVAL;
    let mut pending: Vec<Arc<dyn JournalSource>> = Vec::new();
    let mut waiters: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        let msg = if pending.is_empty() && waiters.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            let wait = (last_commit + MIN_INTERVAL).saturating_duration_since(Instant::now());
            if wait.is_zero() || !waiters.is_empty() {
                None
            } else {
                match rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let mut stop = false;
        for m in msg.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            match m {
                Msg::Dirty(s) => {
                    if !pending.iter().any(|p| Arc::ptr_eq(p, &s)) {
                        pending.push(s);
                    }
                }
                Msg::Flush(w) => waiters.push(w),
                Msg::Stop => stop = true,
            }
        }
        let due = Instant::now() >= last_commit + MIN_INTERVAL || !waiters.is_empty() || stop;
        if due && !pending.is_empty() {
            let Some(store) = store.upgrade() else { return };
            commit(&store, &mut pending);
            last_commit = Instant::now();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if stop {
            return;
        }
    }
}

fn commit(store: &Store, pending: &mut Vec<Arc<dyn JournalSource>>) {
    let mut conn = store.lock();
    let Ok(t) = conn.transaction() else { return };
    for s in pending.drain(..) {
        s.clear_pending();
        if let Err(e) = s.commit(&t) {
            tracing::warn!("journal write failed: {e}");
        }
    }
    super::crash::point(CRASH_COMMIT);
    if let Err(e) = t.commit() {
        tracing::warn!("journal commit failed: {e}");
    }
}
