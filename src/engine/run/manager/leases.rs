//! Leases after the hand-off: the OS's progress, leases that end without their bytes, the
//! reconciliation of the OS's task list with the table after a relaunch, and taking stalled
//! leases back when the app returns to the foreground.

use super::handoff::engine_work;
use super::*;
use crate::engine::handoff::request::{check_lease_id, lease_of_tag, os_tag, OsRequest, TAG_PREFIX};
use std::time::Duration;

/// An OS task the platform found (`getAllTasks` on iOS, pending jobs on Android).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsTask {
    /// Its tag (`taskDescription`, job extras).
    pub os_tag: String,
    /// Bytes it has received so far.
    pub bytes: u64,
}

/// What the platform should do to bring the OS in line with the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// OS tasks to cancel: their leases ended (committed, released, the task paused, cancelled,
    /// removed or restarted).
    pub cancel_os_tags: Vec<String>,
    /// Tags carried by more than one OS task: keep one task of each, cancel the others (the
    /// platform tells them apart; the engine only knows tags).
    pub duplicate_os_tags: Vec<String>,
    /// Leases whose staged chunk waits to be ingested (`Manager::ingest_staged`).
    pub ingest: Vec<String>,
    /// New leases for the OS to fetch (in the background, ranges whose OS task vanished).
    pub export: Vec<OsRequest>,
    /// Tasks the engine now fetches itself (in the foreground, ranges whose OS task vanished).
    pub run_in_process: Vec<String>,
}

impl Manager {
    /// The OS task of a lease failed or vanished: its range goes back to the engine, which fetches
    /// it (with `If-Range`) once it can. Releasing a lease that already ended does nothing.
    pub fn release_lease(&self, lease_id: &str) -> Result<()> {
        check_lease_id(lease_id)?;
        let row = self.inner.env.store.lease(lease_id)?.ok_or_else(|| unknown_lease(lease_id))?;
        if row.state != LeaseState::Live {
            return Ok(());
        }
        if let Some(e) = self.inner.find(&row.task_id) {
            e.release_leases(&self.inner.env.store, Some(&[lease_id.to_string()]))?;
            self.inner.requeue_if_idle(&e);
            self.inner.dispatch();
        }
        Ok(())
    }

    /// The OS reports `bytes` received for the lease its task is tagged with: shown in the task's
    /// progress (never journaled; only ingested bytes count as written).
    pub fn note_os_progress(&self, os_tag: &str, bytes: u64) {
        let Some(lease) = lease_of_tag(os_tag) else { return };
        let owner = self.inner.tasks.read().values().find(|e| e.inner.lock().leases.iter().any(|l| l.id == lease)).cloned();
        if let Some(e) = owner {
            self.inner.note_progress(&e, lease, bytes);
        }
    }

    /// Tags of OS tasks whose leases the engine ended since the last call (a pause, cancel or
    /// remove, a restart, a failure): the platform cancels them.
    pub fn revoked(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.env.revoked.lock()).iter().map(|id| os_tag(id)).collect()
    }

    /// Brings the table and the OS in line, after a launch or a wake: `live` are the OS tasks the
    /// platform found. OS tasks of leases that ended are to be cancelled, staged chunks ingested,
    /// and leases whose OS task vanished (a force-quit cancels them all) are released: in the
    /// foreground the engine fetches their ranges itself, in the background they are leased to the
    /// OS again.
    /// `options` cut the leases made again.
    pub fn reconcile(&self, live: Vec<OsTask>, foreground: bool, options: super::handoff::HandoffOptions) -> Result<ReconcileReport> {
        options.validate()?;
        self.inner.reconcile(live, foreground, options)
    }

    /// Back in the foreground: leases whose OS task has shown no progress for `stale_after` are
    /// released and their ranges fetched by the engine (healthy OS tasks finish their chunks).
    /// Returns the tags of the OS tasks to cancel.
    pub fn take_back(&self, stale_after: Duration) -> Result<Vec<String>> {
        let now = Instant::now();
        let tasks: Vec<Arc<TaskEntry>> = self.inner.tasks.read().values().cloned().collect();
        let mut tags = Vec::new();
        for e in tasks.into_iter().filter(|e| e.spec.output.unresolved().is_none()) {
            let stale: Vec<String> = {
                let g = e.inner.lock();
                g.leases.iter().filter(|l| now.saturating_duration_since(l.last_progress) >= stale_after).map(|l| l.id.clone()).collect()
            };
            if !stale.is_empty() {
                let ended = e.release_leases(&self.inner.env.store, Some(&stale))?;
                tags.extend(ended.iter().map(|id| os_tag(id)));
            }
            self.inner.requeue_if_idle(&e);
        }
        self.inner.dispatch();
        Ok(tags)
    }
}

fn unknown_lease(id: &str) -> Error {
    Error::new(ErrorCode::UnknownLease, format!("no lease '{id}'"))
}

impl Inner {
    /// Ends every live lease of a task and queues their OS tasks for cancelling.
    pub(super) fn revoke_leases(&self, e: &TaskEntry) {
        match e.release_leases(&self.env.store, None) {
            Ok(ended) => self.env.revoke(ended),
            Err(err) => tracing::warn!("could not release the leases of {}: {err}", e.spec.id),
        }
    }

    fn reconcile(
        self: &Arc<Self>,
        live: Vec<OsTask>,
        foreground: bool,
        options: super::handoff::HandoffOptions,
    ) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        let swept = self.staging.sweep_leftovers(STAGING_LEFTOVER_AGE);
        if swept > 0 {
            tracing::info!("{swept} leftovers of a killed staging deleted");
        }
        let staged: Set<String> = self.staging.staged().into_iter().collect();
        let tasks: Vec<Arc<TaskEntry>> = self.tasks.read().values().cloned().collect();
        let owner: Map<String, Arc<TaskEntry>> =
            tasks.iter().flat_map(|e| e.inner.lock().leases.iter().map(|l| (l.id.clone(), e.clone())).collect::<Vec<_>>()).collect();
        let mut seen: Set<String> = Set::default();
        for t in &live {
            match lease_of_tag(&t.os_tag) {
                Some(lease) if owner.contains_key(lease) => {
                    if seen.insert(lease.to_string()) {
                        self.note_progress(&owner[lease], lease, t.bytes);
                    } else if !report.duplicate_os_tags.contains(&t.os_tag) {
                        report.duplicate_os_tags.push(t.os_tag.clone());
                    }
                }
                // Ours, but its lease ended.
                _ if t.os_tag.starts_with(TAG_PREFIX) => report.cancel_os_tags.push(t.os_tag.clone()),
                // Not ours: the app's own tasks are none of the engine's business.
                _ => {}
            }
        }
        for lease in &staged {
            if owner.contains_key(lease) {
                report.ingest.push(lease.clone());
            } else {
                // A committed lease's chunk staged again, or a chunk of an ended lease.
                self.staging.remove(lease);
            }
        }
        for e in &tasks {
            if e.spec.output.unresolved().is_some() {
                // Its leases wait, live, for a manager that declares its root.
                continue;
            }
            let vanished: Vec<String> = {
                let g = e.inner.lock();
                g.leases.iter().filter(|l| !seen.contains(&l.id) && !staged.contains(&l.id)).map(|l| l.id.clone()).collect()
            };
            if !vanished.is_empty() {
                e.release_leases(&self.env.store, Some(&vanished))?;
            }
            let (running, has_work, has_runner) = {
                let g = e.inner.lock();
                (g.state == TaskState::Running, engine_work(&g), g.run.is_some())
            };
            if !running || !has_work || has_runner {
                continue;
            }
            if foreground {
                self.requeue_if_idle(e);
                report.run_in_process.push(e.spec.id.to_string());
            } else {
                report.export.extend(self.lease_again(e, options)?);
            }
        }
        self.dispatch();
        Ok(report)
    }

    fn note_progress(&self, e: &TaskEntry, lease: &str, bytes: u64) {
        let mut g = e.inner.lock();
        if let Some(l) = g.leases.iter_mut().find(|l| l.id == lease) {
            let bytes = l.length().map_or(bytes, |n| bytes.min(n));
            if bytes != l.os_bytes {
                l.os_bytes = bytes;
                l.last_progress = Instant::now();
            }
        }
        let total: u64 = g.leases.iter().map(|l| l.os_bytes).sum();
        e.live.os_bytes.store(total, Ordering::Relaxed);
    }

    /// Leases the ranges of a handed-off task that no live lease holds.
    fn lease_again(&self, e: &Arc<TaskEntry>, options: super::handoff::HandoffOptions) -> Result<Vec<OsRequest>> {
        let c = self.candidate(e.clone());
        if c.weight == 0 {
            return Ok(Vec::new());
        }
        let held = e.inner.lock().leases.len();
        let max = (options.max_leases_per_task as usize).saturating_sub(held).max(1);
        self.lease(&c, options.chunk_bytes, max)
    }
}

/// How long a lease may show no progress before `take_back` releases it, by default.
pub const STALE_LEASE: Duration = Duration::from_secs(20);

/// How old a leftover of an unfinished staging must be before `reconcile` deletes it (staging
/// itself takes milliseconds; see [`crate::engine::handoff::staging::Staging::sweep_leftovers`]).
const STAGING_LEFTOVER_AGE: Duration = Duration::from_secs(3600);
