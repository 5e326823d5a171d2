// The app's entry point and the process-wide objects the adapters share: one manager per process
// (never closed: the app, workers and jobs all use it), one job id allocator, and the platform
// state the core's scheduling rules read.

package dev.ferry.work.android

import android.app.ActivityManager
import android.app.job.JobScheduler
import android.content.Context
import android.os.Build
import dev.ferry.Ferry
import dev.ferry.ffi.DownloadRequest
import dev.ferry.work.BackgroundDownloads
import dev.ferry.work.JobIds
import dev.ferry.work.NetworkPolicy
import dev.ferry.work.PlatformState
import dev.ferry.work.ReconcilePlan
import java.io.File

/** Downloads that survive process death, for Android apps. */
object FerryWork {
    @Volatile private var ferry: Ferry? = null
    @Volatile private var jobIds: JobIds? = null

    /** The process's manager, on `filesDir/ferry`. Use it for status, events, pause; never close it. */
    fun ferry(context: Context): Ferry = ferry ?: synchronized(this) {
        ferry ?: Ferry.open(File(context.applicationContext.filesDir, "ferry")).also { ferry = it }
    }

    /** The job and notification id allocator, in the state directory. */
    fun jobIds(context: Context): JobIds = jobIds ?: synchronized(this) {
        jobIds ?: JobIds.inStateDir(ferry(context).stateDir).also { jobIds = it }
    }

    /** The core's scheduler, wired to WorkManager and (Android 14+) JobScheduler. */
    fun downloads(context: Context): BackgroundDownloads {
        val app = context.applicationContext
        val uidt = if (Build.VERSION.SDK_INT >= 34) UidtJobScheduler(app) else null
        return BackgroundDownloads(ferry(app), WorkManagerScheduler(app), uidt, jobIds(app)) { platformState(app) }
    }

    /**
     * Enqueues a download that survives process death and returns its task id. Call it from a
     * user action with [userInitiated] true (a user-initiated job on Android 14+).
     */
    suspend fun enqueue(
        context: Context,
        request: DownloadRequest,
        network: NetworkPolicy = NetworkPolicy.ANY,
        userInitiated: Boolean = true,
    ): String = downloads(context).enqueue(request, network, userInitiated)

    /** At app start (e.g. in `Application.onCreate`, from a coroutine): see [BackgroundDownloads.reconcile]. */
    suspend fun reconcile(context: Context, networkOf: (String) -> NetworkPolicy = { NetworkPolicy.ANY }): ReconcilePlan =
        downloads(context).reconcile(networkOf)

    private fun platformState(context: Context): PlatformState {
        val canRunUidt = Build.VERSION.SDK_INT >= 34 &&
            context.getSystemService(JobScheduler::class.java).canRunUserInitiatedJobs()
        val me = ActivityManager.RunningAppProcessInfo().also(ActivityManager::getMyMemoryState)
        val visible = me.importance == ActivityManager.RunningAppProcessInfo.IMPORTANCE_FOREGROUND
        return PlatformState(Build.VERSION.SDK_INT, canRunUidt, visible)
    }
}
