//! What a caller does to a task: pause, resume, cancel, remove, reprioritise. A task another
//! process runs is paused, cancelled or removed by that process (see `remote.rs`); resuming it
//! does nothing while it runs there.

use super::*;

/// The longest a cancel or remove waits for the task's runner to let go of its destination.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Inner {
    /// Removes a task's partial file and journal.
    pub(super) fn discard_partial(&self, entry: &TaskEntry) {
        if let Output::File(dest) = &entry.spec.output {
            let _ = std::fs::remove_file(part_path(dest));
        }
        entry.live.bytes.store(0, Ordering::Relaxed);
        match entry.forget_resource(&self.env.store) {
            Ok(ended) => self.env.revoke(ended),
            Err(e) => tracing::warn!("could not clear the journal of {}: {e}", entry.spec.id),
        }
    }

    /// Asks a live runner to stop; a cancel, once asked for, is never downgraded. False when no
    /// runner is alive.
    pub(super) fn stop_runner(entry: &TaskEntry, reason: StopReason) -> bool {
        let mut g = entry.inner.lock();
        match g.run.as_mut() {
            Some(run) => {
                if run.reason != Some(StopReason::Cancel) {
                    run.reason = Some(reason);
                }
                run.stop.cancel();
                true
            }
            None => false,
        }
    }

    pub(super) fn cancel_pending(entry: &TaskEntry) -> bool {
        entry.inner.lock().run.as_ref().is_some_and(|r| r.reason == Some(StopReason::Cancel))
    }

    pub(super) fn pause(self: &Arc<Self>, id: &str) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        if !self.take_for_control(&mut s, &e, Control::Pause)? {
            return Ok(());
        }
        let paused = self.pause_locked(&mut s, &e);
        self.settle_ownership(&mut s, &e);
        paused
    }

    /// Pauses a task this process holds the lock of.
    pub(super) fn pause_locked(&self, s: &mut Sched, e: &Arc<TaskEntry>) -> Result<()> {
        if Self::cancel_pending(e) {
            return Ok(());
        }
        match e.state() {
            TaskState::Paused => Ok(()),
            TaskState::Queued => {
                s.ready.remove(&e.spec.id);
                e.inner.lock().dormant = false;
                self.revoke_leases(e);
                self.transition(e, Transition::Pause, None).map(drop)
            }
            TaskState::Running => {
                self.transition(e, Transition::Pause, None)?;
                Self::stop_runner(e, StopReason::Pause);
                // The OS's chunks in flight are given up: a resume fetches their ranges again.
                self.revoke_leases(e);
                Ok(())
            }
            other => Err(Error::new(ErrorCode::InvalidState, format!("cannot pause a task that is {other}"))),
        }
    }

    pub(super) fn resume(self: &Arc<Self>, id: &str) -> Result<()> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Self::shutting_down_error());
        }
        {
            let mut s = self.sched.lock();
            let e = self.entry(id)?;
            if !self.take_for_resume(&mut s, &e)? {
                // Another process runs it.
                return Ok(());
            }
            let resumed = self.resume_locked(&mut s, &e);
            self.settle_ownership(&mut s, &e);
            resumed?;
        }
        self.dispatch();
        Ok(())
    }

    /// Queues a task this process holds the lock of.
    fn resume_locked(&self, s: &mut Sched, e: &Arc<TaskEntry>) -> Result<()> {
        match e.state() {
            TaskState::Running => return Ok(()),
            TaskState::Queued => {
                let was_dormant = std::mem::replace(&mut e.inner.lock().dormant, false);
                if !was_dormant && s.ready.contains(&e.spec.id) {
                    // Already waiting its turn (a batch resumed right after enqueueing it).
                    return Ok(());
                }
            }
            TaskState::Paused | TaskState::Failed => {
                self.transition(e, Transition::Resume, None)?;
            }
            other => return Err(Error::new(ErrorCode::InvalidState, format!("cannot resume a task that is {other}"))),
        }
        let priority = e.inner.lock().priority;
        s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
        Ok(())
    }

    pub(super) fn cancel(self: &Arc<Self>, id: &str) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        if !self.take_for_control(&mut s, &e, Control::Cancel)? {
            return Ok(());
        }
        let cancelled = self.cancel_locked(&mut s, &e);
        self.settle_ownership(&mut s, &e);
        drop(s);
        self.await_release(&e);
        cancelled
    }

    /// Cancels a task this process holds the lock of.
    pub(super) fn cancel_locked(&self, s: &mut Sched, e: &Arc<TaskEntry>) -> Result<()> {
        match e.state() {
            TaskState::Completed | TaskState::Cancelled => Ok(()),
            _ => {
                s.ready.remove(&e.spec.id);
                // With a live runner the task turns cancelled once the runner stopped and the
                // partial file is gone (see on_exit); otherwise right now, in the same order.
                if !Self::stop_runner(e, StopReason::Cancel) {
                    self.discard_partial(e);
                    self.transition(e, Transition::Cancel, None)?;
                    release_claim(s, e);
                }
                Ok(())
            }
        }
    }

    pub(super) fn remove(self: &Arc<Self>, id: &str, delete_file: bool) -> Result<()> {
        let mut s = self.sched.lock();
        let e = self.entry(id)?;
        if e.spec.output.unresolved().is_some() {
            return self.forget_unresolved(&mut s, &e, delete_file);
        }
        let control = if delete_file { Control::RemoveWithFile } else { Control::Remove };
        if !self.take_for_control(&mut s, &e, control)? {
            return Ok(());
        }
        let removed = self.remove_locked(&mut s, &e, delete_file);
        self.settle_ownership(&mut s, &e);
        drop(s);
        self.await_release(&e);
        removed
    }

    /// After a cancel or a remove asked a live runner to stop: on a caller's own thread, waits
    /// (at most [`RELEASE_WAIT`]) until the runner has let go of the destination, so that the same
    /// destination can be enqueued again right away instead of `destination_busy`. On a thread of
    /// the engine's runtime it does not wait: the runner may need that thread to finish.
    pub(super) fn await_release(&self, e: &TaskEntry) {
        let Some(dest) = e.spec.output.path() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let key = claim_key(dest);
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        let mut pause = std::time::Duration::from_micros(100);
        while self.sched.lock().claims.get(&*key) == Some(&e.spec.id) && std::time::Instant::now() < deadline {
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(5));
        }
    }

    /// Removes a task this process holds the lock of.
    pub(super) fn remove_locked(&self, s: &mut Sched, e: &Arc<TaskEntry>, delete_file: bool) -> Result<()> {
        e.delete_file.store(delete_file, Ordering::Release);
        e.removed.store(true, Ordering::Release);
        s.ready.remove(&e.spec.id);
        let state = e.state();
        if delete_file && state == TaskState::Completed {
            if let Some(dest) = e.spec.output.path().filter(|dest| !self.published_by_another(e, dest)) {
                let _ = std::fs::remove_file(dest);
            }
        }
        if !Self::stop_runner(e, StopReason::Cancel) {
            if state != TaskState::Completed {
                self.discard_partial(e);
            }
            self.env.store.delete_task(e.spec.id.as_str())?;
            self.tasks.write().remove(&e.spec.id);
            release_claim(s, e);
            // Whoever waits on it learns that it is gone.
            e.state_tx.send_modify(|_| {});
        }
        Ok(())
    }

    /// Whether the file at `dest` is one another task published there after `e` (asked to
    /// overwrite): not `e`'s to delete. A file no task knows (a restored copy) is `e`'s.
    fn published_by_another(&self, e: &TaskEntry, dest: &std::path::Path) -> bool {
        let Some(found) = crate::engine::storage::part_file::identity_of(dest) else { return false };
        let key = claim_key(dest);
        self.tasks.read().values().any(|other| {
            other.spec.id != e.spec.id
                && other.inner.lock().part_file.as_deref() == Some(found.file.as_str())
                && other.spec.output.path().is_some_and(|p| claim_key(p) == key)
        })
    }

    pub(super) fn set_priority(self: &Arc<Self>, id: &str, priority: i32) -> Result<()> {
        {
            let mut s = self.sched.lock();
            let e = self.entry(id)?;
            e.inner.lock().priority = priority;
            if e.persisted {
                self.env.store.set_priority(id, priority)?;
            }
            if s.ready.contains(&e.spec.id) {
                s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
            }
        }
        self.dispatch();
        Ok(())
    }
}
