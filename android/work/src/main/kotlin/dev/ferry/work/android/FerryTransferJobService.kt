// The user-initiated data transfer job (Android 14+): posts its notification at once (required
// within seconds of onStartJob), runs the core's runWorker with the job's long budget, reports
// transferred and estimated bytes as they flow, turns onStopJob into the run's cancellation (and
// so into a synced stop), and finishes the job with the reschedule the core decides.

package dev.ferry.work.android

import android.app.job.JobParameters
import android.app.job.JobService
import androidx.annotation.RequiresApi
import dev.ferry.ffi.TaskState
import dev.ferry.work.ForegroundRequester
import dev.ferry.work.ProgressReporter
import dev.ferry.work.RunBudgets
import dev.ferry.work.StopReasons
import dev.ferry.work.WorkerEnvironment
import dev.ferry.work.WorkerInput
import dev.ferry.work.WorkerProgress
import dev.ferry.work.runWorker
import java.util.concurrent.ConcurrentHashMap
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch

/** Runs one task as a user-initiated job; see `dev.ferry.work.runWorker`. */
@RequiresApi(34)
class FerryTransferJobService : JobService() {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)
    private val runs = ConcurrentHashMap<Int, Job>()
    private val stopReasons = ConcurrentHashMap<Int, Int>()

    override fun onStartJob(params: JobParameters): Boolean {
        val input = WorkerInput.from(params.extras::getString) ?: return false
        // On the main thread, within seconds: a placeholder, replaced by the first progress report.
        notify(params, WorkerProgress(input.taskId, TaskState.QUEUED, 0, null))
        val env = WorkerEnvironment(
            openFerry = { FerryWork.ferry(applicationContext) },
            foreground = ForegroundRequester.ALREADY,
            progress = ProgressReporter { progress ->
                updateTransferredNetworkBytes(params, progress.bytes, 0)
                progress.total?.let { updateEstimatedNetworkBytes(params, it, 0) }
                notify(params, progress)
            },
            budgets = RunBudgets.USER_INITIATED_JOB,
            stopCause = { StopReasons.causeOf(stopReasons[params.jobId] ?: JobParameters.STOP_REASON_UNDEFINED) },
        )
        runs[params.jobId] = scope.launch {
            val result = runWorker(input, env)
            if (runs.remove(params.jobId) != null) jobFinished(params, result.wantsReschedule)
        }
        return true
    }

    /** The system stops the job: cancel the run (which stops the task synced) and ask to run again. */
    override fun onStopJob(params: JobParameters): Boolean {
        stopReasons[params.jobId] = params.stopReason
        runs.remove(params.jobId)?.cancel()
        return true
    }

    override fun onDestroy() {
        scope.cancel()
        super.onDestroy()
    }

    private fun notify(params: JobParameters, progress: WorkerProgress) {
        setNotification(params, params.jobId, Notifications.of(this, progress), JOB_END_NOTIFICATION_POLICY_REMOVE)
    }
}
