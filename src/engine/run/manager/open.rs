//! Opening a state directory: the table read back, crash recovery applied, the tasks queued
//! again (those no live process runs); and the read-only view any process may take.

use super::*;
use crate::engine::storage::locks::LockFile;

impl Manager {
    /// Opens the manager of `dir` (created if missing). Within one process, opening the same
    /// directory again (by any path) returns the same manager (and ignores the new configuration).
    ///
    /// Other processes may have the directory open at the same time: every process sees every task
    /// (the table is shared), runs the tasks it enqueues or resumes, and with `resume_on_open`
    /// takes over the queued or running tasks of processes that died (from their journal), now and
    /// whenever it finds one later. Fails with `locks_unavailable` where the file system cannot
    /// lock (processes could not tell who runs what), `permission_denied` for a directory it may
    /// not write, and `state_dir_locked` while an older version of Ferry holds the directory.
    ///
    /// Destinations under one of `config.roots` are stored relative to it and resolved against
    /// the roots of each open, so tasks follow a directory tree that moved. A task stored relative
    /// to a root this open does not declare is listed with its stored text and `root_unknown`, and
    /// is neither run nor taken over (see [`crate::engine::model::roots`]).
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Manager> {
        config.validate()?;
        let roots = Roots::new(&config.roots)?;
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
        let (store, stored, recovery) = Store::open_with(&dir, roots)?;
        let mut live_leases: Map<String, Vec<LiveLease>> = Map::default();
        let now = Instant::now();
        for l in store.leases()?.into_iter().filter(|l| l.state == LeaseState::Live) {
            let lease = LiveLease { id: l.id, start: l.start, end: l.end, whole: l.whole, os_bytes: 0, last_progress: now };
            live_leases.entry(l.task_id).or_default().push(lease);
        }
        let rev = store.opened_at();
        let hosts_file = LockFile::open(&dir.join(HOSTS_FILE))?;
        let store = Arc::new(store);
        let journal = Arc::new(Journal::start(&store));
        let transport = {
            let _rt = runtime::handle().enter();
            Transport::new(&config)?
        };
        let hosts = HostSlots::shared(config.limits.max_connections_per_host, Some(hosts_file));
        let owners = store.owners().expect("opened for writing");
        let next_seq = stored.iter().map(|t| t.row.seq).max().unwrap_or(0) + 1;
        let progress_interval = config.progress_interval;
        let resume_on_open = config.resume_on_open;
        let limits = config.limits;
        let mut sched = Sched {
            ready: ReadyQueue::default(),
            running: Map::default(),
            publishing: Default::default(),
            claims: Map::default(),
            next_seq,
            limits,
            owned: Map::default(),
            foreign: Set::default(),
            foreign_order: Default::default(),
            rev,
            starved: false,
            network: config.network,
        };
        let mut tasks = Map::with_capacity_and_hasher(stored.len(), Default::default());
        for t in stored {
            let Some(entry) = entry_from_stored(t, store.roots()) else { continue };
            if let Some(leases) = live_leases.remove(entry.spec.id.as_str()) {
                entry.inner.lock().leases = leases;
            }
            let state = entry.state();
            let id = entry.spec.id.clone();
            if let (Output::File(dest), false) = (&entry.spec.output, matches!(state, TaskState::Completed | TaskState::Cancelled)) {
                sched.claims.insert(claim_key(dest).into_owned(), id.clone());
            }
            if state.is_active() && entry.spec.output.unresolved().is_none() {
                // Queued or running in the table: a live process runs it, or nobody does (recovery
                // queued the running ones whose process died). Taking its lock tells which. The
                // row was read before the lock was taken: `catch_up_after_open` reads again those
                // that changed in between.
                let handed_off = state == TaskState::Running && !entry.inner.lock().leases.is_empty();
                if owners.try_own(entry.seq)? {
                    if handed_off {
                        // The OS fetches it: this process keeps it, with no runner.
                        sched.owned.insert(id.clone(), entry.seq);
                    } else if resume_on_open {
                        sched.owned.insert(id.clone(), entry.seq);
                        sched.ready.push(id.clone(), entry.spec.host_key(), entry.spec.priority, entry.seq);
                    } else {
                        owners.release(entry.seq);
                        entry.inner.lock().dormant = true;
                    }
                } else {
                    sched.note_foreign(&id);
                }
            }
            tasks.insert(id, entry);
        }
        let env = Arc::new(Env {
            transport,
            store,
            journal,
            hosts,
            revoked: Default::default(),
            rate: crate::engine::run::rate::RateLimit::new(config.rate_limit),
            config: RwLock::new(config),
            credentials: Default::default(),
        });
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
            staging: Staging::new(&dir),
            leased: AtomicBool::new(true),
        });
        inner.catch_up_after_open()?;
        let weak = Arc::downgrade(&inner);
        *inner.ticker.lock() = Some(runtime::handle().spawn(ticker(weak, progress_interval)));
        registry.insert(dir, Arc::downgrade(&inner));
        drop(registry);
        inner.dispatch();
        Ok(Manager { inner })
    }

    /// Reads the task list of a state directory without opening it for writing (another process
    /// may own it). Destinations stored relative to a root are listed as stored (`@name/...`).
    pub fn list_read_only(dir: impl AsRef<Path>) -> Result<Vec<TaskInfo>> {
        Self::list_stored(dir.as_ref(), None)
    }

    /// [`Manager::list_read_only`] for a process that does not have `dir` open: a task recorded
    /// as running by a process that is gone (killed mid-download) is listed as queued, which is
    /// what the next open makes of it. Not for a process with a manager on `dir`: a lock query
    /// never sees the asker's own locks, and where the locks are POSIX ones (not Linux), closing
    /// the file it opens to look would drop them.
    pub fn list_from_outside(dir: impl AsRef<Path>) -> Result<Vec<TaskInfo>> {
        Self::list_stored(dir.as_ref(), crate::engine::storage::owners::Owners::look(dir.as_ref()))
    }

    /// The table's tasks; with `owners`, a running one without a live owner is listed queued.
    fn list_stored(dir: &Path, owners: Option<crate::engine::storage::owners::LookingAtOwners>) -> Result<Vec<TaskInfo>> {
        let (_store, stored) = Store::open_read_only(dir)?;
        let listed = stored.into_iter().filter_map(|t| entry_from_stored(t, &Roots::default())).map(|e| {
            let mut info = e.info();
            if info.state == TaskState::Running && owners.as_ref().is_some_and(|o| o.owned(e.seq).ok() == Some(false)) {
                info.state = TaskState::Queued;
            }
            info
        });
        Ok(listed.collect())
    }
}

impl Inner {
    /// Brings the view read at open up to date: what other processes changed since, and, for the
    /// tasks this process took, their rows again (one may have been paused, or finished, between
    /// the read and the lock).
    fn catch_up_after_open(self: &Arc<Self>) -> Result<()> {
        let controls = {
            let mut s = self.sched.lock();
            let changes = self.env.store.changes_since(s.rev)?;
            let touched: Vec<TaskId> = changes
                .rows
                .iter()
                .map(|(r, _)| r.id.as_str())
                .chain(changes.gone.iter().map(|(id, _)| id.as_str()))
                .filter(|id| s.owned.contains_key(*id))
                .map(|id| TaskId::from_stored(id.to_string()))
                .collect();
            let staged = self.stage(&mut s, changes);
            let controls = self.absorb(&mut s, staged);
            for id in touched {
                let Some(e) = self.find(id.as_str()) else { continue };
                if self.refresh_owned(&mut s, &e)? != Some(TaskState::Queued) {
                    s.ready.remove(&e.spec.id);
                    self.settle_ownership(&mut s, &e);
                }
            }
            controls
        };
        self.apply_controls(controls);
        Ok(())
    }

    /// Accepts work again after a shutdown (opening a directory whose manager is shut down but
    /// still alive in this process gives that manager back).
    pub(super) fn revive(self: &Arc<Self>) {
        if !self.shutting_down.swap(false, Ordering::SeqCst) {
            return;
        }
        let resume = self.env.config.read().resume_on_open;
        {
            let mut s = self.sched.lock();
            // The shutdown gave every task up; another process may have taken some since.
            let tasks: Vec<Arc<TaskEntry>> = self
                .tasks
                .read()
                .values()
                .filter(|e| e.state() == TaskState::Queued && e.spec.output.unresolved().is_none())
                .cloned()
                .collect();
            for e in tasks {
                let queued_here = s.ready.contains(&e.spec.id);
                if !queued_here && !resume {
                    e.inner.lock().dormant = true;
                    continue;
                }
                match self.own(&mut s, &e) {
                    Ok(true) => {
                        if !queued_here {
                            s.ready.push(e.spec.id.clone(), e.spec.host_key(), e.inner.lock().priority, e.seq);
                        }
                    }
                    _ => {
                        s.ready.remove(&e.spec.id);
                        s.note_foreign(&e.spec.id);
                    }
                }
            }
        }
        self.dispatch();
    }
}

/// Where the per-host connection slots of all processes are counted (see `scheduler.rs`).
const HOSTS_FILE: &str = "hosts";

/// The entry of a stored task, its destination resolved against `roots` (one whose root is not
/// among them stays [`Output::Unresolved`]).
pub(super) fn entry_from_stored(t: StoredTask, roots: &Roots) -> Option<Arc<TaskEntry>> {
    let StoredTask { row, ranges } = t;
    let url = url::Url::parse(&row.url).ok()?;
    let output = match roots.resolve(&row.destination) {
        Ok(path) => Output::File(path),
        Err(_) => Output::Unresolved(row.destination.clone()),
    };
    let spec = TaskSpec {
        id: TaskId::from_stored(row.id.clone()),
        url,
        output,
        headers: row.headers.clone(),
        connections: row.connections,
        sha256: row.sha256.clone(),
        priority: row.priority,
        overwrite: row.overwrite,
        rate_limit: row.rate_limit,
        network_policy: row.network_policy,
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
        network_policy: row.network_policy,
        ..EntryInner::new(row.state, row.priority, row.updated_ms)
    };
    Some(TaskEntry::new(spec, row.seq, row.created_ms, true, LiveProgress::new(bytes, row.total), inner))
}
