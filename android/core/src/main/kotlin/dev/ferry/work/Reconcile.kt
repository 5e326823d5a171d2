// Reconciling the task table with what the platform has scheduled, at app start: a task that
// needs a run but has no work or job (force stop, a crash between enqueue and schedule, a work
// that failed to open the table) gets one; a work or job whose task is gone, finished or paused
// (an orphan) is cancelled. The rules are a pure function over a snapshot.

package dev.ferry.work

import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import dev.ferry.ffi.TaskStatus

/**
 * Codes of the failures a later run gets past: the engine resumes failed tasks with these codes
 * in a budgeted run and reports them as retry. Mirrors the engine's `ErrorCode::is_transient`;
 * `OutcomeMappingTest` checks the two agree on the codes a run produces.
 */
val TRANSIENT_CODES: Set<ErrorCode> = setOf(
    ErrorCode.CONNECT_FAILED,
    ErrorCode.TIMEOUT,
    ErrorCode.SERVER_ERROR,
    ErrorCode.TOO_MANY_REQUESTS,
    ErrorCode.TRUNCATED_BODY,
    ErrorCode.NETWORK,
)

/**
 * Whether the platform must keep a run scheduled for this task: a file download (memory and stream
 * outputs die with the process) that is queued, running, or failed with a transient error.
 * Completed, cancelled, paused and permanently failed tasks need nothing until the user acts.
 */
val TaskStatus.needsRun: Boolean
    get() = output == "file" && when (state) {
        TaskState.QUEUED, TaskState.RUNNING -> true
        TaskState.FAILED -> error?.code in TRANSIENT_CODES
        TaskState.PAUSED, TaskState.COMPLETED, TaskState.CANCELLED -> false
    }

/** What reconcile does: task ids to schedule, and task ids whose work or job to cancel. */
data class ReconcilePlan(val schedule: List<String>, val cancel: List<String>)

/**
 * The plan for [tasks] (the table) against [scheduled] (task ids with unfinished work or jobs).
 * Take [scheduled] before [tasks]: a task enqueued in between then shows up as missing, and
 * scheduling it again is a no-op (unique work, KEEP); the other order would cancel its new work
 * as an orphan.
 */
fun planReconcile(tasks: List<TaskStatus>, scheduled: Set<String>): ReconcilePlan {
    val needing = tasks.filter { it.needsRun }.map { it.taskId }
    val needingSet = needing.toHashSet()
    return ReconcilePlan(
        schedule = needing.filter { it !in scheduled },
        cancel = scheduled.filter { it !in needingSet }.sorted(),
    )
}
