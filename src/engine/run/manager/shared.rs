//! The other processes of the state directory, as this one sees them: their tasks mirrored from
//! the table, their destinations claimed, and their tasks taken over when they die.
//!
//! The table's revisions (`storage::store`, `shared.rs`) say what changed since this process last
//! looked. A sync reads only that, and only when another connection committed at all; it runs at
//! each tick of the progress ticker, before `list`, on a status of a task not known here, and
//! inside every enqueue's write transaction (so destination claims and ids are checked against the
//! whole table). It comes in two steps, because the enqueue reads the changes under the table's
//! write lock, where no task entry may be locked (lock order: scheduler → entry → store):
//! [`Inner::stage`] updates the claims and builds entries for new tasks, [`Inner::absorb`]
//! brings the entries up to date.
//!
//! A task this process runs is its own business: its row is only read for a control request
//! (pause, cancel, remove asked by another process) and a new priority. Any other task shows what
//! its row says, events included (state changes as this process sees them, which may skip a step;
//! progress at the ticker's cadence).

use super::*;

/// Tasks whose owners are checked per tick; more wait for the next ones.
const ORPHAN_CHECKS_PER_TICK: usize = 256;

/// Changes read from the table with the claims applied, the entries not yet.
pub(super) struct Staged {
    changes: crate::engine::storage::store::Changes,
    fresh: Map<TaskId, Arc<TaskEntry>>,
    /// Ids removed from the table (or missing from a full read), with the seq they had.
    gone: Map<String, i64>,
}

pub(super) fn is_mine(s: &Sched, e: &TaskEntry) -> bool {
    !e.persisted || s.owned.contains_key(&e.spec.id)
}

fn live(state: TaskState) -> bool {
    !matches!(state, TaskState::Completed | TaskState::Cancelled)
}

impl Sched {
    pub(super) fn note_foreign(&mut self, id: &TaskId) {
        if self.foreign.insert(id.clone()) {
            self.foreign_order.push_back(id.clone());
        }
    }

    pub(super) fn forget_foreign(&mut self, id: &TaskId) {
        self.foreign.remove(id);
    }
}

impl Inner {
    /// Brings this process's view up to date with the table, if another process changed it.
    pub(super) fn sync(self: &Arc<Self>) {
        // Looked at before the scheduler is locked: the table's connection may be busy with a
        // sync of the WAL for a while, and the scheduler must not wait for it then.
        if !self.env.store.foreign_commits() {
            return;
        }
        let controls = {
            let mut s = self.sched.lock();
            let changes = match self.env.store.changes_since(s.rev) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("reading the other processes' changes: {e}");
                    return;
                }
            };
            let staged = self.stage(&mut s, changes);
            let controls = self.absorb(&mut s, staged);
            self.foreign_progress(&s);
            controls
        };
        self.apply_controls(controls);
    }

    /// Reads the bytes done of the tasks other processes run (their journal commits stamp no
    /// revision) and reports them.
    fn foreign_progress(&self, s: &Sched) {
        let running: Vec<Arc<TaskEntry>> =
            s.foreign.iter().filter_map(|id| self.find(id.as_str())).filter(|e| e.state() == TaskState::Running).collect();
        if running.is_empty() {
            return;
        }
        let ids: Vec<&str> = running.iter().map(|e| e.spec.id.as_str()).collect();
        let Ok(progress) = self.env.store.progress_of(&ids) else { return };
        let now = Instant::now();
        for (e, (bytes, total)) in running.iter().zip(progress) {
            self.show_progress(e, bytes, total, now);
        }
    }

    /// The progress of a task another process runs: counters, speed, and an event when it moved.
    fn show_progress(&self, e: &TaskEntry, bytes: u64, total: Option<u64>, now: Instant) {
        let speed = {
            let mut g = e.inner.lock();
            if g.state != TaskState::Running || g.last_reported == Some(bytes) {
                return;
            }
            g.last_reported = Some(bytes);
            g.resource.total = total.or(g.resource.total);
            g.speed.sample(now, bytes)
        };
        e.live.bytes.store(bytes, Ordering::Relaxed);
        if let Some(t) = total {
            e.live.total.store(t, Ordering::Relaxed);
        }
        let eta_seconds = match total {
            Some(t) if speed > 0.0 => Some(t.saturating_sub(bytes) as f64 / speed),
            _ => None,
        };
        self.events.progress(ProgressEvent { id: e.spec.id.clone(), bytes, total, speed, eta_seconds });
    }

    /// First step of a sync: the claims follow the changed rows, and new tasks get entries (not
    /// yet in the table of entries). Locks no entry.
    pub(super) fn stage(&self, s: &mut Sched, changes: crate::engine::storage::store::Changes) -> Staged {
        let tasks = self.tasks.read();
        let mut fresh: Map<TaskId, Arc<TaskEntry>> = Map::default();
        let mut gone: Map<String, i64> = Map::default();
        for (id, seq) in &changes.gone {
            if let Some(e) = tasks.get(id.as_str()).filter(|e| e.seq == *seq && !is_mine(s, e)) {
                release_claim(s, e);
            }
            gone.insert(id.clone(), *seq);
        }
        if changes.full {
            let present: Set<&str> = changes.rows.iter().map(|(r, _)| r.id.as_str()).collect();
            let missing: Vec<&Arc<TaskEntry>> =
                tasks.values().filter(|e| e.persisted && !is_mine(s, e) && !present.contains(e.spec.id.as_str())).collect();
            for e in missing {
                release_claim(s, e);
                gone.insert(e.spec.id.as_str().to_string(), e.seq);
            }
        }
        for (row, _) in &changes.rows {
            let existing = tasks.get(row.id.as_str());
            if existing.is_some_and(|e| e.seq == row.seq && is_mine(s, e)) {
                continue;
            }
            if let Some(old) = existing.filter(|e| e.seq != row.seq) {
                release_claim(s, old);
            }
            // Resolved against this process's roots; a destination under a root this process
            // does not declare claims nothing here (all processes should declare the same roots).
            if let Ok(dest) = self.env.store.roots().resolve(&row.destination) {
                let key = claim_key(&dest).into_owned();
                let id = TaskId::from_stored(row.id.clone());
                if live(row.state) {
                    s.claims.insert(key, id);
                } else if s.claims.get(&key) == Some(&id) {
                    s.claims.remove(&key);
                }
            }
            if existing.is_none_or(|e| e.seq != row.seq) {
                let stored = StoredTask { row: row.clone(), ranges: Vec::new() };
                if let Some(entry) = super::open::entry_from_stored(stored, self.env.store.roots()) {
                    s.next_seq = s.next_seq.max(row.seq + 1);
                    fresh.insert(entry.spec.id.clone(), entry);
                }
            }
        }
        Staged { changes, fresh, gone }
    }

    /// The task `id` as the table holds it once `staged` is absorbed (for an enqueue's checks).
    pub(super) fn known_entry<'a>(staged: &'a Staged, tasks: &'a Map<TaskId, Arc<TaskEntry>>, id: &str) -> Option<&'a Arc<TaskEntry>> {
        if let Some(e) = staged.fresh.get(id) {
            return Some(e);
        }
        tasks.get(id).filter(|e| staged.gone.get(id) != Some(&e.seq))
    }

    /// Second step of a sync: entries mirror their rows, removed tasks leave, new ones arrive.
    /// Returns the control requests addressed to this process's tasks, to apply once the scheduler
    /// is unlocked.
    pub(super) fn absorb(&self, s: &mut Sched, staged: Staged) -> Vec<(Arc<TaskEntry>, Control)> {
        let Staged { changes, fresh, .. } = staged;
        let mut controls = Vec::new();
        {
            let mut tasks = self.tasks.write();
            let leave = |tasks: &mut Map<TaskId, Arc<TaskEntry>>, s: &mut Sched, id: &str| {
                if let Some(e) = tasks.remove(id) {
                    e.removed.store(true, Ordering::Release);
                    s.forget_foreign(&e.spec.id);
                    e.state_tx.send_modify(|_| {});
                }
            };
            for (id, seq) in &changes.gone {
                if tasks.get(id.as_str()).is_some_and(|e| e.seq == *seq && !is_mine(s, e)) {
                    leave(&mut tasks, s, id);
                }
            }
            if changes.full {
                let present: Set<&str> = changes.rows.iter().map(|(r, _)| r.id.as_str()).collect();
                let missing: Vec<TaskId> = tasks
                    .values()
                    .filter(|e| e.persisted && !is_mine(s, e) && !present.contains(e.spec.id.as_str()))
                    .map(|e| e.spec.id.clone())
                    .collect();
                for id in missing {
                    leave(&mut tasks, s, id.as_str());
                }
            }
            for (id, entry) in fresh {
                if tasks.get(&id).is_some_and(|e| is_mine(s, e)) {
                    continue;
                }
                leave(&mut tasks, s, id.as_str());
                self.events.state(StateEvent { id: id.clone(), from: None, to: entry.state(), error: None });
                tasks.insert(id, entry);
            }
        }
        let now = Instant::now();
        for (row, control) in changes.rows {
            let Some(e) = self.tasks.read().get(row.id.as_str()).filter(|e| e.seq == row.seq).cloned() else { continue };
            if is_mine(s, &e) {
                let priority = e.inner.lock().priority;
                if row.priority != priority {
                    // Another process changed it in the table: this one schedules by it.
                    e.inner.lock().priority = row.priority;
                    if s.ready.contains(&e.spec.id) {
                        s.ready.push(e.spec.id.clone(), e.spec.host_key(), row.priority, e.seq);
                    }
                }
                // A cap another process set: this one's connections follow it from their next read.
                e.rate.follow(row.rate_limit);
                if std::mem::replace(&mut e.inner.lock().network_policy, row.network_policy) != row.network_policy {
                    // Judged again against this process's network at the next dispatch.
                    s.ready.unpark(&e.spec.id);
                }
                if let Some(c) = control {
                    controls.push((e, c));
                }
                continue;
            }
            self.mirror(&e, &row, now);
            if row.state.is_active() && e.spec.output.unresolved().is_none() {
                s.note_foreign(&e.spec.id);
            } else {
                s.forget_foreign(&e.spec.id);
            }
        }
        s.rev = s.rev.max(changes.rev);
        controls
    }

    /// A task another process runs (or nobody does) takes what its row says.
    fn mirror(&self, e: &TaskEntry, row: &TaskRow, now: Instant) {
        let from = {
            let mut g = e.inner.lock();
            let from = g.state;
            g.state = row.state;
            g.error = row.error.clone();
            g.priority = row.priority;
            g.network_policy = row.network_policy;
            g.updated_ms = row.updated_ms;
            e.rate.follow(row.rate_limit);
            g.resource.total = row.total;
            g.dormant = false;
            if !row.state.is_active() {
                g.speed.reset();
            }
            from
        };
        if row.state != TaskState::Running {
            e.live.bytes.store(row.bytes, Ordering::Relaxed);
            e.live.total.store(row.total.unwrap_or(super::super::table::UNKNOWN), Ordering::Relaxed);
        }
        if from != row.state {
            e.state_tx.send_replace(row.state);
            self.events.state(StateEvent { id: e.spec.id.clone(), from: Some(from), to: row.state, error: row.error.clone() });
        }
        self.show_progress(e, row.bytes, row.total, now);
    }

    /// Looks, a few hundred tasks per call, for tasks queued or running in the table whose owner
    /// died (their lock is free). With `resume_on_open` this process takes them over and runs them
    /// from their journal; otherwise it records them as queued (a running row whose process is
    /// gone) and leaves them for `resume`.
    pub(super) fn check_orphans(self: &Arc<Self>) {
        let adopt = self.env.config.read().resume_on_open;
        let mut adopted = false;
        {
            let mut s = self.sched.lock();
            if s.foreign_order.is_empty() {
                return;
            }
            let alone = !self.owners().others_present();
            let n = s.foreign_order.len().min(ORPHAN_CHECKS_PER_TICK);
            for _ in 0..n {
                let Some(id) = s.foreign_order.pop_front() else { break };
                if !s.foreign.contains(&id) {
                    continue;
                }
                let Some(e) = self.find(id.as_str()) else {
                    s.forget_foreign(&id);
                    continue;
                };
                if !alone && self.owners().owned_elsewhere(e.seq).unwrap_or(true) {
                    s.foreign_order.push_back(id);
                    continue;
                }
                s.forget_foreign(&id);
                match self.take_over(&mut s, &e, adopt) {
                    Ok(true) => adopted = true,
                    Ok(false) => {}
                    Err(err) => tracing::warn!("taking over {id}: {err}"),
                }
            }
        }
        if adopted {
            self.dispatch();
        }
    }

    /// Releases every task lock this process holds (at shutdown: the tasks are queued in the
    /// table, and another process may take them over).
    pub(super) fn disown_all(&self) {
        let mut s = self.sched.lock();
        for (_, seq) in s.owned.drain() {
            self.owners().release(seq);
        }
    }
}
