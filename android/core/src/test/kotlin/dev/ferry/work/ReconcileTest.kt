package dev.ferry.work

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.TaskErrorInfo
import dev.ferry.ffi.TaskState
import dev.ferry.ffi.TaskStatus
import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import org.junit.Test

/**
 * App-start reconcile: tasks that need a run get work, works and jobs of tasks that need none are
 * cancelled; and a task the app runs while a worker runs it too is downloaded once.
 */
class ReconcileTest : WorkTestBase() {

    private fun status(id: String, state: TaskState, error: ErrorCode? = null, output: String = "file") = TaskStatus(
        taskId = id, url = "http://127.0.0.1/file", destination = "/d/$id", output = output, state = state,
        progress = 0.0, bytes = 0u, total = null, speed = 0.0, etaSeconds = null, connections = 0u,
        error = error?.let { TaskErrorInfo(it, "e", null) }, priority = 0, createdMs = 0, updatedMs = 0, handedOff = false,
        networkPolicy = dev.ferry.ffi.NetworkPolicy.ANY, waiting = null,
    )

    @Test
    fun thePlanFromASnapshot() {
        val tasks = listOf(
            status("queued", TaskState.QUEUED),
            status("running", TaskState.RUNNING),
            status("scheduled", TaskState.QUEUED),
            status("transient", TaskState.FAILED, ErrorCode.NETWORK),
            status("permanent", TaskState.FAILED, ErrorCode.NOT_FOUND),
            status("paused", TaskState.PAUSED),
            status("done", TaskState.COMPLETED),
            status("cancelled", TaskState.CANCELLED),
            status("memory", TaskState.RUNNING, output = "memory"),
        )
        val plan = planReconcile(tasks, setOf("scheduled", "done", "paused", "permanent", "ghost"))
        assertEquals(listOf("queued", "running", "transient"), plan.schedule)
        assertEquals(listOf("done", "ghost", "paused", "permanent"), plan.cancel)
        assertEquals(ReconcilePlan(emptyList(), emptyList()), planReconcile(emptyList(), emptySet()))
    }

    @Test
    fun missingWorkIsScheduledAndOrphansAreCancelled() = runTest(60_000) {
        val server = serve(size = 64 * 1024)
        val slow = serve(size = 8 * MiB, rate = 64 * 1024)
        val ferry = openFerry(ManagerConfig(retryBudget = 1u, retryBaseDelayMs = 10u))
        fun req(url: String, id: String) = DownloadRequest(url = url, destination = File(tmp.root, "$id.bin").path, taskId = id)
        val done = ferry.enqueue(req(server.url, "done"))
        val missing = ferry.enqueue(req(server.base + "/status/404", "missing"))
        val busy = ferry.enqueue(req(server.base + "/status/503", "busy"))
        val paused = ferry.enqueue(req(slow.url, "paused")).also { ferry.pause(it) }
        val queued = ferry.enqueue(req(slow.url, "queued"))
        val kept = ferry.enqueue(req(slow.url, "kept"))
        listOf(done, missing, busy).forEach { ferry.await(it) }
        assertEquals(TaskState.FAILED, ferry.status(busy).state)

        val work = FakeWorkScheduler()
        val uidt = FakeUidtScheduler()
        val jobIds = JobIds(File(tmp.root, "ids"))
        listOf(done, missing, kept, "ghost").forEach { work.enqueueUnique(WorkPlan.of(it)) }
        uidt.jobs[paused] = jobIds.idFor(paused)
        uidt.jobs["gone"] = jobIds.idFor("gone")
        work.enqueued.clear()
        val downloads = BackgroundDownloads(ferry, work, uidt, jobIds) { PlatformState(34, true, true) }

        val plan = downloads.reconcile { if (it == queued) NetworkPolicy.UNMETERED else NetworkPolicy.ANY }
        assertEquals(setOf(queued, busy), plan.schedule.toSet(), "queued and transiently failed tasks without work")
        assertEquals(setOf(done, missing, paused, "ghost", "gone"), plan.cancel.toSet())
        assertEquals(setOf("ferry:$queued", "ferry:$busy", "ferry:$kept"), work.works.keys, "what is left scheduled")
        assertTrue(work.enqueued.none { it.expedited }, "reconcile is not a user action: plain work, never a job")
        assertEquals(NetworkPolicy.UNMETERED, work.works.getValue("ferry:$queued").network)
        assertTrue(uidt.jobs.isEmpty() && uidt.requests.isEmpty())
        assertEquals(emptyMap(), jobIds.all(), "the orphans' job ids are free again")

        val again = downloads.reconcile()
        assertEquals(ReconcilePlan(emptyList(), emptyList()), again, "a second pass finds nothing to do")
    }

    @Test
    fun aTaskStartedByTheAppAndByAWorkerAtOnceIsDownloadedOnce() = runTest(60_000) {
        val size = 8 * MiB
        val server = serve(size = size, rate = 2 * MiB)
        val ferry = openFerry()
        val work = FakeWorkScheduler()
        val downloads = BackgroundDownloads(ferry, work) { PlatformState(30, false, true) }
        val env = WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds))

        // The app enqueues (the engine starts it in-process), WorkManager runs the expedited work at
        // once, a second worker (a continuation, a job) joins too, and the user taps again.
        val id = downloads.enqueue(request(server, "both.bin", "both"))
        val worker = async(Dispatchers.Default) { runWorker(WorkerInput(id), env) }
        val secondWorker = async(Dispatchers.Default) { runWorker(WorkerInput(id), env) }
        assertEquals(id, downloads.enqueue(request(server, "both.bin", "both")))
        assertEquals(setOf("ferry:$id"), work.works.keys, "still one unique work")
        val app = async { ferry.await(id) }
        assertEquals(TaskState.COMPLETED, app.await().state)
        val results = listOf(worker.await(), secondWorker.await())
        assertTrue(results.all { it == WorkerResult.Success }, "$results")
        assertEquals(server.sha256, sha256(File(tmp.root, "both.bin")))
        val sent = server.stats.bodyBytes
        println("ReconcileTest: app + 2 workers on one task: $sent bytes sent for $size")
        assertTrue(sent <= size + MiB, "one download, not two or three: $sent bytes sent for $size")
    }
}
