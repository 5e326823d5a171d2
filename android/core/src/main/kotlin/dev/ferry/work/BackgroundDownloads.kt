// The one call an app makes for a download that survives process death: enqueue it in the engine
// and schedule a platform run for it (a user-initiated job on Android 14+, else WorkManager work),
// plus the matching resume, cancel and app-start reconcile. Every decision is the core's; the
// Android module only supplies the schedulers and the platform state.

package dev.ferry.work

import dev.ferry.Ferry
import dev.ferry.ffi.DownloadRequest

/** How a task was scheduled. */
data class Scheduled(
    /** Where its runs go. */
    val route: Route,
    /** For [Route.WORK_MANAGER]: expedited (false after a fallback, or when not user-initiated). */
    val expedited: Boolean = false,
    /** For [Route.UIDT]: the job id. */
    val jobId: Int? = null,
)

/**
 * Downloads that outlive the app's process: the engine runs them in-process while the app lives,
 * and a worker or job keeps the process alive (or starts it again) until each is done.
 *
 * @param ferry the process's manager (never closed by this class).
 * @param work WorkManager.
 * @param uidt JobScheduler for user-initiated jobs, or `null` to use WorkManager only.
 * @param jobIds the job id allocator, needed with [uidt].
 * @param platform the platform state, asked at each scheduling.
 */
class BackgroundDownloads(
    val ferry: Ferry,
    private val work: WorkScheduler,
    private val uidt: UidtScheduler? = null,
    private val jobIds: JobIds? = null,
    private val platform: () -> PlatformState,
) {
    init {
        require(uidt == null || jobIds != null) { "user-initiated jobs need a JobIds allocator" }
    }

    /**
     * Enqueues [request] and schedules a run for it; returns the task id. Repeating it for the same
     * task id (after a restart, say) changes nothing that is already scheduled.
     *
     * @param network which networks the download may use: the work's constraint, and the task's
     *   engine policy ([NetworkPolicy.enginePolicy]) unless [request] names one.
     * @param userInitiated the user asked for it now (a tap): a user-initiated job on Android 14+,
     *   expedited work otherwise. False for downloads the app starts on its own.
     */
    suspend fun enqueue(request: DownloadRequest, network: NetworkPolicy = NetworkPolicy.ANY, userInitiated: Boolean = true): String {
        val taskId = ferry.enqueue(request.copy(networkPolicy = request.networkPolicy ?: network.enginePolicy))
        schedule(taskId, network, userInitiated)
        return taskId
    }

    /** Resumes a paused or failed task and schedules a run for it. */
    suspend fun resume(taskId: String, network: NetworkPolicy = NetworkPolicy.ANY, userInitiated: Boolean = true): Scheduled {
        ferry.resume(taskId)
        return schedule(taskId, network, userInitiated)
    }

    /** Cancels a task (its partial file is deleted) and its work or job. */
    suspend fun cancel(taskId: String) {
        ferry.cancel(taskId)
        unschedule(taskId)
    }

    /**
     * Schedules a run for [taskId]: a user-initiated job when [UidtPolicy.route] says so and
     * JobScheduler accepts it, else WorkManager work (expedited when [userInitiated], plain when
     * that is refused). A task that already has a job keeps it: scheduling a job id again would
     * replace the job and stop it mid-transfer.
     */
    fun schedule(taskId: String, network: NetworkPolicy = NetworkPolicy.ANY, userInitiated: Boolean = false): Scheduled {
        if (uidt != null && jobIds != null && UidtPolicy.route(platform(), userInitiated) == Route.UIDT) {
            uidt.scheduledJobs()[taskId]?.let { return Scheduled(Route.UIDT, jobId = it) }
            val remaining = ferry.statusOrNull(taskId)?.let { WorkerProgress.of(it).remaining } ?: -1L
            val request = UidtRequest(jobIds.idFor(taskId), taskId, network, remaining)
            val accepted = try {
                uidt.schedule(request)
            } catch (e: SecurityException) {
                false // RUN_USER_INITIATED_JOBS missing or revoked
            } catch (e: IllegalArgumentException) {
                false // a job JobScheduler rejects (service missing or disabled)
            }
            if (accepted) return Scheduled(Route.UIDT, jobId = request.jobId)
        }
        val plan = work.schedule(WorkPlan.of(taskId, network, userInitiated))
        return Scheduled(Route.WORK_MANAGER, expedited = plan.expedited)
    }

    /** Cancels [taskId]'s work and job, if any. */
    fun unschedule(taskId: String) {
        work.cancelUnique(WorkNames.uniqueName(taskId))
        uidt?.scheduledJobs()?.get(taskId)?.let(uidt::cancel)
    }

    /**
     * At app start: schedules plain WorkManager work for each task that needs a run and has none
     * (not a user action, so never a user-initiated job), with the policy [networkOf] gives it;
     * cancels works and jobs whose task needs none; frees the job ids of tasks that have no job and
     * need no run (an id is kept while its task may still get or hold a job).
     */
    suspend fun reconcile(networkOf: (String) -> NetworkPolicy = { NetworkPolicy.ANY }): ReconcilePlan {
        val jobs = uidt?.scheduledJobs().orEmpty()
        val works = work.scheduledTaskIds()
        val tasks = ferry.list()
        val plan = planReconcile(tasks, works + jobs.keys)
        plan.schedule.forEach { work.schedule(WorkPlan.of(it, networkOf(it), userInitiated = false)) }
        plan.cancel.forEach { taskId ->
            if (taskId in works) work.cancelUnique(WorkNames.uniqueName(taskId))
            jobs[taskId]?.let { uidt?.cancel(it) }
        }
        jobIds?.retain(jobs.keys - plan.cancel.toSet() + tasks.filter { it.needsRun }.map { it.taskId })
        return plan
    }
}
