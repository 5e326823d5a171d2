//! The one place where a task changes state, and the ticker that reports progress.

use super::*;

impl Inner {
    /// The single place where a task changes state.
    pub(super) fn transition(&self, e: &TaskEntry, t: Transition, error: Option<TaskError>) -> Result<TaskState> {
        self.transition_with(e, t, error, true)
    }

    /// [`Inner::transition`]; `persist = false` when the caller already wrote the new state (a
    /// completion recorded by the publisher together with its batch).
    pub(super) fn transition_with(&self, e: &TaskEntry, t: Transition, error: Option<TaskError>, persist: bool) -> Result<TaskState> {
        let (from, to, error) = {
            let mut g = e.inner.lock();
            let from = g.state;
            let to = next_state(from, t)?;
            g.state = to;
            match t {
                Transition::Fail => g.error = error,
                Transition::Start | Transition::Resume | Transition::Complete | Transition::Cancel => g.error = None,
                _ => {}
            }
            // A wait for the network is set by whoever requeues the task for it; any other
            // change ends it.
            if t != Transition::Recover {
                g.waiting = None;
            }
            g.updated_ms = now_ms();
            if !to.is_active() {
                g.speed.reset();
            }
            // Running is not written: the first journal commit marks it (see store::tx::set_bytes),
            // and a crash turns running into queued anyway.
            if persist && e.persisted && !e.removed.load(Ordering::Acquire) && to != TaskState::Running {
                let bytes = e.live.bytes.load(Ordering::Relaxed);
                let id = e.spec.id.as_str();
                let written = if to == TaskState::Completed {
                    self.env.store.complete(id, bytes)
                } else {
                    self.env.store.set_state(id, to, g.error.as_ref(), bytes)
                };
                if let Err(err) = written {
                    tracing::warn!("could not persist state of {}: {err}", e.spec.id);
                }
            }
            (from, to, g.error.clone())
        };
        e.state_tx.send_replace(to);
        self.events.state(StateEvent { id: e.spec.id.clone(), from: Some(from), to, error });
        Ok(to)
    }
}

/// Emits coalesced progress events for running tasks at the configured cadence, and at the same
/// cadence keeps up with the other processes of the directory: their changes (control requests
/// for this process's tasks among them), their dead owners' tasks, and host slots they freed.
pub(super) async fn ticker(inner: Weak<Inner>, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if !inner.shutting_down.load(Ordering::Acquire) {
            inner.sync();
            inner.check_orphans();
            let starved = {
                let s = inner.sched.lock();
                s.starved && !s.ready.is_empty()
            };
            if starved {
                inner.dispatch();
            }
        }
        let mut running: Vec<Arc<TaskEntry>> = {
            let ids: Vec<TaskId> = inner.sched.lock().running.keys().cloned().collect();
            let tasks = inner.tasks.read();
            ids.iter().filter_map(|id| tasks.get(id).cloned()).collect()
        };
        if inner.leased.load(Ordering::Acquire) {
            // Tasks the OS fetches have no runner; their progress is what the OS reports.
            let tasks = inner.tasks.read();
            let before = running.len();
            running.extend(
                tasks
                    .values()
                    .filter(|e| {
                        let g = e.inner.lock();
                        !g.leases.is_empty() && g.run.is_none()
                    })
                    .cloned(),
            );
            if running.len() == before {
                inner.leased.store(false, Ordering::Release);
            }
        }
        let now = Instant::now();
        for e in running {
            let leased = !e.inner.lock().leases.is_empty();
            let bytes = e.live.bytes.load(Ordering::Relaxed) + if leased { e.live.os_bytes.load(Ordering::Relaxed) } else { 0 };
            let total = e.live.total();
            let speed = {
                let mut g = e.inner.lock();
                if g.state != TaskState::Running {
                    continue;
                }
                let speed = g.speed.sample(now, bytes);
                if g.last_reported == Some(bytes) {
                    continue;
                }
                g.last_reported = Some(bytes);
                speed
            };
            let eta_seconds = match total {
                Some(t) if speed > 0.0 => Some(t.saturating_sub(bytes) as f64 / speed),
                _ => None,
            };
            inner.events.progress(ProgressEvent { id: e.spec.id.clone(), bytes, total, speed, eta_seconds });
        }
    }
}
