//! Group commit for publishing small files.
//!
//! Making a finished file durable costs an fsync of its data and one of its directory. For a batch of
//! small files finishing together, one publisher thread takes every file waiting, records their
//! publish marks, makes all their data (and the marks) durable at once, moves them into place, and
//! makes the new names durable once. The data sync is one `syncfs` per filesystem when the machine
//! holds little dirty data (so it costs about one file's fsync), and one `fdatasync` per file
//! otherwise (so a large unrelated write never makes small files wait for it). Large files publish
//! on their own thread, as they always did.

use super::error::{Error, Result};
use super::part_file::{sync_dir, PartFile};
use super::store::Store;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

/// Files up to this size publish through the group commit.
pub const SMALL_FILE: u64 = 4 << 20;
/// Above this much dirty data in the system, batches sync file by file.
const MAX_DIRTY_FOR_SYNCFS: u64 = 64 << 20;

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
}

/// The publisher thread's handle.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
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
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ferry-publish".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(std::iter::from_fn(|| rx.try_recv().ok()));
                    publish_batch(batch);
                }
            })
            .expect("spawning the publisher thread");
        Publisher { tx }
    }

    /// Syncs a verified part file, renames it to `destination`, syncs the directory and records the
    /// completion (one transaction per table for the whole batch), together with whatever other
    /// files are waiting. Returns whether the completion was recorded.
    pub async fn publish(&self, part: Arc<PartFile>, destination: PathBuf, overwrite: bool, record: Option<Record>) -> Result<bool> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Job { part, destination, overwrite, record, reply }).map_err(|_| Error::internal("the publisher thread is gone"))?;
        rx.await.map_err(|_| Error::internal("the publisher dropped a file"))?
    }
}

fn publish_batch(batch: Vec<Job>) {
    let marked = mark_publishing(&batch);
    super::crash::point("publish:marked");
    let (synced, covered) = sync_data(&batch, marked);
    let synced = sync_marks(&batch, synced, &covered);
    super::crash::point("publish:synced");
    let mut placed: Vec<(usize, bool)> = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    for (i, (job, synced)) in batch.iter().zip(synced).enumerate() {
        match synced.and_then(|_| job.part.place(&job.destination, job.overwrite)) {
            Ok(first_name) => {
                placed.push((i, first_name));
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    super::crash::point("publish:renamed");
    sync_names(&batch, &placed, &covered);
    super::crash::point("publish:dir-synced");
    let recorded = record_completions(&batch, &results);
    super::crash::point("publish:recorded");
    for ((job, r), recorded) in batch.into_iter().zip(results).zip(recorded) {
        let _ = job.reply.send(r.map(|_| recorded));
    }
}

/// Records in each task table which file is about to become each task's destination (one
/// transaction per table), so that the next open recognises a rename this process did not live to
/// record. Written before the data sync, so that the same sync makes the marks durable (see
/// [`sync_marks`]). A file whose mark cannot be written is not renamed.
fn mark_publishing(batch: &[Job]) -> Vec<Result<()>> {
    let mut marked: Vec<Result<()>> = batch.iter().map(|_| Ok(())).collect();
    let everyone = marked.clone();
    for store in stores_of(batch, &everyone) {
        let mut marks: Vec<(usize, &str, String)> = Vec::new();
        for (i, job) in batch.iter().enumerate() {
            match &job.record {
                Some(rec) if Arc::ptr_eq(&rec.store, store) => match job.part.identity() {
                    Ok(identity) => marks.push((i, rec.id.as_str(), identity.publish_mark())),
                    Err(e) => marked[i] = Err(e),
                },
                _ => {}
            }
        }
        let items: Vec<(&str, &str)> = marks.iter().map(|(_, id, m)| (*id, m.as_str())).collect();
        if let Err(e) = store.mark_publishing(&items) {
            for (i, _, _) in &marks {
                marked[*i] = Err(e.clone());
            }
        }
    }
    marked
}

/// Makes the new names of the placed files durable (best effort, like any directory sync: the
/// files are in place either way). On a file system whose data the batch synced with `syncfs`,
/// one more `syncfs` covers every new name and every inode whose link count the names changed.
/// Elsewhere each file that got its first name has its inode written (`fsync`, several at once),
/// then each directory is synced once.
fn sync_names(batch: &[Job], placed: &[(usize, bool)], covered: &[u64]) {
    let mut synced_fs: Vec<u64> = Vec::new();
    let mut inodes: Vec<&Job> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for &(i, first_name) in placed {
        let job = &batch[i];
        if let Some(dev) = job.part.device().ok().filter(|d| covered.contains(d)) {
            if synced_fs.contains(&dev) || syncfs(job.part.file_descriptor()) {
                synced_fs.push(dev);
                continue;
            }
        }
        if first_name {
            inodes.push(job);
        }
        if let Some(dir) = job.destination.parent() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    in_parallel(
        &inodes,
        |job| {
            let _ = job.part.sync_inode();
        },
        |_| (),
    );
    for dir in &dirs {
        sync_dir(dir);
    }
}

/// `syncfs` of the file system holding `file`; whether it succeeded.
fn syncfs(file: &std::fs::File) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: syncfs on an open descriptor; no memory is passed.
        unsafe { libc::syncfs(file.as_raw_fd()) == 0 }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = file;
        false
    }
}

/// Makes the marks of the files still on their way durable before any of them is renamed: a table
/// on a file system the data sync covered with `syncfs` is already durable; any other gets one
/// `fdatasync` of its WAL. A table that cannot be synced keeps its files from being renamed.
fn sync_marks(batch: &[Job], synced: Vec<Result<()>>, covered: &[u64]) -> Vec<Result<()>> {
    let mut synced = synced;
    for store in stores_of(batch, &synced) {
        if store.device().is_some_and(|d| covered.contains(&d)) {
            continue;
        }
        if let Err(e) = store.sync_wal() {
            for (job, r) in batch.iter().zip(synced.iter_mut()) {
                if job.record.as_ref().is_some_and(|rec| Arc::ptr_eq(&rec.store, store)) && r.is_ok() {
                    *r = Err(e.clone());
                }
            }
        }
    }
    synced
}

/// The task tables of the jobs still on their way (`Ok` so far) that record into one, each once.
fn stores_of<'a>(batch: &'a [Job], so_far: &[Result<()>]) -> Vec<&'a Arc<Store>> {
    let mut stores: Vec<&Arc<Store>> = Vec::new();
    for (job, r) in batch.iter().zip(so_far) {
        if let (Some(rec), Ok(())) = (&job.record, r) {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &rec.store)) {
                stores.push(&rec.store);
            }
        }
    }
    stores
}

/// Records the completions of the published files, one transaction per task table.
fn record_completions(batch: &[Job], results: &[Result<()>]) -> Vec<bool> {
    let mut recorded = vec![false; batch.len()];
    for store in stores_of(batch, results) {
        let done: Vec<(usize, &str, u64)> = batch
            .iter()
            .zip(results)
            .enumerate()
            .filter_map(|(i, (job, r))| match (&job.record, r) {
                (Some(rec), Ok(())) if Arc::ptr_eq(&rec.store, store) => Some((i, rec.id.as_str(), rec.bytes)),
                _ => None,
            })
            .collect();
        let items: Vec<(&str, u64)> = done.iter().map(|&(_, id, b)| (id, b)).collect();
        match store.complete_many(&items) {
            Ok(()) => done.iter().for_each(|&(i, _, _)| recorded[i] = true),
            Err(e) => tracing::warn!("could not record completions: {e}"),
        }
    }
    recorded
}

/// Makes the data of every file still on its way (`Ok` in `so_far`) durable; one result per file,
/// and the devices whose whole file system a `syncfs` made durable.
fn sync_data(batch: &[Job], so_far: Vec<Result<()>>) -> (Vec<Result<()>>, Vec<u64>) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if batch.len() > 1 && system_dirty_bytes().is_some_and(|d| d <= MAX_DIRTY_FOR_SYNCFS) {
        let mut devices: Vec<(u64, bool)> = Vec::new();
        let mut out = Vec::with_capacity(batch.len());
        for (job, before) in batch.iter().zip(so_far) {
            if before.is_err() {
                out.push(before);
                continue;
            }
            let dev = match job.part.device() {
                Ok(d) => d,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let synced = match devices.iter().find(|(d, _)| *d == dev) {
                Some((_, ok)) => *ok,
                None => {
                    let ok = syncfs(job.part.file_descriptor());
                    devices.push((dev, ok));
                    ok
                }
            };
            // A filesystem without syncfs support: fall back to this file alone.
            out.push(if synced { Ok(()) } else { job.part.sync() });
        }
        let covered = devices.iter().filter(|(_, ok)| *ok).map(|(d, _)| *d).collect();
        return (out, covered);
    }
    (sync_each(batch, so_far), Vec::new())
}

/// Most threads syncing files of one batch at the same time.
const SYNC_THREADS: usize = 8;

/// Syncs every file on its own. Several at once: each `fdatasync` waits for its data and a device
/// flush, and flushes issued together are merged by the block layer, so a batch costs a few
/// flushes instead of one per file. With 400 MB of unrelated dirty data on the machine, 1000 small
/// files took 0.33 s syncing one by one.
fn sync_each(batch: &[Job], so_far: Vec<Result<()>>) -> Vec<Result<()>> {
    let pairs: Vec<(&Job, Result<()>)> = batch.iter().zip(so_far).collect();
    in_parallel(&pairs, |(job, before)| before.clone().and_then(|_| job.part.sync()), |_| Err(Error::internal("a sync thread panicked")))
}

/// `f` of every item, in order, on up to [`SYNC_THREADS`] threads (each sync waits for the device;
/// syncs issued together share its flushes); `panicked` for the items of a thread that panicked.
/// Few items run here; a thread that cannot be started leaves its share to this one.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync, panicked: impl Fn(&T) -> R) -> Vec<R> {
    if items.len() < 4 {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(SYNC_THREADS);
    let f = &f;
    let run = move |share: &[T]| share.iter().map(f).collect::<Vec<R>>();
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(per_thread)
            .map(|share| (share, std::thread::Builder::new().name("ferry-sync".into()).spawn_scoped(scope, move || run(share)).ok()))
            .collect();
        workers
            .into_iter()
            .flat_map(|(share, worker)| match worker.map(|w| w.join()) {
                Some(Ok(done)) => done,
                Some(Err(_)) => share.iter().map(&panicked).collect(),
                None => run(share),
            })
            .collect()
    })
}

/// Dirty page cache of the whole system, from /proc/meminfo.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn system_dirty_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("Dirty:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_publishes_every_file_and_refuses_existing_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut waits = Vec::new();
        for i in 0..20 {
            let dest = dir.path().join(format!("f{i}"));
            let part = PartFile::create(&super::super::part_file::part_path(&dest)).unwrap();
            part.write_at(0, format!("file {i}").as_bytes()).unwrap();
            if i == 7 {
                std::fs::write(&dest, b"already here").unwrap();
            }
            waits.push(global().publish(Arc::new(part), dest, false, None));
        }
        let results = rt.block_on(futures_util::future::join_all(waits));
        for (i, r) in results.iter().enumerate() {
            let dest = dir.path().join(format!("f{i}"));
            if i == 7 {
                assert_eq!(r.as_ref().unwrap_err().code(), super::super::error::ErrorCode::DestinationExists);
                assert_eq!(std::fs::read(&dest).unwrap(), b"already here");
            } else {
                r.as_ref().unwrap();
                assert_eq!(std::fs::read(&dest).unwrap(), format!("file {i}").as_bytes());
            }
        }
        assert!(system_dirty_bytes().is_some());
    }

    #[test]
    fn new_names_are_synced_with_or_without_a_covering_syncfs() {
        let dir = tempfile::tempdir().unwrap();
        for covered in [false, true] {
            let jobs: Vec<Job> = (0..6)
                .map(|i| {
                    let dest = dir.path().join(format!("n{covered}{i}"));
                    let part = PartFile::create_fresh(&super::super::part_file::part_path(&dest), false).unwrap();
                    part.write_at(0, b"named").unwrap();
                    let (reply, _) = tokio::sync::oneshot::channel();
                    Job { part: Arc::new(part), destination: dest, overwrite: false, record: None, reply }
                })
                .collect();
            let placed: Vec<(usize, bool)> =
                jobs.iter().enumerate().map(|(i, j)| (i, j.part.place(&j.destination, false).unwrap())).collect();
            assert!(placed.iter().all(|&(_, first)| first), "anonymous files get their first name when placed");
            let devices: Vec<u64> = if covered { vec![jobs[0].part.device().unwrap()] } else { Vec::new() };
            sync_names(&jobs, &placed, &devices);
            for j in &jobs {
                assert_eq!(std::fs::read(&j.destination).unwrap(), b"named");
            }
        }
    }

    #[test]
    fn syncing_file_by_file_covers_every_file_of_a_batch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Vec<Job> = (0..21)
            .map(|i| {
                let dest = dir.path().join(format!("g{i}"));
                let part = PartFile::create(&super::super::part_file::part_path(&dest)).unwrap();
                part.write_at(0, b"x").unwrap();
                let (reply, _) = tokio::sync::oneshot::channel();
                Job { part: Arc::new(part), destination: dest, overwrite: false, record: None, reply }
            })
            .collect();
        let ok = || jobs.iter().map(|_| Ok(())).collect::<Vec<Result<()>>>();
        let results = sync_each(&jobs, ok());
        assert_eq!(results.len(), 21);
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(sync_each(&jobs[..2], ok()[..2].to_vec()).len(), 2);
        let mut some_failed = ok();
        some_failed[5] = Err(Error::internal("earlier step"));
        let results = sync_each(&jobs, some_failed);
        assert!(results[5].is_err(), "a file that failed an earlier step stays failed");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
    }
}
