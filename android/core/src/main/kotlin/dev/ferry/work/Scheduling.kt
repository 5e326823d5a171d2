// Scheduling a task as WorkManager work, decided here and written against the WorkScheduler
// interface that the Android module implements with WorkManager: one unique work per task, only
// the task id in its input, constraints from the network policy, expedited for downloads the user
// started (falling back when the platform refuses), and how a finished run is settled.

package dev.ferry.work

import kotlin.time.Duration
import kotlin.time.Duration.Companion.seconds

/**
 * Which networks a download's work may run on (default [ANY]): the WorkManager or JobScheduler
 * constraint. The work carries it as a tag so that a run can schedule its own continuation with
 * the same constraint; [BackgroundDownloads.enqueue] also gives the task the matching engine
 * policy ([enginePolicy]), so that the engine itself holds it back on a network it refuses.
 */
enum class NetworkPolicy {
    /** Any connected network. */
    ANY,

    /** Wi-Fi and other unmetered networks only. */
    UNMETERED,

    /** Not while roaming. */
    NOT_ROAMING,
    ;

    /** The WorkManager constraint. */
    val workNetworkType: WorkNetworkType
        get() = when (this) {
            ANY -> WorkNetworkType.CONNECTED
            UNMETERED -> WorkNetworkType.UNMETERED
            NOT_ROAMING -> WorkNetworkType.NOT_ROAMING
        }

    /**
     * The engine's per-task policy: [UNMETERED] is the engine's `NOT_EXPENSIVE`; the engine knows
     * nothing of roaming, so [NOT_ROAMING] is left to the platform's constraint.
     */
    val enginePolicy: dev.ferry.ffi.NetworkPolicy
        get() = when (this) {
            UNMETERED -> dev.ferry.ffi.NetworkPolicy.NOT_EXPENSIVE
            ANY, NOT_ROAMING -> dev.ferry.ffi.NetworkPolicy.ANY
        }

    /** `JobInfo.NETWORK_TYPE_*` for a user-initiated job (which must name a network). */
    val jobNetworkType: Int
        get() = when (this) {
            ANY -> 1 // NETWORK_TYPE_ANY
            UNMETERED -> 2 // NETWORK_TYPE_UNMETERED
            NOT_ROAMING -> 3 // NETWORK_TYPE_NOT_ROAMING
        }
}

/** The `androidx.work.NetworkType` values Ferry uses, by the same names. */
enum class WorkNetworkType { CONNECTED, UNMETERED, NOT_ROAMING }

/** The `androidx.work.ExistingWorkPolicy` values Ferry uses, by the same names. */
enum class ExistingWork {
    /** Scheduling a task that already has unfinished work changes nothing (the running worker goes on). */
    KEEP,

    /** A run's continuation: appended after the running work, started when it succeeds. */
    APPEND_OR_REPLACE,
}

/** WorkManager's `Data.MAX_DATA_BYTES`. */
const val MAX_DATA_BYTES: Int = 10 * 1024

/**
 * A conservative size of the serialised input (each character counted as 3 bytes, as modified
 * UTF-8 may take, plus per-entry overhead), checked against [MAX_DATA_BYTES] before a work is
 * built; the engine's own 200-byte limit on task ids keeps real inputs far below.
 */
internal fun estimatedDataBytes(entries: Map<String, String>): Int =
    16 + entries.entries.sumOf { (k, v) -> 16 + 3 * k.length + 3 * v.length }

internal fun checkTaskIdFits(taskId: String) {
    require(taskId.isNotEmpty()) { "empty task id" }
    val bytes = estimatedDataBytes(mapOf(WorkerInput.KEY_TASK_ID to taskId))
    require(bytes <= MAX_DATA_BYTES) { "task id too long for a work's input: about $bytes of $MAX_DATA_BYTES bytes" }
}

/** Names and tags of Ferry's works. */
object WorkNames {
    /** The tag on every Ferry work (what reconcile lists). */
    const val TAG: String = "ferry"

    private const val TASK_PREFIX = "ferry:"
    private const val NETWORK_PREFIX = "ferry-network:"

    /** The unique work name of a task, also one of its tags. */
    fun uniqueName(taskId: String): String = TASK_PREFIX + taskId

    /** The task id of a work from its tags, or `null` for a work that is not Ferry's. */
    fun taskIdOf(tags: Collection<String>): String? =
        tags.firstOrNull { it.startsWith(TASK_PREFIX) }?.removePrefix(TASK_PREFIX)?.takeIf { it.isNotEmpty() }

    /** The network policy a work was scheduled with, from its tags ([NetworkPolicy.ANY] when absent). */
    fun networkOf(tags: Collection<String>): NetworkPolicy = tags.firstNotNullOfOrNull { tag ->
        tag.removePrefix(NETWORK_PREFIX).takeIf { tag.startsWith(NETWORK_PREFIX) }
            ?.let { name -> NetworkPolicy.entries.firstOrNull { it.name == name } }
    } ?: NetworkPolicy.ANY

    internal fun networkTag(policy: NetworkPolicy): String = NETWORK_PREFIX + policy.name
}

/**
 * One WorkManager work for one task, as the Android module builds it:
 * `OneTimeWorkRequestBuilder<FerryWorker>()` with [input] as its `Data`, [tags], the [networkType]
 * and storage-not-low constraints, exponential backoff from [backoff], expedited with
 * `RUN_AS_NON_EXPEDITED_WORK_REQUEST` when [expedited], enqueued as unique work [uniqueName] with
 * [existing].
 */
data class WorkPlan(
    val taskId: String,
    val network: NetworkPolicy,
    val expedited: Boolean,
    val existing: ExistingWork = ExistingWork.KEEP,
) {
    init {
        checkTaskIdFits(taskId)
    }

    /** `ferry:<taskId>`. */
    val uniqueName: String get() = WorkNames.uniqueName(taskId)

    /** `ferry`, `ferry:<taskId>` and the network policy. */
    val tags: Set<String> get() = setOf(WorkNames.TAG, uniqueName, WorkNames.networkTag(network))

    /** The work's input: the task id only. */
    val input: Map<String, String> get() = WorkerInput(taskId).toMap()

    /** The network constraint. */
    val networkType: WorkNetworkType get() = network.workNetworkType

    /** Waits for storage not to be low rather than failing a download with a full disk. */
    val requiresStorageNotLow: Boolean get() = true

    /** Initial backoff, exponential (WorkManager's default, and the engine's own retry-later delay). */
    val backoff: Duration get() = 30.seconds

    /** Companion. */
    companion object {
        /**
         * The work for [taskId]: expedited when the user started the download (it starts at once,
         * within the app's expedited quota), plain otherwise.
         */
        fun of(taskId: String, network: NetworkPolicy = NetworkPolicy.ANY, userInitiated: Boolean = false): WorkPlan =
            WorkPlan(taskId, network, expedited = userInitiated)

        /** The work that continues a run stopped only for time: same task and network, appended, not expedited. */
        fun continuation(taskId: String, tags: Collection<String>): WorkPlan =
            WorkPlan(taskId, WorkNames.networkOf(tags), expedited = false, existing = ExistingWork.APPEND_OR_REPLACE)
    }
}

/** WorkManager, as the core sees it. The Android module's `WorkManagerScheduler` implements it. */
interface WorkScheduler {
    /**
     * Enqueues [plan] as unique work. May throw `IllegalStateException` when the platform refuses
     * an expedited work; [schedule] then falls back to a plain one.
     */
    fun enqueueUnique(plan: WorkPlan)

    /** Cancels the unique work [uniqueName] (a running worker is stopped). */
    fun cancelUnique(uniqueName: String)

    /** Ids of the tasks with unfinished Ferry work (enqueued, running, blocked), from the works' tags. */
    suspend fun scheduledTaskIds(): Set<String>
}

/**
 * Enqueues [plan], and when an expedited work is refused (`IllegalStateException`, as some
 * WorkManager versions throw when out of quota or unable to expedite), enqueues it again as plain
 * work. Returns the plan that was enqueued. Running out of quota later is WorkManager's to handle:
 * the work is built with `RUN_AS_NON_EXPEDITED_WORK_REQUEST`.
 */
fun WorkScheduler.schedule(plan: WorkPlan): WorkPlan = try {
    enqueueUnique(plan)
    plan
} catch (e: IllegalStateException) {
    if (!plan.expedited) throw e
    plan.copy(expedited = false).also { enqueueUnique(it) }
}

/** What a WorkManager worker returns: `Result.success()`, `retry()` or `failure(data)`. */
sealed class WorkVerdict {
    /** `Result.success()`. */
    object Success : WorkVerdict() {
        override fun toString(): String = "Success"
    }

    /** `Result.retry()`: WorkManager runs the work again after its backoff. */
    object Retry : WorkVerdict() {
        override fun toString(): String = "Retry"
    }

    /** `Result.failure(workDataOf(*output.toList().toTypedArray()))`. */
    data class Failure(val output: Map<String, Any>) : WorkVerdict()
}

/**
 * How a WorkManager worker for [taskId] (with its own [tags]) ends after [result]. A run stopped
 * only for time appends its continuation and succeeds, so the next slice starts at once with no
 * growing backoff; if that enqueue fails, it falls back to `Result.retry()`. Other retries use
 * WorkManager's backoff.
 */
fun WorkScheduler.settle(result: WorkerResult, taskId: String, tags: Collection<String>): WorkVerdict = when (result) {
    WorkerResult.Success -> WorkVerdict.Success
    is WorkerResult.Failure -> WorkVerdict.Failure(result.toMap())
    is WorkerResult.Retry ->
        if (result.continueNow && runCatching { enqueueUnique(WorkPlan.continuation(taskId, tags)) }.isSuccess) {
            WorkVerdict.Success
        } else {
            WorkVerdict.Retry
        }
}
