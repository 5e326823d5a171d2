//! Ingesting a chunk the OS fetched: judged by the engine's rules, copied into the part file at
//! its offset, synced, and journaled as durable in the same transaction that marks its lease
//! committed; the file is published when it was the last range. Idempotent: a chunk delivered
//! twice, or ingested again after a kill between the journal and deleting the staged file, is
//! recognised; a chunk for a lease that ended (the task paused, cancelled, removed, restarted) is
//! deleted, never written.

use super::*;
use crate::engine::handoff::judge::{judge, ChunkMeta, Terms, Verdict};
use crate::engine::handoff::request::{check_lease_id, os_tag};
use crate::engine::handoff::splice::copy_at;
use crate::engine::storage::crash;
use crate::engine::storage::part_file::{self, PartFile, Publish};
use crate::engine::storage::store::{lease_tx, tx};

/// What became of a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Written, synced and journaled; `task_complete` when the file is now in place.
    Committed {
        /// The task.
        task_id: String,
        /// The file was published.
        task_complete: bool,
    },
    /// This chunk was ingested before; nothing written.
    AlreadyCommitted,
    /// The resource changed (a 200 to a range, another validator or length, 416): the download
    /// starts over in the engine; the task's other OS tasks are to be cancelled.
    Restart {
        /// The task.
        task_id: String,
        /// Why.
        reason: String,
        /// OS tasks to cancel.
        cancel_os_tags: Vec<String>,
    },
    /// Not written; the lease ended and its range went back to the engine (or, when not
    /// retryable, the task failed).
    Rejected {
        /// The task, when the lease was known.
        task_id: Option<String>,
        /// Why (with the HTTP status, when the server's answer was the reason).
        error: Error,
        /// Another try may succeed.
        retryable: bool,
        /// 401 or 403: the request's credentials need refreshing.
        credentials: bool,
        /// OS tasks to cancel (the task failed).
        cancel_os_tags: Vec<String>,
    },
    /// Nothing is staged for the lease (already ingested and deleted, or never staged); the
    /// lease, if live, stays live.
    NothingStaged,
    /// Storage trouble while writing (disk full, say): the chunk stays staged and the lease live;
    /// ingest it again later.
    Deferred {
        /// What went wrong.
        error: Error,
    },
}

fn rejected(error: Error, retryable: bool) -> IngestOutcome {
    IngestOutcome::Rejected { task_id: None, error, retryable, credentials: false, cancel_os_tags: Vec::new() }
}

fn rejected_for(task_id: &str, error: Error, retryable: bool) -> IngestOutcome {
    IngestOutcome::Rejected { task_id: Some(task_id.to_string()), error, retryable, credentials: false, cancel_os_tags: Vec::new() }
}

impl Manager {
    /// Moves the file the OS fetched for `lease_id` into the staging folder, with the answer's
    /// status and headers. Call it inside the OS's callback (iOS deletes the file on return);
    /// then [`Manager::ingest_staged`], off that thread.
    /// Returns false when a chunk was already staged for the lease (this one is then dropped).
    pub fn stage_chunk(&self, lease_id: &str, from: &Path, meta: ChunkMeta) -> Result<bool> {
        self.inner.staging.stage(lease_id, from, &meta)
    }

    /// Ingests the chunk staged for `lease_id` (see [`Manager::stage_chunk`]).
    pub fn ingest_staged(&self, lease_id: &str) -> IngestOutcome {
        match self.inner.staging.load(lease_id) {
            Ok(Some(staged)) => self.inner.ingest(lease_id, &staged.path, &staged.meta),
            Ok(None) => IngestOutcome::NothingStaged,
            Err(e) => rejected(e, false),
        }
    }

    /// Ingests `file`, the body the OS fetched for `lease_id`, with the answer's `meta`. The file
    /// is deleted once its fate is decided (kept only when the outcome is `Deferred`).
    pub fn ingest(&self, lease_id: &str, file: &Path, meta: ChunkMeta) -> IngestOutcome {
        self.inner.ingest(lease_id, file, &meta)
    }
}

impl Inner {
    fn ingest(self: &Arc<Self>, lease_id: &str, file: &Path, meta: &ChunkMeta) -> IngestOutcome {
        let outcome = self.ingest_inner(lease_id, file, meta);
        if !matches!(outcome, IngestOutcome::Deferred { .. }) {
            let _ = std::fs::remove_file(file);
            self.staging.remove(lease_id);
        }
        outcome
    }

    fn ingest_inner(self: &Arc<Self>, lease_id: &str, file: &Path, meta: &ChunkMeta) -> IngestOutcome {
        if let Err(e) = check_lease_id(lease_id) {
            return rejected(e, false);
        }
        let row = match self.env.store.lease(lease_id) {
            Ok(Some(row)) => row,
            Ok(None) => return rejected(Error::new(ErrorCode::UnknownLease, format!("no lease '{lease_id}' (its task is gone?)")), false),
            Err(e) => return IngestOutcome::Deferred { error: e },
        };
        match row.state {
            LeaseState::Committed => return IngestOutcome::AlreadyCommitted,
            LeaseState::Released => {
                return rejected_for(&row.task_id, Error::new(ErrorCode::UnknownLease, "the lease ended before its chunk arrived"), false)
            }
            LeaseState::Live => {}
        }
        let Some(e) = self.find(&row.task_id) else {
            return rejected_for(&row.task_id, Error::new(ErrorCode::TaskNotFound, format!("no task '{}'", row.task_id)), false);
        };
        if let Some(stored) = e.spec.output.unresolved() {
            // Kept staged, its lease live, for a manager that declares the root.
            return IngestOutcome::Deferred { error: unknown_root(stored) };
        }
        // One ingest per task at a time: the part file and the journal change together.
        let _one = e.ingest.lock();
        let (lease, resource) = {
            let g = e.inner.lock();
            match g.leases.iter().find(|l| l.id == lease_id) {
                // Queued too: an engine run beside the leases was stopped (a budget, the network).
                Some(_) if !g.state.is_active() => {
                    let state = g.state;
                    return rejected_for(&row.task_id, Error::new(ErrorCode::InvalidState, format!("the task is {state}")), false);
                }
                Some(l) => (l.clone(), g.resource.clone()),
                None => {
                    return rejected_for(
                        &row.task_id,
                        Error::new(ErrorCode::UnknownLease, "the lease ended before its chunk arrived"),
                        false,
                    )
                }
            }
        };
        let terms =
            Terms { start: lease.start, end: lease.end, total: resource.total, whole: lease.whole, validator: resource.validator.as_ref() };
        // Judged and copied through one descriptor: what is judged is what is written.
        let (chunk, verdict) = match open_chunk(file) {
            Ok((chunk, staged_len)) => (Some((chunk, staged_len)), judge(&terms, meta, staged_len)),
            Err(error) => (None, Verdict::Reject { error, retryable: true, credentials: false }),
        };
        match (verdict, chunk) {
            (Verdict::Accept, Some((chunk, staged_len))) => match self.commit_chunk(&e, &lease, &chunk, staged_len) {
                Ok(Some(task_complete)) => IngestOutcome::Committed { task_id: row.task_id, task_complete },
                Ok(None) => {
                    rejected_for(&row.task_id, Error::new(ErrorCode::UnknownLease, "the lease ended while its chunk was written"), false)
                }
                Err(Restarted(reason)) => self.restart(&e, reason),
                Err(Storage(error)) => IngestOutcome::Deferred { error },
            },
            (Verdict::Accept, None) => IngestOutcome::Deferred { error: Error::internal("a chunk was judged without its file") },
            (Verdict::Restart { reason, .. }, _) => self.restart(&e, reason),
            (Verdict::Reject { error, retryable, credentials }, _) => {
                let mut cancel_os_tags = Vec::new();
                let _ = e.release_leases(&self.env.store, Some(std::slice::from_ref(&lease.id)));
                if retryable {
                    self.requeue_if_idle(&e);
                    self.dispatch();
                } else {
                    let ended = e.release_leases(&self.env.store, None).unwrap_or_default();
                    cancel_os_tags = ended.iter().map(|id| os_tag(id)).collect();
                    self.take_from_queue(&e);
                    if e.state() == TaskState::Running {
                        let _ = self.transition(&e, Transition::Fail, Some((&error).into()));
                        Self::stop_runner(&e, StopReason::Failed);
                    }
                    self.settle_ownership(&mut self.sched.lock(), &e);
                }
                IngestOutcome::Rejected { task_id: Some(row.task_id), error, retryable, credentials, cancel_os_tags }
            }
        }
    }

    /// The resource changed: every lease of the task ends, its journal and part file go, and the
    /// engine starts it over.
    fn restart(self: &Arc<Self>, e: &Arc<TaskEntry>, reason: String) -> IngestOutcome {
        tracing::info!(task = %e.spec.id, "a chunk fetched by the OS says the download must start over: {reason}");
        let ended = e.forget_resource(&self.env.store).unwrap_or_default();
        if let Output::File(dest) = &e.spec.output {
            let _ = std::fs::remove_file(part_path(dest));
        }
        e.inner.lock().part_file = None;
        e.live.bytes.store(0, Ordering::Relaxed);
        self.requeue_if_idle(e);
        self.dispatch();
        IngestOutcome::Restart { task_id: e.spec.id.to_string(), reason, cancel_os_tags: ended.iter().map(|id| os_tag(id)).collect() }
    }

    /// Copies the chunk into the part file at its offset, syncs it, and journals it. `Some(true)`
    /// when the file was then published, `None` when the lease ended meanwhile.
    fn commit_chunk(
        &self,
        e: &Arc<TaskEntry>,
        lease: &LiveLease,
        from: &std::fs::File,
        len: u64,
    ) -> std::result::Result<Option<bool>, Failure> {
        let Output::File(dest) = &e.spec.output else { return Err(Restarted("not a file download".into())) };
        let path = part_path(dest);
        let (known, written, copying) = {
            let g = e.inner.lock();
            if !g.leases.iter().any(|l| l.id == lease.id) {
                return Ok(None);
            }
            (g.part_file.clone(), g.journal.iter().any(|r| r.written > r.start), e.chunk_copy.begin(&lease.id))
        };
        let part = if lease.whole {
            PartFile::create(&path).map_err(Storage)?
        } else {
            match PartFile::open_existing(&path).map_err(Storage)? {
                Some(p) => {
                    let found = p.identity().map_err(Storage)?.file;
                    if known.as_deref().is_some_and(|k| k != found) {
                        return Err(Restarted("the part file was replaced".into()));
                    }
                    p
                }
                None if !written && known.is_none() => PartFile::create(&path).map_err(Storage)?,
                None => return Err(Restarted("the part file is gone".into())),
            }
        };
        copy_at(from, part.file_descriptor(), lease.start, len)
            .map_err(|err| Storage(Error::io("writing the chunk into the part file", &err)))?;
        crash::pause("ingest:copying");
        part.sync_durably().map_err(Storage)?;
        drop(copying);
        crash::point("ingest:synced");
        let identity = part.identity().map_err(Storage)?.file;
        let id = e.spec.id.as_str();
        let complete = {
            let mut g = e.inner.lock();
            let Some(at) = g.leases.iter().position(|l| l.id == lease.id) else { return Ok(None) };
            let mut conn = self.env.store.lock();
            let t = conn.transaction().map_err(|err| Storage(err.into()))?;
            let journal = (|| {
                lease_tx::set_state(&t, &lease.id, LeaseState::Committed)?;
                tx::set_part_file(&t, id, Some(&identity))?;
                if lease.whole {
                    let (etag, lm) = Validator::to_columns(&g.resource.validator);
                    tx::set_resource(&t, id, Some(len), etag.as_deref(), lm.as_deref(), &[])?;
                } else {
                    let row = SegmentRow { start: lease.start, end: lease.end, written: lease.end, durable: lease.end };
                    tx::write_progress(&t, id, &[row])?;
                    tx::write_durable(&t, id, &[row])?;
                }
                t.commit()?;
                Ok::<(), Error>(())
            })();
            journal.map_err(Storage)?;
            crash::point("ingest:journaled");
            drop(conn);
            let done = g.leases.remove(at);
            g.part_file = Some(identity);
            let _ = e.live.os_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(done.os_bytes)));
            e.live.bytes.fetch_add(len, Ordering::Relaxed);
            if lease.whole {
                g.resource.total = Some(len);
                e.live.total.store(len, Ordering::Relaxed);
            }
            match g.run.as_ref().and_then(|r| r.ranges.clone()) {
                Some(shared) => {
                    // A runner fetches the task's other ranges: the map is the record, and the
                    // runner publishes when it is complete.
                    shared.map.lock().commit_external(&lease.id);
                    false
                }
                None => {
                    if let Some(r) = g.journal.iter_mut().find(|r| r.start == lease.start && r.end == lease.end) {
                        r.written = r.end;
                        r.durable = r.end;
                    }
                    g.run.is_none() && (lease.whole || g.journal.iter().all(|r| r.written == r.end)) && g.leases.is_empty()
                }
            }
        };
        if !complete {
            self.requeue_if_idle(e);
            return Ok(Some(false));
        }
        Ok(Some(self.publish_ingested(e, part)))
    }

    /// Publishes a file whose last range was ingested: size and checksum verified, synced, moved
    /// into place, completion recorded. False when verification failed (the task failed).
    fn publish_ingested(&self, e: &Arc<TaskEntry>, part: PartFile) -> bool {
        let Output::File(dest) = &e.spec.output else { return false };
        self.take_from_queue(e);
        let total = e.inner.lock().resource.total.unwrap_or(0);
        let publish = Publish {
            destination: dest,
            expected_size: Some(total),
            sha256: e.spec.sha256.as_deref(),
            hashed: None,
            overwrite: e.spec.overwrite,
        };
        let result = part_file::verify(&part, &publish).and_then(|identity| {
            part_file::commit(&part, dest, e.spec.overwrite, || {
                self.env.store.mark_publishing(&[(e.spec.id.as_str(), &identity.publish_mark())])?;
                self.env.store.sync_wal()
            })
            .map(|()| identity.len)
        });
        match result {
            Ok(len) => {
                e.live.bytes.store(len, Ordering::Relaxed);
                e.inner.lock().journal.clear();
                self.events.progress(ProgressEvent {
                    id: e.spec.id.clone(),
                    bytes: len,
                    total: Some(len),
                    speed: 0.0,
                    eta_seconds: Some(0.0),
                });
                let _ = self.transition(e, Transition::Complete, None);
                let mut s = self.sched.lock();
                release_claim(&mut s, e);
                self.settle_ownership(&mut s, e);
                true
            }
            Err(err) => {
                if matches!(err.code(), ErrorCode::ChecksumMismatch | ErrorCode::SizeMismatch) {
                    let _ = std::fs::remove_file(part_path(dest));
                    let ended = e.forget_resource(&self.env.store).unwrap_or_default();
                    self.env.revoke(ended);
                }
                let _ = self.transition(e, Transition::Fail, Some((&err).into()));
                self.settle_ownership(&mut self.sched.lock(), e);
                false
            }
        }
    }

    /// A queued task (held, or waiting its turn) that an ingest ends runs from here on: out of the
    /// ready queue, so no runner starts for it.
    fn take_from_queue(&self, e: &Arc<TaskEntry>) {
        let mut s = self.sched.lock();
        if e.state() == TaskState::Queued {
            s.ready.remove(&e.spec.id);
            e.inner.lock().dormant = false;
            let _ = self.transition_with(e, Transition::Start, None, false);
        }
    }
}

/// Opens the fetched chunk: a regular file, never followed through a symlink nor waited for (a
/// FIFO); returns it with its length.
fn open_chunk(path: &Path) -> Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| Error::io("opening the fetched chunk", &err))?;
    let m = file.metadata().map_err(|err| Error::io("reading the fetched chunk", &err))?;
    if !m.is_file() {
        return Err(Error::new(ErrorCode::StorageIo, "the fetched chunk is not a regular file"));
    }
    Ok((file, m.len()))
}

/// Why a chunk could not be committed.
enum Failure {
    /// The part file does not hold what the journal says: start over.
    Restarted(String),
    /// Storage trouble: try again later.
    Storage(Error),
}
use Failure::{Restarted, Storage};
