//! Starting runners as limits allow, and settling a task when its runner exits.

use super::*;

impl Inner {
    pub(super) fn dispatch(self: &Arc<Self>) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut s = self.sched.lock();
        // Hosts whose slots other processes hold right now: their tasks wait for the next tick.
        let mut blocked: Set<String> = Set::default();
        s.starved = false;
        let network = s.network;
        loop {
            if s.running.len() - s.publishing.len()
                >= (s.limits.max_running_tasks as usize).min(crate::engine::storage::fd_table::running_cap())
            {
                break;
            }
            // Each waiting file holds a descriptor; a publisher slower than the network must not
            // let them pile up to the descriptor limit.
            if s.publishing.len() >= crate::engine::storage::fd_table::publish_backlog() {
                break;
            }
            let Sched { ready, running, .. } = &mut *s;
            let hosts = &self.env.hosts;
            let Some((id, host)) = ready.pop_best(|h| !blocked.contains(h) && hosts.has_free(h), |id| running.contains_key(id)) else {
                break;
            };
            let Some(entry) = self.tasks.read().get(&id).cloned() else { continue };
            if entry.spec.output.unresolved().is_some() || self.park_if_refused(ready, network, &entry, &host) {
                continue;
            }
            let Some(slot) = hosts.try_acquire(&host) else {
                ready.push(id, host.clone(), entry.inner.lock().priority, entry.seq);
                blocked.insert(host);
                s.starved = true;
                continue;
            };
            if self.transition(&entry, Transition::Start, None).is_err() {
                self.settle_ownership(&mut s, &entry);
                continue;
            }
            let stop = CancellationToken::new();
            let (signal, flush, flushed) = FlushSignal::pair();
            {
                let mut g = entry.inner.lock();
                g.run = Some(RunControl { stop: stop.clone(), reason: None, flush, flushed, ranges: None });
                g.dormant = false;
                g.waiting = None;
            }
            let inner = self.clone();
            let weak = Arc::downgrade(self);
            let task_id = id.clone();
            let transferred = Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let mut s = inner.sched.lock();
                    if s.running.contains_key(&task_id) {
                        s.publishing.insert(task_id);
                    }
                    drop(s);
                    inner.dispatch();
                }
            });
            let handle = runtime::handle().spawn(async move {
                // Boxed: the runner's state machine is kilobytes, and the task cell would copy it.
                let run = Box::pin(runner::run(inner.env.clone(), entry.clone(), stop, slot, signal, transferred));
                let outcome = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(o) => o,
                    Err(_) => Outcome::Failed(Error::internal("the download runner panicked")),
                };
                inner.on_exit(&entry, outcome);
            });
            s.running.insert(id, handle);
        }
        if !s.ready.has_eligible() && s.running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    pub(super) fn on_exit(self: &Arc<Self>, entry: &Arc<TaskEntry>, outcome: Outcome) {
        {
            let mut s = self.sched.lock();
            s.running.remove(&entry.spec.id);
            s.publishing.remove(&entry.spec.id);
            let (reason, handing_off) = {
                let mut g = entry.inner.lock();
                (g.run.take().and_then(|r| r.reason), g.handing_off)
            };
            let state = entry.state();
            let id = entry.spec.id.as_str();
            match outcome {
                Outcome::Completed { bytes, recorded } => {
                    entry.inner.lock().unreachable_streak = 0;
                    entry.live.bytes.store(bytes, Ordering::Relaxed);
                    entry.live.total.store(bytes, Ordering::Relaxed);
                    self.events.progress(ProgressEvent {
                        id: entry.spec.id.clone(),
                        bytes,
                        total: Some(bytes),
                        speed: 0.0,
                        eta_seconds: Some(0.0),
                    });
                    // Paused (and perhaps resumed again), or failed by a chunk the OS fetched,
                    // while publishing: the file is in place, so the task is completed. The detour
                    // is not persisted: the table must go straight to completed, whatever a pause
                    // wrote meanwhile.
                    let detour = state != TaskState::Running;
                    if matches!(state, TaskState::Paused | TaskState::Failed) {
                        let _ = self.transition_with(entry, Transition::Resume, None, false);
                    }
                    if matches!(entry.state(), TaskState::Queued) {
                        s.ready.remove(&entry.spec.id);
                        entry.inner.lock().dormant = false;
                        let _ = self.transition_with(entry, Transition::Start, None, false);
                    }
                    let _ = self.transition_with(entry, Transition::Complete, None, !recorded || detour);
                }
                Outcome::Failed(_) | Outcome::Stopped | Outcome::HandedOff if reason == Some(StopReason::Cancel) => {
                    // The partial goes first: whoever sees "cancelled" must find no part file.
                    self.discard_partial(entry);
                    if !matches!(state, TaskState::Cancelled | TaskState::Completed) {
                        let _ = self.transition(entry, Transition::Cancel, None);
                    }
                }
                Outcome::Failed(e) => {
                    if state == TaskState::Running {
                        match self.network_wait(&s, entry, &e) {
                            // Its connections failed because the network went: it waits, queued.
                            Some(wait) if self.transition(entry, Transition::Recover, None).is_ok() => {
                                entry.inner.lock().error = Some((&e).into());
                                self.park_for_network(&mut s, entry, wait);
                            }
                            _ => {
                                // The OS's chunks of a task that failed for good would only be dropped.
                                self.revoke_leases(entry);
                                let _ = self.transition(entry, Transition::Fail, Some((&e).into()));
                            }
                        }
                    }
                }
                Outcome::Stopped | Outcome::HandedOff => {
                    let (leased, work) = {
                        let g = entry.inner.lock();
                        (!g.leases.is_empty(), super::handoff::engine_work(&g))
                    };
                    let requeue = match reason {
                        // A hand-off in progress leases the ranges once the runner is gone; one
                        // that gave up waiting leaves the task to the queue.
                        Some(StopReason::Handoff) => work && !handing_off,
                        // The OS keeps fetching leased ranges across a shutdown.
                        Some(StopReason::Shutdown) => !leased,
                        // Held for the next run (see `budget`).
                        Some(StopReason::Budget) => {
                            if state == TaskState::Running {
                                // Held before the state changes: a run waiting on the task sees
                                // it queued and held at once.
                                entry.inner.lock().dormant = true;
                                let _ = self.transition(entry, Transition::Recover, None);
                            }
                            false
                        }
                        // Parked by the next dispatch while the network still refuses it.
                        Some(StopReason::Network) => true,
                        Some(_) => false,
                        // Only leased ranges were left, but a lease ended meanwhile.
                        None => work,
                    };
                    if requeue && state == TaskState::Running {
                        let _ = self.transition(entry, Transition::Recover, None);
                    }
                }
            }
            let state = entry.state();
            let removed = entry.removed.load(Ordering::Acquire);
            if state == TaskState::Cancelled || (removed && state != TaskState::Completed) {
                self.discard_partial(entry);
            }
            if removed && state == TaskState::Completed && entry.delete_file.load(Ordering::Acquire) {
                // Removed with its file while the file was being published.
                if let Some(dest) = entry.spec.output.path() {
                    let _ = std::fs::remove_file(dest);
                }
            }
            if removed {
                if let Err(e) = self.env.store.delete_task(id) {
                    tracing::warn!("could not delete {id}: {e}");
                }
                let mut tasks = self.tasks.write();
                if tasks.get(&entry.spec.id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                    tasks.remove(&entry.spec.id);
                }
            }
            if removed || matches!(state, TaskState::Completed | TaskState::Cancelled) {
                release_claim(&mut s, entry);
            }
            let held = entry.inner.lock().dormant;
            if state == TaskState::Queued && !held && !s.ready.contains(&entry.spec.id) && !self.shutting_down.load(Ordering::Acquire) {
                s.ready.push(entry.spec.id.clone(), entry.spec.host_key(), entry.inner.lock().priority, entry.seq);
            }
            // Its state is in the table: another process may take it from here.
            self.settle_ownership(&mut s, entry);
        }
        self.dispatch();
    }
}
