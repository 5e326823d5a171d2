//! Enqueueing: validation, idempotent ids, destination claims, and recording a batch in chunks.

use super::shared::Staged;
use super::*;

impl Inner {
    /// Enqueues in chunks, each one transaction followed by a dispatch: the first downloads start
    /// after a few tasks are recorded instead of after the whole batch (recording 10,000 tasks takes
    /// tens of milliseconds). Duplicates across chunks are caught like those within one, because
    /// each chunk sees the tasks and claims of the chunks before it.
    pub(super) fn enqueue_batch(self: &Arc<Self>, requests: Vec<Request>) -> Vec<Result<TaskId>> {
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

    pub(super) fn enqueue_chunk(self: &Arc<Self>, requests: Vec<Request>) -> Vec<Result<TaskId>> {
        if self.shutting_down.load(Ordering::Acquire) {
            return requests.iter().map(|_| Err(Self::shutting_down_error())).collect();
        }
        // Another process may have enqueued some of these ids: know its tasks first (one cheap
        // look when no other process wrote anything).
        self.sync();
        // Validate outside the lock; an id that already exists is checked for idempotency first,
        // because its destination may legitimately exist by now.
        let mut dirs = crate::engine::model::request::DirChecks::default();
        let roots = self.env.store.roots();
        let prepared: Vec<Result<Prepared>> = requests
            .into_iter()
            .map(|r| {
                if let Some(id) = r.task_id.as_deref() {
                    if let Some(existing) = self.find(id) {
                        if let Some(stored) = existing.spec.output.unresolved() {
                            return Err(unknown_root(stored));
                        }
                        // The same request: URL, output, headers and checksum (as validation
                        // normalises them). Priority, connections and overwrite may differ.
                        let same = r.as_given().is_ok_and(|given| existing.spec.same_request(&rooted(roots, given)));
                        return if same {
                            Ok(Prepared::Existing(existing.spec.id.clone()))
                        } else {
                            Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{id}' exists with a different request")))
                        };
                    }
                }
                match r.validate_with(&mut dirs) {
                    Ok(spec) => match spec.output.path().filter(|dest| self.in_state_dir(dest)) {
                        Some(dest) => Err(Error::new(
                            ErrorCode::DestinationNotWritable,
                            format!("'{}' is inside the state directory, whose files are the engine's", dest.display()),
                        )),
                        None => Ok(Prepared::New(rooted(roots, spec))),
                    },
                    // The destination (or its part file) exists: perhaps because a live task, here
                    // or in another process, is downloading into it. The claims tell (see `admit`).
                    Err(e) if e.code() == ErrorCode::DestinationExists => match r.destination.as_deref() {
                        Some(dest) => Ok(Prepared::Exists(e, roots.normalize(dest).unwrap_or_else(|| dest.to_path_buf()))),
                        None => Err(e),
                    },
                    Err(e) => Err(e),
                }
            })
            .collect();
        let stored = prepared.iter().any(|p| matches!(p, Ok(Prepared::New(spec)) if matches!(spec.output, Output::File(_))));
        // (A chunk with nothing new to record decides its refusals against this process's view,
        // which the sync above brought up to date.)
        let mut s = self.sched.lock();
        if !stored {
            // Memory and stream tasks live in this process only: nothing to write, or to lock.
            let mut admitted = self.admit(&s, prepared, None);
            let (entries, _) = build(std::mem::take(&mut admitted.specs), s.next_seq, &Roots::default());
            s.next_seq += entries.len() as i64;
            return self.record(s, admitted, entries, Vec::new());
        }
        // Stored tasks are decided under the table's write lock, against every process's tasks: the
        // changes since this process last looked are read inside the transaction, so two processes
        // can never both claim one destination or one id, and sequence numbers come from the table.
        let mut locked: Vec<i64> = Vec::new();
        let mut staged = None;
        let mut pending = Some(prepared);
        let mut admitted: Option<Admitted> = None;
        let store = self.env.store.clone();
        let written = store.write(|t| {
            let changes = tx::changes(t, s.rev)?;
            let st = self.stage(&mut s, changes);
            let a = admitted.insert(self.admit(&s, pending.take().unwrap_or_default(), Some(&st)));
            staged = Some(st);
            let first = tx::alloc_seq(t, a.specs.len())?;
            let (entries, rows) = build(std::mem::take(&mut a.specs), first, store.roots());
            for e in entries.iter().filter(|e| e.persisted) {
                if !self.owners().try_own(e.seq)? {
                    return Err(Error::internal(format!("the lock of new task '{}' is held by another process", e.spec.id)));
                }
                locked.push(e.seq);
            }
            tx::insert_tasks(t, &rows)?;
            crate::engine::storage::crash::point(CRASH_ENQUEUE);
            Ok((entries, tx::changes(t, i64::MAX)?.rev))
        });
        match (written, admitted) {
            (Ok((entries, rev)), Some(admitted)) => {
                let controls = staged.map(|st| self.absorb(&mut s, st)).unwrap_or_default();
                // Everything up to `rev` is known here now: what the others wrote before, and this.
                s.rev = s.rev.max(rev);
                for e in entries.iter().filter(|e| e.persisted) {
                    s.owned.insert(e.spec.id.clone(), e.seq);
                }
                if let Some(last) = entries.last() {
                    s.next_seq = s.next_seq.max(last.seq + 1);
                }
                self.record(s, admitted, entries, controls)
            }
            (written, admitted) => {
                let e = written.err().unwrap_or_else(|| Error::internal("enqueue recorded nothing"));
                for seq in locked {
                    self.owners().release(seq);
                }
                match admitted {
                    Some(mut a) => {
                        for &i in &a.new_at {
                            a.results[i] = Err(e.clone());
                        }
                        a.results
                    }
                    None => pending.into_iter().flatten().map(|_| Err(e.clone())).collect(),
                }
            }
        }
    }

    /// Whether `dest` is one of the engine's own files (its table, locks, staged chunks), however
    /// it is spelled.
    fn in_state_dir(&self, dest: &Path) -> bool {
        Path::new(&*claim_key(dest)).starts_with(&self.dir)
    }

    /// Decides each prepared request of a chunk against the tasks known (this process's, and the
    /// table's changes `staged` when given), the claims, and the chunk's own earlier requests.
    fn admit(&self, s: &Sched, prepared: Vec<Result<Prepared>>, staged: Option<&Staged>) -> Admitted {
        let tasks = self.tasks.read();
        let mut out = Admitted {
            results: Vec::with_capacity(prepared.len()),
            specs: Vec::new(),
            new_at: Vec::new(),
            dests: Map::with_capacity_and_hasher(prepared.len(), Default::default()),
        };
        let mut batch_ids: Map<TaskId, usize> = Map::with_capacity_and_hasher(prepared.len(), Default::default());
        for p in prepared {
            let spec = match p {
                Err(e) => {
                    out.results.push(Err(e));
                    continue;
                }
                Ok(Prepared::Existing(id)) => {
                    out.results.push(Ok(id));
                    continue;
                }
                Ok(Prepared::Exists(e, dest)) => {
                    let key = claim_key(&dest);
                    out.results.push(Err(claim_conflict(&s.claims, &out.dests, &dest, &key).unwrap_or(e)));
                    continue;
                }
                Ok(Prepared::New(spec)) => spec,
            };
            let known = match staged {
                Some(st) => Self::known_entry(st, &tasks, spec.id.as_str()),
                None => tasks.get(&spec.id),
            };
            if let Some(existing) = known {
                if let Some(stored) = existing.spec.output.unresolved() {
                    out.results.push(Err(unknown_root(stored)));
                    continue;
                }
                out.results.push(if existing.spec.same_request(&spec) && !existing.removed.load(Ordering::Acquire) {
                    Ok(spec.id.clone())
                } else {
                    Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{}' already exists with a different request", spec.id)))
                });
                continue;
            }
            if let Some(&j) = batch_ids.get(&spec.id) {
                let same = out.specs[j].same_request(&spec);
                out.results.push(if same {
                    Ok(spec.id.clone())
                } else {
                    Err(Error::new(ErrorCode::TaskIdConflict, format!("task '{}' appears twice in the batch", spec.id)))
                });
                continue;
            }
            if let Output::File(dest) = &spec.output {
                let key = claim_key(dest);
                if let Some(busy) = claim_conflict(&s.claims, &out.dests, dest, &key) {
                    out.results.push(Err(busy));
                    continue;
                }
                out.dests.insert(key.into_owned(), spec.id.clone());
            }
            batch_ids.insert(spec.id.clone(), out.specs.len());
            out.new_at.push(out.results.len());
            out.results.push(Ok(spec.id.clone()));
            out.specs.push(spec);
        }
        out
    }

    /// Makes a chunk's recorded tasks live: claims, entries, the ready queue, events, a dispatch;
    /// then the control requests a sync found for this process's tasks.
    fn record(
        self: &Arc<Self>,
        mut s: parking_lot::MutexGuard<'_, Sched>,
        admitted: Admitted,
        entries: Vec<Arc<TaskEntry>>,
        controls: Vec<(Arc<TaskEntry>, Control)>,
    ) -> Vec<Result<TaskId>> {
        s.claims.reserve(admitted.dests.len());
        s.claims.extend(admitted.dests);
        {
            let mut tasks = self.tasks.write();
            for e in &entries {
                s.ready.push(e.spec.id.clone(), e.spec.host_key(), e.spec.priority, e.seq);
                tasks.insert(e.spec.id.clone(), e.clone());
            }
        }
        drop(s);
        for e in &entries {
            self.events.state(StateEvent { id: e.spec.id.clone(), from: None, to: TaskState::Queued, error: None });
        }
        self.dispatch();
        self.apply_controls(controls);
        admitted.results
    }
}

/// Crash point (see [`crate::engine::storage::crash`]) inside an enqueue's transaction, after its
/// rows are inserted and before the commit.
pub const CRASH_ENQUEUE: &str = "enqueue:inserted";

/// A chunk's requests, decided: one result per request, and the new tasks with their claims.
struct Admitted {
    results: Vec<Result<TaskId>>,
    specs: Vec<TaskSpec>,
    /// Where the new tasks' results are in `results`.
    new_at: Vec<usize>,
    dests: Map<OsString, TaskId>,
}

/// A spec whose destination is under a root, spelled as it will read once stored and resolved
/// again (the root's declared path joined with the rest), so that claims and statuses agree
/// however the caller spelled it. Other specs are returned as they are.
fn rooted(roots: &Roots, mut spec: TaskSpec) -> TaskSpec {
    if let Some(path) = spec.output.path().and_then(|dest| roots.normalize(dest)) {
        spec.output = Output::File(path);
    }
    spec
}

/// Entries (and, for stored outputs, rows) for new tasks numbered from `first`; a destination
/// under one of `roots` is stored relative to it.
fn build(specs: Vec<TaskSpec>, first: i64, roots: &Roots) -> (Vec<Arc<TaskEntry>>, Vec<TaskRow>) {
    let now = now_ms();
    let mut entries = Vec::with_capacity(specs.len());
    let mut rows = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let seq = first + i as i64;
        let persisted = matches!(spec.output, Output::File(_));
        if persisted {
            rows.push(TaskRow {
                id: spec.id.as_str().to_string(),
                seq,
                url: spec.url.to_string(),
                destination: spec.output.path().map(|p| roots.to_stored(p)).unwrap_or_default(),
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
                network_policy: spec.network_policy,
                rate_limit: spec.rate_limit,
            });
        }
        let inner = EntryInner { network_policy: spec.network_policy, ..EntryInner::new(TaskState::Queued, spec.priority, now) };
        let entry = TaskEntry::new(spec, seq, now, persisted, LiveProgress::new(0, None), inner);
        // validate_destination refused an existing part file unless overwriting.
        entry.no_part_yet.store(!entry.spec.overwrite, Ordering::Relaxed);
        entries.push(entry);
    }
    (entries, rows)
}

pub(super) enum Prepared {
    Existing(TaskId),
    New(TaskSpec),
    /// Refused with `destination_exists`, unless a live task claims the destination (then
    /// `destination_busy` says why better).
    Exists(Error, PathBuf),
}

/// Why `dest` cannot be claimed: it is a live task's destination, a live task's part file
/// (`<dest>` = `<other>.part`), or its own part file is a live task's destination. Either way two
/// tasks would write one file.
/// Whether `dest` (whose [`claim_key`] is `key`) is taken: by another task, as the part file of
/// another task's destination, or as the destination whose part file this would be.
pub(super) fn claim_conflict(claims: &Map<OsString, TaskId>, batch: &Map<OsString, TaskId>, dest: &Path, key: &OsStr) -> Option<Error> {
    let owner = |key: &OsStr| claims.get(key).or_else(|| batch.get(key)).cloned();
    if let Some(owner) = owner(key) {
        return Some(Error::new(ErrorCode::DestinationBusy, format!("'{}' is already the destination of task '{owner}'", dest.display())));
    }
    let part = part_path(dest);
    if let Some(owner) = owner(&claim_key(&part)) {
        return Some(Error::new(
            ErrorCode::DestinationBusy,
            format!("'{}' (where this download would be written) is the destination of task '{owner}'", part.display()),
        ));
    }
    use std::os::unix::ffi::OsStrExt;
    let stem = dest.file_name()?.as_bytes().strip_suffix(b".part").filter(|s| !s.is_empty())?;
    let other = dest.with_file_name(std::ffi::OsStr::from_bytes(stem));
    owner(&claim_key(&other))
        .map(|owner| Error::new(ErrorCode::DestinationBusy, format!("'{}' is the partial file of task '{owner}'", dest.display())))
}

pub(super) fn release_claim(s: &mut Sched, e: &TaskEntry) {
    if let Some(dest) = e.spec.output.path() {
        // One lookup in the common case; another task's claim (rare) is put back.
        if let Some((path, owner)) = s.claims.remove_entry(&*claim_key(dest)) {
            if owner != e.spec.id {
                s.claims.insert(path, owner);
            }
        }
    }
}
