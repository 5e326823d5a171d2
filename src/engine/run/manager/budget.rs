//! Budgeted runs: what an Android worker or job does with its minutes. The given tasks run until
//! they end or the budget is spent, then stop at a write boundary with the journal and the part
//! file synced, and wait (queued, held) for the next run; each gets an outcome the platform maps
//! to success, retry or failure. A stop can be requested from outside, since the caller cannot
//! cancel the run's future across the FFI (Kotlin drops it; the bindings have no cancellation).

use super::*;
use std::time::Duration;

/// How long a run may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunBudget {
    /// Wall time from the start of the run.
    pub time: Duration,
}

/// Why a run was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The worker or job was stopped by the system (its time, quota, the app's standby bucket).
    Stopped,
    /// The network the job needed went away.
    NetworkLost,
    /// The app asked.
    App,
}

/// How a task ended its run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// Verified and in place.
    Completed,
    /// Failed for good: retrying cannot help (a 404, a checksum mismatch, a full disk...).
    Failed(TaskError),
    /// Not done yet: run it again after about `delay` (the budget was spent, a stop was
    /// requested, or a transient failure outlasted the engine's own retries).
    Retry {
        /// The transient error, when one ended the run.
        error: Option<TaskError>,
        /// Suggested wait before the next run.
        delay: Duration,
        /// Why.
        reason: String,
    },
    /// The user paused it: nothing to run until it is resumed.
    Paused,
    /// Cancelled (or removed): nothing to run ever again.
    Cancelled,
    /// No such task.
    NotFound,
}

/// Wait suggested after a transient failure that outlasted the engine's own retries.
const RETRY_LATER: Duration = Duration::from_secs(30);
/// How long stopping may take before the run reports anyway.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a run looks again at a task whose state did not change.
const RECHECK: Duration = Duration::from_millis(500);

impl Manager {
    /// Runs the given tasks (`None`: every queued task, and failed ones whose error was transient)
    /// until each ends or `budget` is spent; then stops the rest with everything synced and holds
    /// them (queued, not started again by this process until a run or `resume` asks). A task
    /// already running (started by the app, or by another run) is joined, never started twice.
    /// Returns one outcome per task, in order.
    pub async fn run_budgeted(&self, ids: Option<Vec<String>>, budget: RunBudget) -> Vec<(String, RunOutcome)> {
        self.inner.run_budgeted(ids, budget).await
    }

    /// Stops the given tasks (`None`: every running or queued task) for `cause`, waits (boundedly)
    /// until their journals and part files are synced, and holds them for the next run. The runs
    /// waiting on them end with them; runs of other tasks carry on. Returns how many were stopped.
    pub async fn request_stop(&self, ids: Option<Vec<String>>, cause: StopCause) -> usize {
        self.inner.request_stop(ids, cause).await
    }
}

impl Inner {
    async fn run_budgeted(self: &Arc<Self>, ids: Option<Vec<String>>, budget: RunBudget) -> Vec<(String, RunOutcome)> {
        let deadline = tokio::time::Instant::now() + budget.time;
        let chosen: Vec<(String, Option<Arc<TaskEntry>>)> = match ids {
            Some(ids) => ids.into_iter().map(|id| (id.clone(), self.find(&id))).collect(),
            None => {
                let tasks = self.tasks.read();
                let mut all: Vec<Arc<TaskEntry>> = tasks
                    .values()
                    .filter(|e| e.persisted && e.spec.output.unresolved().is_none())
                    .filter(|e| e.state().is_active() || (e.state() == TaskState::Failed && transient(e)))
                    .cloned()
                    .collect();
                all.sort_by_key(|e| e.seq);
                all.into_iter().map(|e| (e.spec.id.to_string(), Some(e))).collect()
            }
        };
        for (_, e) in &chosen {
            if let Some(e) = e {
                self.start_for_run(e);
            }
        }
        self.dispatch();
        // A task stopped by `request_stop` is held (queued, dormant): its wait ends with it, and a
        // stop for other tasks leaves this run alone.
        let budget_spent = {
            let all_done = async {
                for (_, e) in &chosen {
                    if let Some(e) = e.as_ref().filter(|e| e.spec.output.unresolved().is_none()) {
                        let mut rx = e.state_tx.subscribe();
                        while rx.borrow_and_update().is_active() && !held_or_waiting(e) && !with_the_os(e) {
                            // A hand-off leases ranges without a change of state: looked at again
                            // now and then.
                            tokio::select! {
                                changed = rx.changed() => if changed.is_err() { break },
                                _ = tokio::time::sleep(RECHECK) => {}
                            }
                        }
                    }
                }
            };
            tokio::select! {
                _ = all_done => None,
                _ = tokio::time::sleep_until(deadline) => Some("the run's budget is spent"),
            }
        };
        if budget_spent.is_some() {
            let entries: Vec<Arc<TaskEntry>> = chosen.iter().filter_map(|(_, e)| e.clone()).collect();
            self.hold(&entries).await;
            tracing::info!("budgeted run stopped: its budget is spent");
        }
        chosen
            .into_iter()
            .map(|(id, e)| {
                let outcome = match e {
                    None => RunOutcome::NotFound,
                    Some(e) => outcome_of(&e, budget_spent),
                };
                (id, outcome)
            })
            .collect()
    }

    /// Makes a task of a run runnable: queued and in the ready queue, or a failed one whose error
    /// was transient resumed; running ones are joined as they are.
    fn start_for_run(self: &Arc<Self>, e: &Arc<TaskEntry>) {
        match e.state() {
            TaskState::Failed if transient(e) => {
                let _ = self.resume(e.spec.id.as_str());
            }
            TaskState::Queued => {
                let _ = self.resume(e.spec.id.as_str());
            }
            _ => {}
        }
    }

    async fn request_stop(self: &Arc<Self>, ids: Option<Vec<String>>, cause: StopCause) -> usize {
        let entries: Vec<Arc<TaskEntry>> = match ids {
            Some(ids) => ids.iter().filter_map(|id| self.find(id)).collect(),
            None => self.tasks.read().values().filter(|e| e.state().is_active()).cloned().collect(),
        };
        tracing::info!("stop requested ({cause:?}) for {} tasks", entries.len());
        self.hold(&entries).await
    }

    /// Stops the runners of `entries` and holds them: queued, not in the ready queue, until a run
    /// or a resume asks for them. Waits (boundedly) for the runners to be gone, so that their
    /// journals and part files are synced on return.
    async fn hold(self: &Arc<Self>, entries: &[Arc<TaskEntry>]) -> usize {
        let mut stopped = 0;
        {
            let mut s = self.sched.lock();
            for e in entries {
                match e.state() {
                    TaskState::Queued => {
                        s.ready.remove(&e.spec.id);
                        e.inner.lock().dormant = true;
                        // Wakes a run waiting on it: held is as good as ended for this run.
                        e.state_tx.send_modify(|_| {});
                        stopped += 1;
                    }
                    TaskState::Running if Self::stop_runner(e, StopReason::Budget) => stopped += 1,
                    _ => {}
                }
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        while entries.iter().any(|e| e.inner.lock().run.is_some()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.env.journal.flushed().await;
        stopped
    }
}

/// Whether a queued task waits for something other than its turn: held for the next run, or
/// parked until the network allows it (the run ends for it; the platform schedules the next).
fn held_or_waiting(e: &TaskEntry) -> bool {
    let g = e.inner.lock();
    g.dormant || (g.state == TaskState::Queued && g.waiting.is_some())
}

/// Whether everything left of a task is being fetched by the OS (leased, no runner, no range for
/// the engine): a run has nothing to do for it, and must not spend its budget waiting for chunks
/// that arrive with the OS's own wake-ups.
fn with_the_os(e: &TaskEntry) -> bool {
    let g = e.inner.lock();
    g.state.is_active() && g.run.is_none() && !g.leases.is_empty() && !super::handoff::engine_work(&g)
}

/// Whether a failed task's error is one a later run may get past.
fn transient(e: &TaskEntry) -> bool {
    e.inner.lock().error.as_ref().is_some_and(|err| err.code.is_transient())
}

fn outcome_of(e: &TaskEntry, stopped: Option<&str>) -> RunOutcome {
    if e.removed.load(Ordering::Acquire) {
        return RunOutcome::Cancelled;
    }
    if let Some(stored) = e.spec.output.unresolved() {
        return RunOutcome::Failed((&unknown_root(stored)).into());
    }
    let (state, error) = {
        let g = e.inner.lock();
        (g.state, g.error.clone())
    };
    match state {
        TaskState::Completed => RunOutcome::Completed,
        TaskState::Cancelled => RunOutcome::Cancelled,
        TaskState::Paused => RunOutcome::Paused,
        TaskState::Failed => match error {
            Some(err) if err.code.is_transient() => RunOutcome::Retry {
                reason: format!("a transient failure outlasted the retries: {}", err.message),
                error: Some(err),
                delay: RETRY_LATER,
            },
            Some(err) => RunOutcome::Failed(err),
            None => {
                RunOutcome::Failed(TaskError { code: ErrorCode::Internal, message: "failed without an error".into(), http_status: None })
            }
        },
        TaskState::Queued if e.inner.lock().waiting.is_some() => RunOutcome::Retry {
            error: None,
            delay: Duration::ZERO,
            reason: format!("waiting: {}", e.inner.lock().waiting.map_or("", |w| w.name())),
        },
        TaskState::Queued | TaskState::Running if with_the_os(e) => RunOutcome::Retry {
            error: None,
            delay: RETRY_LATER,
            reason: "the OS is fetching every range left; its chunks arrive with its own wake-ups".into(),
        },
        TaskState::Queued | TaskState::Running => {
            RunOutcome::Retry { error: None, delay: Duration::ZERO, reason: stopped.unwrap_or("a stop was requested").to_string() }
        }
    }
}
