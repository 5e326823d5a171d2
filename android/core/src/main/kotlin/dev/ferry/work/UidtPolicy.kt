// When a download runs as a user-initiated data transfer job (Android 14+) instead of WorkManager
// work, and what happens when scheduling that job fails. UIDT is the platform's answer to long
// user-started transfers (no 10-minute limit, no 6 h dataSync cap, exempt from Android 16's job
// quotas), but WorkManager has no API for it, so it is a JobService of our own.

package dev.ferry.work

/** What the core needs to know about the device and the app at scheduling time. */
data class PlatformState(
    /** `Build.VERSION.SDK_INT`. */
    val sdkInt: Int,
    /**
     * `RUN_USER_INITIATED_JOBS` is held: declared in the manifest and
     * `JobScheduler.canRunUserInitiatedJobs()` (API 34) returns true.
     */
    val canRunUserInitiatedJobs: Boolean,
    /** The app is visible (a user-initiated job may only be scheduled then). */
    val appVisible: Boolean,
)

/** Where a task's background run goes. */
enum class Route {
    /** A user-initiated data transfer job (`JobInfo.Builder.setUserInitiated(true)`). */
    UIDT,

    /** WorkManager work, expedited when the user started the download. */
    WORK_MANAGER,
}

/** The UIDT rules. */
object UidtPolicy {
    /** Android 14. */
    const val MIN_SDK: Int = 34

    /**
     * [Route.UIDT] for a download the user started, on Android 14+, with the permission held, while
     * the app is visible; [Route.WORK_MANAGER] otherwise (background-started work never qualifies).
     */
    fun route(platform: PlatformState, userInitiated: Boolean): Route =
        if (userInitiated && platform.sdkInt >= MIN_SDK && platform.canRunUserInitiatedJobs && platform.appVisible) {
            Route.UIDT
        } else {
            Route.WORK_MANAGER
        }
}

/**
 * One user-initiated job for one task, as the Android module builds it:
 * `JobInfo.Builder(jobId, ComponentName(context, FerryTransferJobService::class.java))` with
 * `setUserInitiated(true)`, `setRequiredNetworkType(networkType)` (a UIDT job must name a network),
 * `setEstimatedNetworkBytes(estimatedDownloadBytes, 0)`, `setExtras` from [extras] and
 * `setPersisted(true)`, scheduled in the [UidtScheduler.NAMESPACE] namespace.
 *
 * @property estimatedDownloadBytes the bytes still to fetch, or -1 (`JobInfo.NETWORK_BYTES_UNKNOWN`).
 */
data class UidtRequest(
    val jobId: Int,
    val taskId: String,
    val network: NetworkPolicy,
    val estimatedDownloadBytes: Long,
) {
    /** `JobInfo.NETWORK_TYPE_*`. */
    val networkType: Int get() = network.jobNetworkType

    /** The job's extras: the task id only (as for WorkManager). */
    val extras: Map<String, String> get() = WorkerInput(taskId).toMap()

    /** Always true: the point of this job. */
    val userInitiated: Boolean get() = true
}

/** JobScheduler for user-initiated jobs, as the core sees it; `UidtJobScheduler` implements it. */
interface UidtScheduler {
    /**
     * Schedules [request]. Returns false when JobScheduler answers `RESULT_FAILURE` (the app is not
     * visible); may throw `SecurityException` (no `RUN_USER_INITIATED_JOBS`) or
     * `IllegalArgumentException` (a job JobScheduler rejects). Either way the core falls back to
     * WorkManager.
     */
    fun schedule(request: UidtRequest): Boolean

    /** Cancels job [jobId] (a running job is stopped). */
    fun cancel(jobId: Int)

    /** Ferry's pending and running jobs: task id → job id, from the jobs' extras. */
    fun scheduledJobs(): Map<String, Int>

    /** Constants. */
    companion object {
        /**
         * The JobScheduler namespace of Ferry's jobs (`JobScheduler.forNamespace`, API 34 like UIDT
         * itself): their ids cannot collide with WorkManager's jobs, which use the default one.
         */
        const val NAMESPACE: String = "ferry"
    }
}
