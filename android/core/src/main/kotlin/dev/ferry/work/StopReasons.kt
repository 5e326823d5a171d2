// Why the platform stopped a worker or a job, as the engine's StopCause. The numbers are
// JobParameters' STOP_REASON_* (API 31), which WorkManager mirrors in WorkInfo; kept here as
// plain ints so the mapping is decided and tested on the JVM.

package dev.ferry.work

import dev.ferry.ffi.StopCause

/** The platform's stop reasons and their [StopCause]. */
object StopReasons {
    /** `STOP_REASON_CANCELLED_BY_APP`: the app cancelled the work or job. */
    const val CANCELLED_BY_APP: Int = 1

    /** `STOP_REASON_TIMEOUT`: the 10-minute limit (or a job's own). */
    const val TIMEOUT: Int = 3

    /** `STOP_REASON_CONSTRAINT_CONNECTIVITY`: the required network went away. */
    const val CONSTRAINT_CONNECTIVITY: Int = 7

    /** `STOP_REASON_QUOTA`: the app's job quota ran out. */
    const val QUOTA: Int = 10

    /** `STOP_REASON_USER`: the user stopped the app (Task Manager) or the job's notification. */
    const val USER: Int = 13

    /** WorkManager's `STOP_REASON_FOREGROUND_SERVICE_TIMEOUT`: Android 15's 6 h dataSync cap. */
    const val FOREGROUND_SERVICE_TIMEOUT: Int = -128

    /**
     * The cause to pass to `requestStop` for a platform stop [reason]: a lost network is
     * [StopCause.NETWORK_LOST], the app's own cancellation is [StopCause.APP], and everything else
     * (time, quota, standby, user, unknown or future values) is [StopCause.STOPPED]. Every cause
     * holds the task synced for the next run; the engine only records why.
     */
    fun causeOf(reason: Int): StopCause = when (reason) {
        CONSTRAINT_CONNECTIVITY -> StopCause.NETWORK_LOST
        CANCELLED_BY_APP -> StopCause.APP
        else -> StopCause.STOPPED
    }
}
