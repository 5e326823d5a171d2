// The body of one worker (or user-initiated job) run, as a plain suspend function: open the
// manager, try for foreground status, run the task with a budget, report progress, map the
// outcome. WorkManager runs doWork() from the top after every stop or process death, so nothing
// here keeps state: the engine's journal is where a run continues from.

package dev.ferry.work

import dev.ferry.Ferry
import dev.ferry.FerryException
import dev.ferry.ffi.TaskRunOutcome
import dev.ferry.ffi.TaskStatus
import kotlin.time.Duration
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeoutOrNull

/**
 * Runs [input]'s task once, for at most a budget, and says what the platform should do next.
 *
 * 1. Opens the manager ([WorkerEnvironment.openFerry]); a table that cannot be opened maps
 *    through [WorkerResult.of] (a lock held elsewhere is retried).
 * 2. When the task needs a run, asks for foreground status; a refusal or an exception (Android 12+
 *    refuses from the background) leaves the run in the background budget.
 * 3. Runs the task with `runBudgeted`, which joins it when the app (or another run) is already
 *    running it, and stops it synced when the budget is spent.
 * 4. Reports progress every [WorkerEnvironment.progressInterval] while it runs, and once at the end.
 * 5. Maps the outcome with [WorkerResult.of].
 *
 * When the calling coroutine is cancelled (WorkManager stopped the worker, JobScheduler called
 * `onStopJob`), the Rust future cannot be cancelled from Kotlin: the run asks the engine to stop
 * the task (`requestStop` with [WorkerEnvironment.stopCause], under [NonCancellable], bounded by
 * [WorkerEnvironment.stopTimeout]), which returns once the journal and part file are synced, then
 * rethrows the cancellation.
 */
suspend fun runWorker(input: WorkerInput, env: WorkerEnvironment): WorkerResult {
    val ferry = try {
        env.openFerry()
    } catch (e: FerryException) {
        return WorkerResult.of(e)
    }
    val status = try {
        ferry.statusOrNull(input.taskId)
    } catch (e: FerryException) {
        return WorkerResult.of(e)
    }
    val budget = if (status != null && status.needsRun) env.budgets.of(askForeground(env, status)) else env.budgets.background
    val outcomes = coroutineScope {
        val reporting = launch { reportProgress(ferry, input.taskId, env) }
        try {
            runBudgeted(ferry, input.taskId, budget, env)
        } finally {
            reporting.cancel()
        }
    }
    reportOnce(ferry, input.taskId, env)
    return WorkerResult.of(outcomes)
}

/** Foreground status, or [ForegroundGrant.REFUSED] when the platform refuses or throws. */
private suspend fun askForeground(env: WorkerEnvironment, status: TaskStatus): ForegroundGrant = try {
    env.foreground.request(status)
} catch (e: CancellationException) {
    throw e
} catch (e: Exception) {
    ForegroundGrant.REFUSED
}

private suspend fun runBudgeted(ferry: Ferry, taskId: String, budget: Duration, env: WorkerEnvironment): List<TaskRunOutcome> {
    val ids = listOf(taskId)
    try {
        return ferry.manager.runBudgeted(budget.inWholeMilliseconds.coerceAtLeast(1).toULong(), ids)
    } catch (e: CancellationException) {
        withContext(NonCancellable) {
            withTimeoutOrNull(env.stopTimeout) { ferry.manager.requestStop(env.stopCause(), ids) }
        }
        throw e
    }
}

private suspend fun reportProgress(ferry: Ferry, taskId: String, env: WorkerEnvironment) {
    var last: WorkerProgress? = null
    while (true) {
        val now = progressOf(ferry, taskId) ?: return
        if (now != last) {
            try {
                env.progress.report(now)
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                return
            }
            last = now
        }
        delay(env.progressInterval)
    }
}

private suspend fun reportOnce(ferry: Ferry, taskId: String, env: WorkerEnvironment) {
    val now = progressOf(ferry, taskId) ?: return
    try {
        env.progress.report(now)
    } catch (e: CancellationException) {
        throw e
    } catch (e: Exception) {
        // Reporting is best effort; the outcome stands.
    }
}

private fun progressOf(ferry: Ferry, taskId: String): WorkerProgress? = try {
    ferry.statusOrNull(taskId)?.let(WorkerProgress::of)
} catch (e: FerryException) {
    null
}
