package dev.ferry.work

import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertIs
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlin.time.Duration.Companion.seconds
import org.junit.Test

/**
 * Scheduling rules: one unique work per task with only its id as input, constraints from the
 * network policy, expedited for what the user started with a fallback, continuations instead of
 * growing backoff, user-initiated jobs on Android 14+ with their fallbacks, persisted job ids.
 */
class SchedulingTest : WorkTestBase() {

    @Test
    fun oneUniqueWorkPerTaskWithOnlyItsIdAsInput() {
        val plan = WorkPlan.of("movie", NetworkPolicy.UNMETERED, userInitiated = true)
        assertEquals("ferry:movie", plan.uniqueName)
        assertEquals(setOf("ferry", "ferry:movie", "ferry-network:UNMETERED"), plan.tags)
        assertEquals(mapOf("ferry.taskId" to "movie"), plan.input)
        assertEquals(WorkNetworkType.UNMETERED, plan.networkType)
        assertTrue(plan.expedited && plan.requiresStorageNotLow)
        assertEquals(ExistingWork.KEEP, plan.existing)
        assertEquals(30.seconds, plan.backoff)
        assertEquals(false, WorkPlan.of("movie").expedited, "not user-initiated: plain work")
        assertEquals(WorkNetworkType.CONNECTED, NetworkPolicy.ANY.workNetworkType)
        assertEquals(WorkNetworkType.NOT_ROAMING, NetworkPolicy.NOT_ROAMING.workNetworkType)
        assertEquals(listOf(1, 2, 3), NetworkPolicy.entries.map { it.jobNetworkType })

        assertEquals("movie", WorkNames.taskIdOf(plan.tags + "dev.ferry.android.FerryWorker"))
        assertNull(WorkNames.taskIdOf(setOf("ferry", "other")))
        assertEquals(NetworkPolicy.UNMETERED, WorkNames.networkOf(plan.tags))
        assertEquals(NetworkPolicy.ANY, WorkNames.networkOf(setOf("ferry-network:BOGUS")))

        // The input is checked against Data's 10 KB before anything is built.
        val longest = "x".repeat(200) // the engine's limit on task ids
        assertTrue(estimatedDataBytes(WorkPlan.of(longest).input) < MAX_DATA_BYTES)
        assertFailsWith<IllegalArgumentException> { WorkPlan.of("y".repeat(4_000)) }
        assertFailsWith<IllegalArgumentException> { WorkerInput("") }
        assertEquals(WorkerInput("movie"), WorkerInput.from(plan.input::get))
        assertNull(WorkerInput.from { null })
    }

    @Test
    fun expeditedWorkFallsBackToPlainWorkWhenRefused() {
        val scheduler = FakeWorkScheduler(refuseExpedited = true)
        val enqueued = scheduler.schedule(WorkPlan.of("a", userInitiated = true))
        assertEquals(false, enqueued.expedited)
        assertEquals(listOf("ferry:a"), scheduler.works.keys.toList())
        val failing = FakeWorkScheduler(failEnqueue = true)
        assertFailsWith<IllegalStateException> { failing.schedule(WorkPlan.of("b")) }
    }

    @Test
    fun aRunStoppedForTimeContinuesAtOnceAndOtherRetriesBackOff() {
        val scheduler = FakeWorkScheduler()
        val tags = WorkPlan.of("a", NetworkPolicy.NOT_ROAMING, userInitiated = true).tags
        val verdict = scheduler.settle(WorkerResult.Retry(0, "the run's budget is spent"), "a", tags)
        assertEquals(WorkVerdict.Success, verdict, "succeed, the continuation follows")
        val continuation = scheduler.enqueued.single()
        assertEquals(ExistingWork.APPEND_OR_REPLACE, continuation.existing)
        assertEquals(NetworkPolicy.NOT_ROAMING, continuation.network, "same constraint")
        assertEquals(false, continuation.expedited)

        assertEquals(WorkVerdict.Retry, scheduler.settle(WorkerResult.Retry(30_000, "503"), "a", tags))
        assertEquals(1, scheduler.enqueued.size, "a transient failure uses WorkManager's backoff")
        scheduler.failEnqueue = true
        assertEquals(WorkVerdict.Retry, scheduler.settle(WorkerResult.Retry(0, "budget"), "a", tags), "no continuation: retry")
        assertEquals(WorkVerdict.Success, scheduler.settle(WorkerResult.Success, "a", tags))
        val failure = scheduler.settle(WorkerResult.Failure(2004, "404"), "a", tags)
        assertEquals(WorkVerdict.Failure(mapOf("ferry.code" to 2004, "ferry.message" to "404")), failure)
    }

    @Test
    fun userInitiatedJobsOnlyOnAndroid14WithThePermissionWhileVisible() {
        fun route(sdk: Int, permission: Boolean = true, visible: Boolean = true, user: Boolean = true) =
            UidtPolicy.route(PlatformState(sdk, permission, visible), user)
        assertEquals(Route.UIDT, route(34))
        assertEquals(Route.UIDT, route(36))
        assertEquals(Route.WORK_MANAGER, route(33), "Android 13: no UIDT")
        assertEquals(Route.WORK_MANAGER, route(34, permission = false))
        assertEquals(Route.WORK_MANAGER, route(34, visible = false), "scheduling UIDT from the background fails")
        assertEquals(Route.WORK_MANAGER, route(34, user = false), "the app's own downloads are not user-initiated")
        val request = UidtRequest(7, "movie", NetworkPolicy.UNMETERED, -1)
        assertTrue(request.userInitiated, "setUserInitiated(true), which background_downloader forgot")
        assertEquals(2, request.networkType, "a UIDT job must name a network")
        assertEquals(mapOf("ferry.taskId" to "movie"), request.extras)
    }

    @Test
    fun schedulingPicksAJobAndFallsBackToWorkManager() = runTest {
        val server = serve(size = MiB, rate = 64 * 1024)
        val ferry = openFerry()
        val jobIds = JobIds(File(tmp.root, "ids"))
        val work = FakeWorkScheduler()
        val uidt = FakeUidtScheduler()
        var platform = PlatformState(34, canRunUserInitiatedJobs = true, appVisible = true)
        val downloads = BackgroundDownloads(ferry, work, uidt, jobIds) { platform }

        val a = downloads.enqueue(request(server, "a.bin", "a"), NetworkPolicy.UNMETERED)
        assertEquals(mapOf("a" to jobIds.idFor("a")), uidt.jobs)
        assertEquals(2, uidt.requests.single().networkType)
        assertTrue(work.works.isEmpty())
        assertEquals(Scheduled(Route.UIDT, jobId = jobIds.idFor(a)), downloads.schedule(a, userInitiated = true))
        assertEquals(1, uidt.requests.size, "an existing job is kept, never scheduled again (that would stop it)")

        uidt.answer = { false } // RESULT_FAILURE: the app is not visible after all
        downloads.enqueue(request(server, "b.bin", "b"))
        assertEquals(setOf("ferry:b"), work.works.keys)
        assertTrue(work.works.getValue("ferry:b").expedited)

        uidt.answer = { throw SecurityException("RUN_USER_INITIATED_JOBS required") }
        val c = downloads.enqueue(request(server, "c.bin", "c"))
        assertEquals(Scheduled(Route.WORK_MANAGER, expedited = true), downloads.schedule(c, userInitiated = true))
        assertEquals(setOf("ferry:b", "ferry:c"), work.works.keys)
        val tried = uidt.requests.size

        platform = PlatformState(33, canRunUserInitiatedJobs = false, appVisible = true)
        work.refuseExpedited = true
        val d = downloads.enqueue(request(server, "d.bin", "d"))
        assertEquals(false, work.works.getValue("ferry:$d").expedited, "expedited refused: plain work")
        assertEquals(tried, uidt.requests.size, "no job tried on Android 13")

        downloads.cancel("a")
        assertTrue("a" !in uidt.jobs && "ferry:a" in work.cancelled)
    }

    @Test
    fun jobIdsComeFromAPersistedCounter() {
        val file = File(tmp.root, "android-job-ids")
        val ids = JobIds(file, first = 10, last = 12)
        assertEquals(10, ids.idFor("a"))
        assertEquals(11, ids.idFor("b"))
        assertEquals(10, ids.idFor("a"), "a task keeps its id")
        val again = JobIds(file, first = 10, last = 12)
        assertEquals(mapOf("a" to 10, "b" to 11), again.all(), "read back after a restart")
        assertEquals(12, again.idFor("c"))
        assertFailsWith<IllegalStateException> { again.idFor("d") }
        again.retain(setOf("b", "c"))
        assertEquals(10, again.idFor("d"), "wraps around to a freed id, never one in use")
        assertEquals("d", JobIds(file, 10, 12).taskOf(10))
        assertEquals(File(tmp.root, JobIds.FILE_NAME).path, file.path)
        assertIs<JobIds>(JobIds.inStateDir(tmp.root))
    }
}
