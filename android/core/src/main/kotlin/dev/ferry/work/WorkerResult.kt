// How a run's engine outcomes become what the platform understands (success, retry, failure),
// as a pure function so that every rule is unit-tested without a platform or a server.

package dev.ferry.work

import dev.ferry.FerryException
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.RunOutcome
import dev.ferry.ffi.TaskErrorInfo
import dev.ferry.ffi.TaskRunOutcome
import dev.ferry.number

/** What a run tells the platform. */
sealed class WorkerResult {
    /** Nothing left to do: completed, or paused/cancelled/removed/unknown (nothing to run). */
    object Success : WorkerResult() {
        override fun toString(): String = "Success"
    }

    /**
     * Not done: run again after about [delayMs].
     *
     * @property reason why (the engine's words), for logs.
     * @property error the transient error that ended the run, if one did.
     */
    data class Retry(val delayMs: Long, val reason: String, val error: TaskErrorInfo? = null) : WorkerResult() {
        /**
         * The run stopped only because its time was up or it was asked to stop, having made
         * progress: the next run should follow at once. A WorkManager worker then appends a new
         * work instead of returning `Result.retry()`, whose exponential backoff would grow with
         * every 9-minute slice of a long download (30 s, 1 min, 2 min, ... up to 5 h).
         */
        val continueNow: Boolean get() = delayMs == 0L
    }

    /**
     * Failed for good: retrying cannot help (a 404, a checksum mismatch, a full disk).
     *
     * @property code the stable [ErrorCode] number (2004, 4001, 3001, ...).
     */
    data class Failure(val code: Int, val message: String) : WorkerResult() {
        /** The work's output `Data`: the code and the message cut to [MAX_MESSAGE_CHARS] (Data holds 10 KB). */
        fun toMap(): Map<String, Any> = mapOf(KEY_CODE to code, KEY_MESSAGE to message.take(MAX_MESSAGE_CHARS))
    }

    /** Whether a job should ask JobScheduler to run it again (`jobFinished(params, wantsReschedule)`). */
    val wantsReschedule: Boolean get() = this is Retry

    /** Output keys and the mapping rules. */
    companion object {
        /** Output key of [Failure.code]. */
        const val KEY_CODE: String = "ferry.code"

        /** Output key of [Failure.message]. */
        const val KEY_MESSAGE: String = "ferry.message"

        /** Longest message put in the output. */
        const val MAX_MESSAGE_CHARS: Int = 1000

        /** Wait before running again after a failure to reach the task table (locked, shut down). */
        const val REOPEN_DELAY_MS: Long = 30_000

        /**
         * The result of a run's outcomes, by these rules:
         * - any `Retry` → [Retry] with the shortest delay (work remains; a task that failed for good
         *   in the same run fails again at once next time, so retrying costs nothing);
         * - else any `Failed` → [Failure] with the first failed task's code;
         * - else (`Completed`, `Paused`, `Cancelled`, `NotFound`, or no outcome) → [Success]: there is
         *   nothing for this work to do. A paused task is scheduled again when it is resumed.
         */
        fun of(outcomes: List<TaskRunOutcome>): WorkerResult {
            val retries = outcomes.map { it.outcome }.filterIsInstance<RunOutcome.Retry>()
            retries.minByOrNull { it.delayMs }?.let { r ->
                return Retry(r.delayMs.coerceAtMost(Long.MAX_VALUE.toULong()).toLong(), r.reason, r.error)
            }
            outcomes.map { it.outcome }.filterIsInstance<RunOutcome.Failed>().firstOrNull()?.let { f ->
                return Failure(f.error.code.number, f.error.message)
            }
            return Success
        }

        /**
         * The result when the manager could not be opened or read: a lock held by another process
         * or a manager shutting down clears up by itself ([Retry]); anything else (a corrupt table, a
         * full disk) is a [Failure] with its code; the next app start reconciles the task again.
         */
        fun of(error: FerryException): WorkerResult = when (error.code) {
            ErrorCode.STATE_DIR_LOCKED, ErrorCode.SHUT_DOWN ->
                Retry(REOPEN_DELAY_MS, "the task table is not available: ${error.detail}")
            else -> Failure(error.code.number, error.detail)
        }
    }
}
