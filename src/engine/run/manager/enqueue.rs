//! Enqueueing: validation, idempotent ids, destination claims, and recording a batch in chunks.

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
}

pub(super) enum Prepared {
    Existing(TaskId),
    New(TaskSpec),
}

/// Why `dest` cannot be claimed: it is a live task's destination, a live task's part file
/// (`<dest>` = `<other>.part`), or its own part file is a live task's destination. Either way two
/// tasks would write one file.
/// Whether `dest` (whose [`path_key`] is `key`) is taken: by another task, as the part file of
/// another task's destination, or as the destination whose part file this would be.
pub(super) fn claim_conflict(claims: &Map<OsString, TaskId>, batch: &Map<OsString, TaskId>, dest: &Path, key: &OsStr) -> Option<Error> {
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

pub(super) fn release_claim(s: &mut Sched, e: &TaskEntry) {
    if let Some(dest) = e.spec.output.path() {
        // One lookup in the common case; another task's claim (rare) is put back.
        if let Some((path, owner)) = s.claims.remove_entry(&*path_key(dest)) {
            if owner != e.spec.id {
                s.claims.insert(path, owner);
            }
        }
    }
}
