// The core's UidtScheduler on JobScheduler (Android 14+): builds the user-initiated job the
// core's UidtRequest describes, in Ferry's own job namespace, and lists Ferry's jobs.

package dev.ferry.work.android

import android.app.job.JobInfo
import android.app.job.JobScheduler
import android.content.ComponentName
import android.content.Context
import android.os.PersistableBundle
import androidx.annotation.RequiresApi
import dev.ferry.work.UidtRequest
import dev.ferry.work.UidtScheduler
import dev.ferry.work.WorkerInput

/** JobScheduler for user-initiated data transfer jobs, for the core. */
@RequiresApi(34)
class UidtJobScheduler(private val context: Context) : UidtScheduler {
    private val jobs: JobScheduler
        get() = context.getSystemService(JobScheduler::class.java).forNamespace(UidtScheduler.NAMESPACE)

    /** Throws SecurityException without RUN_USER_INITIATED_JOBS; false when JobScheduler refuses. */
    override fun schedule(request: UidtRequest): Boolean {
        val extras = PersistableBundle().apply { request.extras.forEach { (key, value) -> putString(key, value) } }
        val job = JobInfo.Builder(request.jobId, ComponentName(context, FerryTransferJobService::class.java))
            .setUserInitiated(request.userInitiated)
            .setRequiredNetworkType(request.networkType)
            .setEstimatedNetworkBytes(request.estimatedDownloadBytes, 0)
            .setExtras(extras)
            .setPersisted(true)
            .build()
        return jobs.schedule(job) == JobScheduler.RESULT_SUCCESS
    }

    override fun cancel(jobId: Int) {
        jobs.cancel(jobId)
    }

    override fun scheduledJobs(): Map<String, Int> =
        jobs.allPendingJobs.mapNotNull { job -> WorkerInput.from(job.extras::getString)?.let { it.taskId to job.id } }.toMap()
}
