//! Which process runs a task: taking a task's lock before running it, giving it up when it stops,
//! taking over a task whose process died (from its journal), and pauses, cancels and removes of
//! tasks another process runs.
//!
//! A stored task is this process's while it is queued here or running here (see
//! `storage::owners`); the lock is taken before the task enters the ready queue and given up once
//! it left both the queue and the runners ([`Inner::settle_ownership`]), after its state is in the
//! table. With the lock in hand the table is the truth about the task ([`Inner::refresh_owned`]):
//! another process may have run, paused or finished it since this one last looked.
//!
//! Asking for a pause, cancel or remove of a task another process runs writes the request into
//! the task's row; the owner applies it at its next tick (a progress interval, 250 ms by default)
//! and clears it. A task nobody runs is acted on here, under its lock.

use super::shared::is_mine;
use super::*;
use crate::engine::storage::part_file::Identity;
use std::time::Duration;

/// Crash point (see [`crate::engine::storage::crash`]) in a takeover, once the dead owner's task is
/// recorded queued again and before this process runs it.
pub const CRASH_TAKEOVER: &str = "takeover:requeued";

/// Longest wait for another process to let go of a task it stopped running (it gives the lock up
/// once its runner has ended and the journal is settled: milliseconds).
const RELEASE_PATIENCE: Duration = Duration::from_secs(1);

fn live(state: TaskState) -> bool {
    !matches!(state, TaskState::Completed | TaskState::Cancelled)
}

impl Inner {
    /// Takes task `e`'s lock (true), or finds that another process holds it (false).
    pub(super) fn own(&self, s: &mut Sched, e: &TaskEntry) -> Result<bool> {
        if is_mine(s, e) {
            return Ok(true);
        }
        if let Some(stored) = e.spec.output.unresolved() {
            // Neither run nor acted on here until a manager declares its root.
            return Err(unknown_root(stored));
        }
        if !self.owners().try_own(e.seq)? {
            return Ok(false);
        }
        s.owned.insert(e.spec.id.clone(), e.seq);
        s.forget_foreign(&e.spec.id);
        Ok(true)
    }

    /// [`Inner::own`], waiting a moment for a process that is letting the task go.
    fn own_within(&self, s: &mut Sched, e: &TaskEntry) -> Result<bool> {
        if self.own(s, e)? {
            return Ok(true);
        }
        if !self.owners().own_within(e.seq, RELEASE_PATIENCE)? {
            return Ok(false);
        }
        s.owned.insert(e.spec.id.clone(), e.seq);
        s.forget_foreign(&e.spec.id);
        Ok(true)
    }

    /// Gives task `e`'s lock up unless this process still means to run it (queued here, or
    /// running). Call once its state is in the table.
    pub(super) fn settle_ownership(&self, s: &mut Sched, e: &TaskEntry) {
        if s.ready.contains(&e.spec.id) || s.running.contains_key(&e.spec.id) {
            return;
        }
        // Handed off to the OS: no runner, but this process ingests its chunks.
        let handed_off = {
            let g = e.inner.lock();
            g.state == TaskState::Running && !g.leases.is_empty()
        };
        if handed_off {
            return;
        }
        if let Some(seq) = s.owned.remove(&e.spec.id) {
            self.owners().release(seq);
        }
    }

    /// With task `e`'s lock held, makes its entry what the table says, journal included; a task
    /// found running (its process died) is queued again, and a control request left for a dead
    /// process is applied. `None` when the task is gone from the table (its entry goes too).
    pub(super) fn refresh_owned(&self, s: &mut Sched, e: &Arc<TaskEntry>) -> Result<Option<TaskState>> {
        let id = e.spec.id.as_str();
        let mut found = self.env.store.read_task(id)?.filter(|(stored, _)| stored.row.seq == e.seq);
        let marked = found.as_ref().is_some_and(|(t, _)| t.row.part_file.as_deref().is_some_and(|p| p.contains('@')));
        if marked && self.env.store.settle_publish(id)? {
            // Its process died between renaming the file into place and recording it.
            found = self.env.store.read_task(id)?.filter(|(stored, _)| stored.row.seq == e.seq);
        }
        let Some((stored, control)) = found else {
            // Removed by another process (or removed and enqueued again, which the next sync brings).
            release_claim(s, e);
            e.removed.store(true, Ordering::Release);
            {
                let mut tasks = self.tasks.write();
                if tasks.get(id).is_some_and(|t| Arc::ptr_eq(t, e)) {
                    tasks.remove(id);
                }
            }
            e.state_tx.send_modify(|_| {});
            s.ready.remove(&e.spec.id);
            self.settle_ownership(s, e);
            return Ok(None);
        };
        let StoredTask { row, ranges } = stored;
        // A running task with live leases was handed off to the OS, not orphaned: this process
        // takes over its leases (it ingests their chunks) and runs nothing.
        let leases = if row.state == TaskState::Running { self.env.store.live_leases_of(id)? } else { Vec::new() };
        let orphaned = row.state == TaskState::Running && leases.is_empty();
        let state = if orphaned { TaskState::Queued } else { row.state };
        if orphaned {
            tracing::info!("{id}: its process died while running it; taking it over from its journal");
            self.env.store.requeue(id)?;
            crate::engine::storage::crash::point(CRASH_TAKEOVER);
        }
        let written = |rows: &[crate::engine::ranges::map::SegmentRow]| rows.iter().map(|r| r.written - r.start).sum::<u64>();
        let (from, bytes, total) = {
            let mut g = e.inner.lock();
            let from = g.state;
            g.state = state;
            g.error = row.error.clone();
            g.priority = row.priority;
            g.updated_ms = row.updated_ms;
            let resource = Resource { total: row.total, validator: Validator::from_columns(row.etag.clone(), row.last_modified.clone()) };
            let part_file = row.part_file.as_deref().map(|p| Identity::file_part(p).to_string());
            // This process may know more than the table: its last run's final journal write can
            // fail (a directory turned read-only refuses the part file its name). The journal in
            // memory wins when it describes the same file of the same resource and holds more;
            // otherwise another process ran the task since, and the table is the truth.
            let same_file = !g.journal.is_empty()
                && g.part_file == part_file
                && g.resource.total == resource.total
                && g.resource.validator == resource.validator;
            if !(same_file && written(&g.journal) >= written(&ranges)) {
                g.resource = resource;
                g.journal = ranges;
                g.part_file = part_file;
            }
            g.dormant = false;
            g.speed.reset();
            if !leases.is_empty() {
                let now = Instant::now();
                g.leases = leases
                    .into_iter()
                    .map(|l| LiveLease { id: l.id, start: l.start, end: l.end, whole: l.whole, os_bytes: 0, last_progress: now })
                    .collect();
            }
            let bytes = match (g.journal.is_empty(), state) {
                (false, _) => written(&g.journal),
                (true, TaskState::Completed) => row.bytes,
                (true, _) => 0,
            };
            (from, bytes, g.resource.total)
        };
        e.live.bytes.store(bytes, Ordering::Relaxed);
        e.live.total.store(total.unwrap_or(super::super::table::UNKNOWN), Ordering::Relaxed);
        if let Some(dest) = e.spec.output.path() {
            let key = claim_key(dest).into_owned();
            if live(state) {
                s.claims.insert(key, e.spec.id.clone());
            } else if s.claims.get(&key) == Some(&e.spec.id) {
                s.claims.remove(&key);
            }
        }
        if from != state {
            e.state_tx.send_replace(state);
            self.events.state(StateEvent { id: e.spec.id.clone(), from: Some(from), to: state, error: row.error.clone() });
        }
        if let Some(c) = control {
            self.env.store.clear_control(id)?;
            if let Err(err) = self.apply_control_locked(s, e, c) {
                tracing::info!("{id}: the {c:?} asked by another process does not apply: {err}");
            }
        }
        Ok(Some(e.state()))
    }

    /// Takes over task `e`, found queued or running in the table without a live owner: with `run`,
    /// it is queued here (true); otherwise its row is brought up to date and it is left for a
    /// `resume` (queued but held here).
    pub(super) fn take_over(&self, s: &mut Sched, e: &Arc<TaskEntry>, run: bool) -> Result<bool> {
        if !self.own(s, e)? {
            s.note_foreign(&e.spec.id);
            return Ok(false);
        }
        let state = self.refresh_owned(s, e)?;
        let queued = state == Some(TaskState::Queued);
        if queued && run && !self.shutting_down.load(Ordering::Acquire) {
            let priority = e.inner.lock().priority;
            s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
            return Ok(true);
        }
        if queued {
            e.inner.lock().dormant = true;
        }
        self.settle_ownership(s, e);
        Ok(false)
    }

    /// Whether a pause, cancel or remove of task `e` is to be done here (true: the lock is this
    /// process's now), or was handed to the process that runs it (false).
    pub(super) fn take_for_control(&self, s: &mut Sched, e: &Arc<TaskEntry>, control: Control) -> Result<bool> {
        if is_mine(s, e) {
            return Ok(true);
        }
        if !self.own(s, e)? {
            if self.env.store.request_control(e.spec.id.as_str(), control)? {
                return Ok(false);
            }
            // Neither queued nor running any more: its process is letting it go.
            if !self.own_within(s, e)? {
                return Err(Error::new(ErrorCode::StateDirLocked, format!("task '{}' is held by another process", e.spec.id)));
            }
        }
        match self.refresh_owned(s, e)? {
            Some(_) => Ok(true),
            None => Err(task_not_found(e.spec.id.as_str())),
        }
    }

    /// Resumes task `e` here, taking its lock first (a task another process runs is left to it:
    /// false).
    pub(super) fn take_for_resume(&self, s: &mut Sched, e: &Arc<TaskEntry>) -> Result<bool> {
        if is_mine(s, e) {
            return Ok(true);
        }
        if !self.own(s, e)? {
            // Its process may be letting it go (paused, failed) or still run it.
            let row_active = self.env.store.read_task(e.spec.id.as_str())?.is_some_and(|(t, _)| t.row.state.is_active());
            if row_active || !self.own_within(s, e)? {
                s.note_foreign(&e.spec.id);
                return Ok(false);
            }
        }
        match self.refresh_owned(s, e)? {
            Some(_) => Ok(true),
            None => Err(task_not_found(e.spec.id.as_str())),
        }
    }

    /// Removes a task stored under a root this process does not declare: its row goes, and its
    /// files stay where they are (this process cannot tell where that is). With `delete_file`,
    /// `root_unknown`. A task another process runs (it declares the root) is removed by it.
    pub(super) fn forget_unresolved(&self, s: &mut Sched, e: &Arc<TaskEntry>, delete_file: bool) -> Result<()> {
        let stored = e.spec.output.unresolved().unwrap_or_default();
        if delete_file {
            return Err(unknown_root(stored));
        }
        let id = e.spec.id.as_str();
        if !self.owners().try_own(e.seq)? {
            if self.env.store.request_control(id, Control::Remove)? {
                return Ok(());
            }
            if !self.owners().own_within(e.seq, RELEASE_PATIENCE)? {
                return Err(Error::new(ErrorCode::StateDirLocked, format!("task '{id}' is held by another process")));
            }
        }
        let removed = e.release_leases(&self.env.store, None).and_then(|ended| {
            self.env.revoke(ended);
            self.env.store.delete_task(id)
        });
        self.owners().release(e.seq);
        removed?;
        e.removed.store(true, Ordering::Release);
        s.forget_foreign(&e.spec.id);
        {
            let mut tasks = self.tasks.write();
            if tasks.get(id).is_some_and(|t| Arc::ptr_eq(t, e)) {
                tasks.remove(id);
            }
        }
        e.state_tx.send_modify(|_| {});
        Ok(())
    }

    /// A pause, cancel or remove of a task whose lock this process holds.
    pub(super) fn apply_control_locked(&self, s: &mut Sched, e: &Arc<TaskEntry>, control: Control) -> Result<()> {
        match control {
            Control::Pause => self.pause_locked(s, e),
            Control::Cancel => self.cancel_locked(s, e),
            Control::Remove => self.remove_locked(s, e, false),
            Control::RemoveWithFile => self.remove_locked(s, e, true),
        }
    }

    /// Applies the control requests another process wrote for this process's tasks.
    pub(super) fn apply_controls(self: &Arc<Self>, controls: Vec<(Arc<TaskEntry>, Control)>) {
        if controls.is_empty() {
            return;
        }
        {
            let mut s = self.sched.lock();
            for (e, c) in controls {
                if !is_mine(&s, &e) {
                    continue;
                }
                if let Err(err) = self.env.store.clear_control(e.spec.id.as_str()) {
                    tracing::warn!("{}: clearing a control request: {err}", e.spec.id);
                }
                if let Err(err) = self.apply_control_locked(&mut s, &e, c) {
                    tracing::info!("{}: the {c:?} asked by another process does not apply: {err}", e.spec.id);
                }
                self.settle_ownership(&mut s, &e);
            }
        }
        self.dispatch();
    }
}
