// The WorkManager worker: reads the task id from its input, gives the core's runWorker what it
// asks of the platform (setForeground with a dataSync notification, setProgress, the stop
// reason), and returns the verdict the core settles on. No decision is made here.

package dev.ferry.work.android

import android.app.NotificationManager
import android.content.Context
import android.content.pm.ServiceInfo
import android.os.Build
import androidx.work.CoroutineWorker
import androidx.work.ForegroundInfo
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import dev.ferry.ffi.StopCause
import dev.ferry.work.ForegroundGrant
import dev.ferry.work.ForegroundRequester
import dev.ferry.work.ProgressReporter
import dev.ferry.work.StopReasons
import dev.ferry.work.WorkVerdict
import dev.ferry.work.WorkerEnvironment
import dev.ferry.work.WorkerInput
import dev.ferry.work.WorkerProgress
import dev.ferry.work.runWorker
import dev.ferry.work.settle

/** Runs one task for up to its budget; see `dev.ferry.work.runWorker`. */
class FerryWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {

    private val input: WorkerInput? get() = WorkerInput.from(inputData::getString)

    @Volatile private var foreground = false

    override suspend fun doWork(): Result {
        val input = input ?: return Result.failure()
        val env = WorkerEnvironment(
            openFerry = { FerryWork.ferry(applicationContext) },
            foreground = ForegroundRequester { status ->
                try {
                    setForeground(foregroundInfo(WorkerProgress.of(status)))
                    foreground = true
                    ForegroundGrant.GRANTED
                } catch (e: IllegalStateException) {
                    // ForegroundServiceStartNotAllowedException (Android 12+, from the background) is one.
                    ForegroundGrant.REFUSED
                }
            },
            progress = ProgressReporter { progress ->
                setProgress(workDataOf(KEY_BYTES to progress.bytes, KEY_TOTAL to (progress.total ?: -1L)))
                if (foreground) {
                    applicationContext.getSystemService(NotificationManager::class.java)
                        .notify(notificationId(input.taskId), Notifications.of(applicationContext, progress))
                }
            },
            stopCause = { if (Build.VERSION.SDK_INT >= 31) StopReasons.causeOf(stopReason) else StopCause.STOPPED },
        )
        val result = runWorker(input, env)
        return when (val verdict = WorkManagerScheduler(applicationContext).settle(result, input.taskId, tags)) {
            WorkVerdict.Success -> Result.success()
            WorkVerdict.Retry -> Result.retry()
            is WorkVerdict.Failure -> Result.failure(workDataOf(*verdict.output.toList().toTypedArray()))
        }
    }

    /** Called by WorkManager before Android 12 to run expedited work as a foreground service. */
    override suspend fun getForegroundInfo(): ForegroundInfo {
        val taskId = input?.taskId ?: "ferry"
        val status = runCatching { FerryWork.ferry(applicationContext).statusOrNull(taskId) }.getOrNull()
        return foregroundInfo(status?.let(WorkerProgress::of) ?: WorkerProgress(taskId, dev.ferry.ffi.TaskState.QUEUED, 0, null))
    }

    private fun foregroundInfo(progress: WorkerProgress): ForegroundInfo {
        val notification = Notifications.of(applicationContext, progress)
        val id = notificationId(progress.taskId)
        return if (Build.VERSION.SDK_INT >= 29) {
            ForegroundInfo(id, notification, ServiceInfo.FOREGROUND_SERVICE_TYPE_DATA_SYNC)
        } else {
            ForegroundInfo(id, notification)
        }
    }

    private fun notificationId(taskId: String): Int = FerryWork.jobIds(applicationContext).idFor(taskId)

    /** Progress keys (`WorkInfo.progress`). */
    companion object {
        /** Bytes fetched. */
        const val KEY_BYTES: String = "ferry.bytes"

        /** Total bytes, -1 while unknown. */
        const val KEY_TOTAL: String = "ferry.total"
    }
}
