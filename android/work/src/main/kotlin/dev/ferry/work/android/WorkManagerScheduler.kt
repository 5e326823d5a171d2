// The core's WorkScheduler on WorkManager: builds the OneTimeWorkRequest the core's WorkPlan
// describes, field for field, and lists Ferry's unfinished works by tag.

package dev.ferry.work.android

import android.content.Context
import androidx.work.BackoffPolicy
import androidx.work.Constraints
import androidx.work.ExistingWorkPolicy
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.OutOfQuotaPolicy
import androidx.work.WorkManager
import androidx.work.workDataOf
import dev.ferry.work.WorkNames
import dev.ferry.work.WorkPlan
import dev.ferry.work.WorkScheduler
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.flow.first

/** WorkManager, for the core. */
class WorkManagerScheduler(context: Context) : WorkScheduler {
    private val workManager = WorkManager.getInstance(context)

    override fun enqueueUnique(plan: WorkPlan) {
        val constraints = Constraints.Builder()
            .setRequiredNetworkType(NetworkType.valueOf(plan.networkType.name))
            .setRequiresStorageNotLow(plan.requiresStorageNotLow)
            .build()
        val builder = OneTimeWorkRequestBuilder<FerryWorker>()
            .setInputData(workDataOf(*plan.input.toList().toTypedArray()))
            .setConstraints(constraints)
            .setBackoffCriteria(BackoffPolicy.EXPONENTIAL, plan.backoff.inWholeMilliseconds, TimeUnit.MILLISECONDS)
        plan.tags.forEach { builder.addTag(it) }
        if (plan.expedited) builder.setExpedited(OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST)
        workManager.enqueueUniqueWork(plan.uniqueName, ExistingWorkPolicy.valueOf(plan.existing.name), builder.build())
    }

    override fun cancelUnique(uniqueName: String) {
        workManager.cancelUniqueWork(uniqueName)
    }

    override suspend fun scheduledTaskIds(): Set<String> =
        workManager.getWorkInfosByTagFlow(WorkNames.TAG).first()
            .filter { !it.state.isFinished }
            .mapNotNull { WorkNames.taskIdOf(it.tags) }
            .toSet()
}
