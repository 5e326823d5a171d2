//! A group's way through its steps: publish marks recorded, data synced, files renamed into
//! place, names synced, completions recorded.

use super::*;

/// The files the publisher took together, on their way through its steps.
pub(super) struct Group {
    pub(super) jobs: Vec<Job>,
    /// Per job: `Err` once a step failed it.
    pub(super) results: Vec<Result<()>>,
    /// The jobs renamed into place, and whether each got its first name then.
    pub(super) placed: Vec<(usize, bool)>,
    /// Devices whose whole file system the group's data sync covered with `syncfs`.
    pub(super) covered: Vec<u64>,
}

impl Group {
    pub(super) fn new(jobs: Vec<Job>) -> Group {
        let results = jobs.iter().map(|_| Ok(())).collect();
        Group { jobs, results, placed: Vec::new(), covered: Vec::new() }
    }

    /// Answers every job: its error, or whether its completion was recorded.
    pub(super) fn reply(self, recorded: &[bool]) {
        for ((job, r), recorded) in self.jobs.into_iter().zip(self.results).zip(recorded) {
            let _ = job.reply.send(r.map(|_| *recorded));
        }
    }
}

/// Most files in one group: no limit, except in builds with the loopback test tooling, where
/// `FERRY_PUBLISH_GROUP_MAX` caps it so that crash tests (`publish:renamed#3`) find as many groups as
/// they need however the machine schedules the downloads.
pub(super) fn group_limit() -> usize {
    #[cfg(feature = "loopback")]
    {
        static MAX: once_cell::sync::Lazy<usize> = once_cell::sync::Lazy::new(|| {
            std::env::var("FERRY_PUBLISH_GROUP_MAX").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(usize::MAX)
        });
        *MAX
    }
    #[cfg(not(feature = "loopback"))]
    usize::MAX
}

/// Finishes the groups in flight when no file is waiting: makes the names of `renamed` durable,
/// records both groups' completions and answers them.
pub(super) fn settle(renamed: Option<Group>, named: Option<Group>) {
    if let Some(g) = &renamed {
        sync_names(g, &[]);
    }
    super::super::crash::point("publish:dir-synced");
    let groups: Vec<Group> = named.into_iter().chain(renamed).collect();
    let done: Vec<(&Job, &Result<()>)> = groups.iter().flat_map(|g| g.jobs.iter().zip(&g.results)).collect();
    let recorded = record(&done, &mut []);
    super::super::crash::point("publish:recorded");
    let mut recorded = recorded.into_iter();
    for g in groups {
        let mine: Vec<bool> = recorded.by_ref().take(g.jobs.len()).collect();
        g.reply(&mine);
    }
}

/// One transaction per task table: records the completions of the `done` jobs still `Ok` (their
/// names are durable), and sets the publish marks of the `marking` jobs still `Ok`. A mark says
/// which file is about to become the task's destination, so that the next open recognises a rename
/// this process did not live to record. Marks are written before their group's data sync, so that
/// the same sync makes them durable (see [`sync_marks`]); a file whose mark cannot be written fails
/// and is not renamed. Returns whether each of `done`'s completions was recorded.
pub(super) fn record(done: &[(&Job, &Result<()>)], marking: &mut [(&Job, &mut Result<()>)]) -> Vec<bool> {
    let mut recorded = vec![false; done.len()];
    let jobs = done.iter().map(|(job, r)| (*job, r.is_ok())).chain(marking.iter().map(|(job, r)| (*job, r.is_ok())));
    let mut stores: Vec<Arc<Store>> = Vec::new();
    for (job, ok) in jobs {
        if let (Some(rec), true) = (&job.record, ok) {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &rec.store)) {
                stores.push(rec.store.clone());
            }
        }
    }
    for store in &stores {
        let completions = records_in(done.iter().map(|(job, r)| (*job, r.is_ok())), store);
        let marks = records_in(marking.iter().map(|(job, r)| (*job, r.is_ok())), store);
        let done_items: Vec<(&str, u64)> = completions.iter().map(|(_, rec)| (rec.id.as_str(), rec.bytes)).collect();
        let mark_items: Vec<(&str, &str)> = marks.iter().map(|(_, rec)| (rec.id.as_str(), rec.mark.as_str())).collect();
        match store.complete_and_mark(&done_items, &mark_items) {
            Ok(()) => completions.iter().for_each(|&(i, _)| recorded[i] = true),
            Err(e) => {
                if !completions.is_empty() {
                    tracing::warn!("could not record completions: {e}");
                }
                for (i, _) in &marks {
                    *marking[*i].1 = Err(e.clone());
                }
            }
        }
    }
    recorded
}

/// The records going to `store` of the jobs still on their way (`true`), with their positions.
pub(super) fn records_in<'a>(jobs: impl Iterator<Item = (&'a Job, bool)>, store: &Arc<Store>) -> Vec<(usize, &'a Record)> {
    jobs.enumerate()
        .filter_map(|(i, (job, ok))| job.record.as_ref().filter(|rec| ok && Arc::ptr_eq(&rec.store, store)).map(|rec| (i, rec)))
        .collect()
}

/// Renames every file of the group still on its way into place.
pub(super) fn place(group: &mut Group) {
    for (i, (job, r)) in group.jobs.iter().zip(group.results.iter_mut()).enumerate() {
        if r.is_ok() {
            match job.part.place(&job.destination, job.overwrite) {
                Ok(first_name) => group.placed.push((i, first_name)),
                Err(e) => *r = Err(e),
            }
        }
    }
}

/// Makes the new names of the group's placed files durable (best effort, like any directory sync:
/// the files are in place either way). Nothing is left to do on the file systems in `synced_since`,
/// which a `syncfs` covered after the renames. On a file system whose data the group synced with
/// `syncfs`, one more `syncfs` covers every new name and every inode whose link count the names
/// changed. Elsewhere each file that got its first name has its inode written (`fsync`, several at
/// once), then each directory is synced once.
pub(super) fn sync_names(group: &Group, synced_since: &[u64]) {
    let mut synced_fs: Vec<u64> = synced_since.to_vec();
    let mut inodes: Vec<&Job> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for &(i, first_name) in &group.placed {
        let job = &group.jobs[i];
        if let Some(dev) = job.part.device().ok().filter(|d| synced_fs.contains(d) || group.covered.contains(d)) {
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
pub(super) fn syncfs(file: &std::fs::File) -> bool {
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
pub(super) fn sync_marks(group: &mut Group) {
    let mut stores: Vec<&Arc<Store>> = Vec::new();
    for (job, r) in group.jobs.iter().zip(&group.results) {
        if let (Some(rec), Ok(())) = (&job.record, r) {
            if !stores.iter().any(|s| Arc::ptr_eq(s, &rec.store)) {
                stores.push(&rec.store);
            }
        }
    }
    for store in stores {
        if store.device().is_some_and(|d| group.covered.contains(&d)) {
            continue;
        }
        if let Err(e) = store.sync_wal() {
            for (job, r) in group.jobs.iter().zip(group.results.iter_mut()) {
                if job.record.as_ref().is_some_and(|rec| Arc::ptr_eq(&rec.store, store)) && r.is_ok() {
                    *r = Err(e.clone());
                }
            }
        }
    }
}

/// Makes the data of every file of the group still on its way durable, and notes the devices
/// whose whole file system a `syncfs` made durable.
pub(super) fn sync_data(group: &mut Group) {
    let results = std::mem::take(&mut group.results);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if group.jobs.len() > 1 && system_dirty_bytes().is_some_and(|d| d <= MAX_DIRTY_FOR_SYNCFS) {
        let mut devices: Vec<(u64, bool)> = Vec::new();
        for (job, before) in group.jobs.iter().zip(results) {
            let synced = before.and_then(|_| {
                let dev = job.part.device()?;
                let synced = match devices.iter().find(|(d, _)| *d == dev) {
                    Some((_, ok)) => *ok,
                    None => {
                        let ok = syncfs(job.part.file_descriptor());
                        devices.push((dev, ok));
                        ok
                    }
                };
                // A filesystem without syncfs support: fall back to this file alone.
                if synced {
                    Ok(())
                } else {
                    job.part.sync()
                }
            });
            group.results.push(synced);
        }
        group.covered = devices.iter().filter(|(_, ok)| *ok).map(|(d, _)| *d).collect();
        return;
    }
    group.results = sync_each(&group.jobs, results);
}

/// Most threads syncing files of one batch at the same time.
const SYNC_THREADS: usize = 8;

/// Syncs every file on its own. Several at once: each `fdatasync` waits for its data and a device
/// flush, and flushes issued together are merged by the block layer, so a batch costs a few
/// flushes instead of one per file. With 400 MB of unrelated dirty data on the machine, 1000 small
/// files took 0.33 s syncing one by one.
pub(super) fn sync_each(batch: &[Job], so_far: Vec<Result<()>>) -> Vec<Result<()>> {
    let pairs: Vec<(&Job, Result<()>)> = batch.iter().zip(so_far).collect();
    in_parallel(&pairs, |(job, before)| before.clone().and_then(|_| job.part.sync()), |_| Err(Error::internal("a sync thread panicked")))
}

/// `f` of every item, in order, on up to [`SYNC_THREADS`] threads (each sync waits for the device;
/// syncs issued together share its flushes); `panicked` for the items of a thread that panicked.
/// Few items run here; a thread that cannot be started leaves its share to this one.
pub(super) fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync, panicked: impl Fn(&T) -> R) -> Vec<R> {
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
pub(super) fn system_dirty_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("Dirty:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
