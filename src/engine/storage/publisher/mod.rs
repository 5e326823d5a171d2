//! Group commit for publishing small files.
//!
//! Making a finished file durable costs an fsync of its data and one of its directory. For a batch of
//! small files finishing together, one publisher thread takes every file waiting, records their
//! publish marks, makes all their data (and the marks) durable at once, moves them into place, and
//! makes the new names durable once: with the next group's data sync while files keep coming, at
//! once when none is waiting. The data sync is one `syncfs` per filesystem when the machine
//! holds little dirty data (so it costs about one file's fsync), and one `fdatasync` per file
//! otherwise (so a large unrelated write never makes small files wait for it). Large files publish
//! on their own thread, as they always did.
//!
//! A group waits a moment for company while downloads into files are still under way: up to
//! [`LINGER_FILES`] files or [`LINGER`], whichever comes first, and not at all once the last
//! download has handed its file over. Without the wait, each group held whatever arrived during
//! the previous sync, and short syncs made for ever smaller groups: 1000 files of 16 KiB took about
//! 30 `syncfs` calls, each rewriting the same inode-table, bitmap and directory blocks, with 32
//! device flushes and 370 write requests in all. Waiting for 64 files halved both, and the last
//! downloads of a batch, which end a few at a time, now share one sync instead of three.

use super::part_file::{sync_dir, PartFile};
use super::store::Store;
use crate::engine::model::error::{Error, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod group;
#[cfg(test)]
mod tests;

use group::{group_limit, place, record, settle, sync_data, sync_marks, sync_names, Group};

/// Files up to this size publish through the group commit.
pub const SMALL_FILE: u64 = 4 << 20;
/// Above this much dirty data in the system, batches sync file by file.
const MAX_DIRTY_FOR_SYNCFS: u64 = 64 << 20;
/// Files a group waits for while downloads are under way.
pub const LINGER_FILES: usize = 64;
/// Longest a group waits for company.
pub const LINGER: Duration = Duration::from_millis(5);

struct Job {
    part: Arc<PartFile>,
    destination: PathBuf,
    overwrite: bool,
    record: Option<Record>,
    reply: tokio::sync::oneshot::Sender<Result<bool>>,
}

/// A completion to record in a task table once the file is in place.
pub struct Record {
    /// The task table.
    pub store: Arc<Store>,
    /// Task id.
    pub id: String,
    /// Size of the file.
    pub bytes: u64,
    /// The file's publish mark (see [`super::part_file::Identity::publish_mark`]), taken when it
    /// was verified: nothing writes it after that.
    pub mark: String,
}

/// The publisher thread's handle.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    /// Groups formed so far.
    groups: Arc<AtomicUsize>,
}

/// What the downloads and the publisher thread share about a group that waits for company.
///
/// A waiting group sleeps until it is full, no download is left under way, or its time is up, and
/// the downloads wake it only then. Blocked in the channel instead, it was woken by every file that
/// arrived and polled every millisecond for a download that ended without a file: for 1000 small
/// files, 1062 `futex` calls in the process against 457 now, and 236 context switches of the
/// publisher thread against 140 (the wall time did not move beyond the noise; a phone's battery
/// counts the wake-ups).
#[derive(Debug)]
struct Shared {
    /// Downloads under way that may hand this publisher a file.
    expected: AtomicUsize,
    /// Files handed over so far.
    sent: AtomicUsize,
    /// While the publisher sleeps in a waiting group: the `sent` count that fills the group.
    wake_at: AtomicUsize,
    sleeping: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// How long a group waits for more files while downloads are under way.
#[derive(Debug, Clone, Copy)]
struct Linger {
    files: usize,
    wait: Duration,
}

/// One download into a file, counted while it is under way (see [`Publisher::expect`]).
#[derive(Debug)]
pub struct Expecting(Arc<Shared>);

impl Drop for Expecting {
    fn drop(&mut self) {
        // SeqCst with the publisher's `sleeping` then `expected` (see `Lingering::gather`): either
        // it sees the count at zero before it sleeps, or this sees it asleep and wakes it.
        if self.0.expected.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.sleeping.load(Ordering::SeqCst) {
            self.0.wake();
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("destination", &self.destination).finish()
    }
}

/// The process-wide publisher.
pub fn global() -> &'static Publisher {
    static GLOBAL: once_cell::sync::Lazy<Publisher> = once_cell::sync::Lazy::new(Publisher::start);
    &GLOBAL
}

impl Publisher {
    fn start() -> Publisher {
        // Never more than half the files the scheduler lets wait: a group waiting for more would
        // otherwise hold back the downloads that could bring them.
        let files = LINGER_FILES.min(super::fd_table::publish_backlog() / 2).max(1);
        Publisher::with_linger(Linger { files, wait: LINGER })
    }

    fn with_linger(linger: Linger) -> Publisher {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            expected: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            wake_at: AtomicUsize::new(usize::MAX),
            sleeping: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let groups = Arc::new(AtomicUsize::new(0));
        let state = Lingering { linger, shared: shared.clone(), groups: groups.clone(), taken: 0 };
        let handle =
            std::thread::Builder::new().name("ferry-publish".into()).spawn(move || run(rx, state)).expect("spawning the publisher thread");
        let _ = shared.thread.set(handle.thread().clone());
        Publisher { tx, shared, groups }
    }

    /// Counts a download into a file as under way until the returned guard is dropped or handed to
    /// [`Publisher::publish`]: while any is, a group waits a moment for the files still to come.
    pub fn expect(&self) -> Expecting {
        self.shared.expected.fetch_add(1, Ordering::SeqCst);
        Expecting(self.shared.clone())
    }

    /// Syncs a verified part file, renames it to `destination`, syncs the directory and records the
    /// completion (one transaction per table for the whole batch), together with whatever other
    /// files are waiting. `expecting`, the download's own count, ends once the file is handed over.
    /// Returns whether the completion was recorded.
    pub async fn publish(
        &self,
        part: Arc<PartFile>,
        destination: PathBuf,
        overwrite: bool,
        record: Option<Record>,
        expecting: Option<Expecting>,
    ) -> Result<bool> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let sent = self.tx.send(Job { part, destination, overwrite, record, reply });
        if sent.is_ok() {
            let count = self.shared.sent.fetch_add(1, Ordering::SeqCst) + 1;
            if self.shared.sleeping.load(Ordering::SeqCst) && count >= self.shared.wake_at.load(Ordering::SeqCst) {
                self.shared.wake();
            }
        }
        drop(expecting);
        sent.map_err(|_| Error::internal("the publisher thread is gone"))?;
        rx.await.map_err(|_| Error::internal("the publisher dropped a file"))?
    }

    /// Groups this publisher formed so far.
    pub fn groups_formed(&self) -> usize {
        self.groups.load(Ordering::Relaxed)
    }
}

/// What the publisher thread needs to decide how long a group waits.
struct Lingering {
    linger: Linger,
    shared: Arc<Shared>,
    groups: Arc<AtomicUsize>,
    /// Files taken from the channel so far (against [`Shared::sent`]).
    taken: usize,
}

impl Lingering {
    /// Takes the files waiting after `first`, then, while downloads are under way, waits for more:
    /// up to the linger's file count or its time, and no longer once none is under way. It sleeps
    /// meanwhile, and the download that fills the group or ends the last one under way wakes it.
    fn gather(&mut self, first: Job, rx: &mpsc::Receiver<Job>) -> Vec<Job> {
        let limit = group_limit();
        let mut jobs: Vec<Job> = vec![first];
        let enough = self.linger.files.min(limit);
        let until = Instant::now() + self.linger.wait;
        loop {
            let room = limit - jobs.len();
            jobs.extend(std::iter::from_fn(|| rx.try_recv().ok()).take(room));
            if jobs.len() >= enough {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.shared.expected.load(Ordering::SeqCst) == 0 {
                break;
            }
            // The `sent` count at which this group is full (`taken` counts earlier groups' files).
            let fills_at = self.taken + enough;
            self.shared.wake_at.store(fills_at, Ordering::SeqCst);
            self.shared.sleeping.store(true, Ordering::SeqCst);
            // Checked again once asleep is announced: a download that looked before it was, and
            // so did not wake this thread, is seen here.
            let full = self.shared.sent.load(Ordering::SeqCst) >= fills_at;
            if !full && self.shared.expected.load(Ordering::SeqCst) > 0 {
                std::thread::park_timeout(left);
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
        }
        // A download hands its file over before it stops counting: what the last one sent is in
        // the channel by the time the count reads zero.
        let room = limit - jobs.len();
        jobs.extend(std::iter::from_fn(|| rx.try_recv().ok()).take(room));
        self.taken += jobs.len();
        self.groups.fetch_add(1, Ordering::Relaxed);
        jobs
    }
}

/// The publisher thread. Under a stream of files it pipelines the groups: the `syncfs` that makes
/// one group's data durable also makes the previous group's new names durable, and the transaction
/// that marks one group records the completions of the group before the previous one, whose names
/// are durable by then. So a busy stream costs one sync and one transaction per group instead of
/// two of each. When no file is waiting, the groups still in flight are settled at once.
fn run(rx: mpsc::Receiver<Job>, mut lingering: Lingering) {
    // Renamed into place; the next sync makes their names durable.
    let mut renamed: Option<Group> = None;
    // Names durable; the next transaction records their completions.
    let mut named: Option<Group> = None;
    loop {
        let first = if renamed.is_none() && named.is_none() {
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(job) => job,
                Err(e) => {
                    settle(renamed.take(), named.take());
                    if e == mpsc::TryRecvError::Disconnected {
                        return;
                    }
                    continue;
                }
            }
        };
        let mut group = Group::new(lingering.gather(first, &rx));
        let done: Vec<(&Job, &Result<()>)> = named.iter().flat_map(|g| g.jobs.iter().zip(&g.results)).collect();
        let mut marking: Vec<(&Job, &mut Result<()>)> = group.jobs.iter().zip(group.results.iter_mut()).collect();
        let recorded = record(&done, &mut marking);
        if let Some(g) = named.take() {
            g.reply(&recorded);
        }
        super::crash::point("publish:marked");
        sync_data(&mut group);
        sync_marks(&mut group);
        super::crash::point("publish:synced");
        if let Some(previous) = renamed.take() {
            sync_names(&previous, &group.covered);
            named = Some(previous);
        }
        place(&mut group);
        super::crash::point("publish:renamed");
        renamed = Some(group);
    }
}
