//! Budgeted runs, exported: what an Android worker or job does with its minutes, and the stop
//! it requests when the system stops it (uniffi cannot cancel a Rust future from Kotlin).
//! Conversions only; the rules are `engine::run::manager::budget`'s.

use super::gate::gated;
use super::manager::DownloadManager;
use super::types::TaskErrorInfo;
use crate::engine::{self, runtime};
use std::time::Duration;

/// Why a run is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum StopCause {
    /// The system stopped the worker or job (its time, quota, standby bucket).
    Stopped,
    /// The network the job needed went away.
    NetworkLost,
    /// The app asked.
    App,
}

impl From<StopCause> for engine::StopCause {
    fn from(c: StopCause) -> Self {
        match c {
            StopCause::Stopped => engine::StopCause::Stopped,
            StopCause::NetworkLost => engine::StopCause::NetworkLost,
            StopCause::App => engine::StopCause::App,
        }
    }
}

/// How a task ended its run.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum RunOutcome {
    /// Verified and in place: the work succeeded.
    Completed,
    /// Failed for good (a 404, a checksum mismatch, a full disk): the work failed.
    Failed {
        /// Why.
        error: TaskErrorInfo,
    },
    /// Not done yet: run again after about `delay_ms`.
    Retry {
        /// The transient error, when one ended the run.
        error: Option<TaskErrorInfo>,
        /// Suggested wait before the next run.
        delay_ms: u64,
        /// Why.
        reason: String,
    },
    /// Paused by the user: nothing to run until it is resumed.
    Paused,
    /// Cancelled or removed.
    Cancelled,
    /// No such task.
    NotFound,
}

impl From<engine::RunOutcome> for RunOutcome {
    fn from(o: engine::RunOutcome) -> Self {
        use engine::RunOutcome as E;
        match o {
            E::Completed => Self::Completed,
            E::Failed(e) => Self::Failed { error: e.into() },
            E::Retry { error, delay, reason } => {
                Self::Retry { error: error.map(Into::into), delay_ms: delay.as_millis().min(u128::from(u64::MAX)) as u64, reason }
            }
            E::Paused => Self::Paused,
            E::Cancelled => Self::Cancelled,
            E::NotFound => Self::NotFound,
        }
    }
}

/// One task's outcome.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TaskRunOutcome {
    /// The task.
    pub task_id: String,
    /// How it ended its run.
    pub outcome: RunOutcome,
}

#[uniffi::export]
impl DownloadManager {
    /// Runs the given tasks (`None`: every queued task, and failed ones whose error was
    /// transient) until each ends or `budget_ms` passes (the optional argument comes last, as
    /// Python requires), then stops the rest with everything
    /// synced and holds them for the next run. A task already running is joined, never started
    /// twice. One outcome per task, in order.
    #[uniffi::method(default(task_ids = None))]
    pub async fn run_budgeted(&self, budget_ms: u64, task_ids: Option<Vec<String>>) -> Vec<TaskRunOutcome> {
        let m = self.inner.clone();
        let budget = engine::RunBudget { time: Duration::from_millis(budget_ms) };
        let outcomes = gated(runtime::handle().spawn(async move { m.run_budgeted(task_ids, budget).await })).await.unwrap_or_default();
        outcomes.into_iter().map(|(task_id, o)| TaskRunOutcome { task_id, outcome: o.into() }).collect()
    }

    /// Stops the given tasks (`None`: every running or queued one) and holds them for the next
    /// run; returns once their journals and part files are synced (at most about ten seconds).
    /// Call it when the worker's coroutine is cancelled. Returns how many were stopped.
    #[uniffi::method(default(task_ids = None))]
    pub async fn request_stop(&self, cause: StopCause, task_ids: Option<Vec<String>>) -> u32 {
        let m = self.inner.clone();
        gated(runtime::handle().spawn(async move { m.request_stop(task_ids, cause.into()).await })).await.unwrap_or(0) as u32
    }
}
