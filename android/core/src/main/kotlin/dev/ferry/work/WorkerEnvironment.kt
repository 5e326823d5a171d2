// What a worker run needs from the platform, as plain interfaces with no Android types, so that
// the JVM suite drives the same code a CoroutineWorker or a user-initiated job runs: the manager,
// foreground status (which Android 12+ refuses from the background), progress reporting, the
// budgets, and why the platform stopped the run.

package dev.ferry.work

import dev.ferry.Ferry
import dev.ferry.ffi.StopCause
import dev.ferry.ffi.TaskState
import dev.ferry.ffi.TaskStatus
import kotlin.time.Duration
import kotlin.time.Duration.Companion.hours
import kotlin.time.Duration.Companion.minutes
import kotlin.time.Duration.Companion.seconds

/**
 * The input of a run: the one task it is for. Only this id crosses WorkManager's `Data` (limited
 * to 10 KB) or a job's extras; everything else (URL, offsets, validators) is read from the task
 * table, so a run that starts again from the top after process death continues from the journal.
 */
data class WorkerInput(val taskId: String) {
    init {
        checkTaskIdFits(taskId)
    }

    /** The key/value pairs to put in the work's input `Data` or the job's extras. */
    fun toMap(): Map<String, String> = mapOf(KEY_TASK_ID to taskId)

    /** Keys and decoding. */
    companion object {
        /** The one key of the input. */
        const val KEY_TASK_ID: String = "ferry.taskId"

        /** The input read back with [get] (`Data::getString`, `PersistableBundle::getString`), or `null`. */
        fun from(get: (String) -> String?): WorkerInput? = get(KEY_TASK_ID)?.takeIf { it.isNotEmpty() }?.let(::WorkerInput)
    }
}

/** Whether the platform let the run become a foreground service. */
enum class ForegroundGrant {
    /** A foreground service with a notification: the run may take [RunBudgets.foreground]. */
    GRANTED,

    /** Refused (Android 12+ from the background, no notification permission, the 6 h dataSync cap...). */
    REFUSED,
}

/** Asks the platform for foreground status (`CoroutineWorker.setForeground`). */
fun interface ForegroundRequester {
    /**
     * Asks to run in the foreground for [status]'s task. Throwing counts as [ForegroundGrant.REFUSED]
     * (the run carries on within the background budget).
     */
    suspend fun request(status: TaskStatus): ForegroundGrant

    /** Ready-made requesters. */
    companion object {
        /** Never foreground: the background budget. */
        val NONE: ForegroundRequester = ForegroundRequester { ForegroundGrant.REFUSED }

        /** Already foreground (a user-initiated job shows its own notification). */
        val ALREADY: ForegroundRequester = ForegroundRequester { ForegroundGrant.GRANTED }
    }
}

/**
 * A task's progress, as a run reports it to the platform (notification, `setProgress`, job bytes).
 *
 * @property name what a notification calls the download: the destination's file name, else the task id.
 */
data class WorkerProgress(val taskId: String, val state: TaskState, val bytes: Long, val total: Long?, val name: String = taskId) {
    /** 0..100, or `null` while the length is unknown. */
    val percent: Int? get() = total?.takeIf { it > 0 }?.let { (bytes * 100 / it).toInt().coerceIn(0, 100) }

    /** Bytes still to fetch, or `null` while the length is unknown (a job's estimated bytes). */
    val remaining: Long? get() = total?.let { (it - bytes).coerceAtLeast(0) }

    /** One line for a notification: "42% · 12.6 MB of 30.0 MB", or "12.6 MB" without a length. */
    val text: String
        get() = when (val p = percent) {
            null -> megabytes(bytes)
            else -> "$p% · ${megabytes(bytes)} of ${megabytes(total!!)}"
        }

    /** Conversions. */
    companion object {
        /** The progress of a status. */
        fun of(status: TaskStatus): WorkerProgress = WorkerProgress(
            status.taskId,
            status.state,
            status.bytes.toLong(),
            status.total?.toLong(),
            status.destination?.substringAfterLast('/')?.takeIf { it.isNotEmpty() } ?: status.taskId,
        )

        private fun megabytes(n: Long): String = String.format(java.util.Locale.ROOT, "%.1f MB", n / 1_000_000.0)
    }
}

/** Receives a run's progress; called from the run's coroutine, at most once per progress interval. */
fun interface ProgressReporter {
    /** Reports [progress]. Throwing stops the reporting, not the run. */
    suspend fun report(progress: WorkerProgress)

    /** Ready-made reporters. */
    companion object {
        /** Reports nothing. */
        val NONE: ProgressReporter = ProgressReporter { }
    }
}

/**
 * How long one run may take. A worker without foreground status is stopped by WorkManager at 10
 * minutes, so its run stops itself before (9 minutes, synced, retried); with foreground status
 * the cap is Android 15's 6 hours of dataSync per 24 hours, minus a margin to stop cleanly.
 */
data class RunBudgets(
    /** Without foreground status. */
    val background: Duration = 9.minutes,
    /** With foreground status (or in a user-initiated job). */
    val foreground: Duration = 6.hours - 10.minutes,
) {
    init {
        require(background.isPositive() && foreground.isPositive()) { "budgets must be positive" }
    }

    /** The budget for a run that was [granted] (or not) foreground status. */
    fun of(granted: ForegroundGrant): Duration = if (granted == ForegroundGrant.GRANTED) foreground else background

    /** Ready-made budgets. */
    companion object {
        /**
         * A user-initiated job runs "as long as system conditions allow", with no fixed cap: its
         * run is bounded by a day, and ends earlier only when the job is stopped.
         */
        val USER_INITIATED_JOB: RunBudgets = RunBudgets(foreground = 24.hours)
    }
}

/**
 * Everything a run takes from its platform.
 *
 * @property openFerry the process's manager. A run never closes it: the app and other runs share
 *   the same engine (one per state directory and process), and closing it would stop them all.
 * @property stopCause why the platform cancelled the run, asked at cancellation time (the
 *   worker's `stopReason` through [StopReasons.causeOf]).
 * @property progressInterval how often progress is polled and reported.
 * @property stopTimeout the longest a stop request may hold up a cancelled run (the engine
 *   itself bounds it at about 10 s).
 */
class WorkerEnvironment(
    val openFerry: () -> Ferry,
    val foreground: ForegroundRequester = ForegroundRequester.NONE,
    val progress: ProgressReporter = ProgressReporter.NONE,
    val budgets: RunBudgets = RunBudgets(),
    val stopCause: () -> StopCause = { StopCause.STOPPED },
    val progressInterval: Duration = 1.seconds,
    val stopTimeout: Duration = 15.seconds,
)
