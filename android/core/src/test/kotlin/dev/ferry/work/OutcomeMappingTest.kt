package dev.ferry.work

import dev.ferry.FerryException
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.RunOutcome
import dev.ferry.ffi.StopCause
import dev.ferry.ffi.TaskErrorInfo
import dev.ferry.ffi.TaskRunOutcome
import dev.ferry.number
import java.io.File
import java.util.concurrent.TimeUnit
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertTrue
import kotlin.time.Duration.Companion.seconds
import org.junit.Assume.assumeTrue
import org.junit.Test

/**
 * Each way a task ends, as the platform sees it: a 404, a checksum mismatch and a full disk are
 * failures with their codes; a 503 or a lost network is a retry later; a spent budget continues at
 * once; paused, cancelled and unknown tasks are successes (nothing to do).
 */
class OutcomeMappingTest : WorkTestBase() {

    private fun outcome(o: RunOutcome) = listOf(TaskRunOutcome("t", o))
    private fun error(code: ErrorCode, message: String = "m") = TaskErrorInfo(code, message, null)

    @Test
    fun theMappingRules() {
        assertEquals(WorkerResult.Success, WorkerResult.of(outcome(RunOutcome.Completed)))
        assertEquals(WorkerResult.Success, WorkerResult.of(outcome(RunOutcome.Paused)))
        assertEquals(WorkerResult.Success, WorkerResult.of(outcome(RunOutcome.Cancelled)))
        assertEquals(WorkerResult.Success, WorkerResult.of(outcome(RunOutcome.NotFound)))
        assertEquals(WorkerResult.Success, WorkerResult.of(emptyList()))

        val notFound = WorkerResult.of(outcome(RunOutcome.Failed(error(ErrorCode.NOT_FOUND, "HTTP 404"))))
        assertEquals(WorkerResult.Failure(2004, "HTTP 404"), notFound)
        val diskFull = WorkerResult.of(outcome(RunOutcome.Failed(error(ErrorCode.DISK_FULL, "no space left"))))
        assertEquals(WorkerResult.Failure(3001, "no space left"), diskFull)
        assertEquals(mapOf(WorkerResult.KEY_CODE to 3001, WorkerResult.KEY_MESSAGE to "no space left"), (diskFull as WorkerResult.Failure).toMap())
        val checksum = WorkerResult.of(outcome(RunOutcome.Failed(error(ErrorCode.CHECKSUM_MISMATCH))))
        assertEquals(4001, (checksum as WorkerResult.Failure).code)

        val lostNetwork = WorkerResult.of(outcome(RunOutcome.Retry(error(ErrorCode.NETWORK), 30_000u, "transient")))
        assertIs<WorkerResult.Retry>(lostNetwork)
        assertEquals(30_000, lostNetwork.delayMs)
        assertTrue(!lostNetwork.continueNow && lostNetwork.wantsReschedule)
        val budget = WorkerResult.of(outcome(RunOutcome.Retry(null, 0u, "the run's budget is spent")))
        assertTrue((budget as WorkerResult.Retry).continueNow)

        // Several tasks: work remaining wins, then a failure, with the shortest delay.
        val mixed = listOf(
            TaskRunOutcome("a", RunOutcome.Failed(error(ErrorCode.NOT_FOUND))),
            TaskRunOutcome("b", RunOutcome.Retry(null, 5_000u, "later")),
            TaskRunOutcome("c", RunOutcome.Retry(null, 0u, "now")),
            TaskRunOutcome("d", RunOutcome.Completed),
        )
        assertEquals(0, (WorkerResult.of(mixed) as WorkerResult.Retry).delayMs)
        assertIs<WorkerResult.Failure>(WorkerResult.of(mixed.filter { it.outcome !is RunOutcome.Retry }))

        // The output fits WorkManager's 10 KB Data.
        val long = WorkerResult.Failure(9001, "x".repeat(50_000)).toMap()
        assertEquals(WorkerResult.MAX_MESSAGE_CHARS, (long[WorkerResult.KEY_MESSAGE] as String).length)

        // The table could not be opened: a lock held elsewhere clears up, the rest does not.
        assertIs<WorkerResult.Retry>(WorkerResult.of(FerryException(ErrorCode.STATE_DIR_LOCKED, "locked")))
        assertEquals(WorkerResult.Failure(3005, "corrupt"), WorkerResult.of(FerryException(ErrorCode.DATABASE, "corrupt")))

        // Stop reasons.
        assertEquals(StopCause.NETWORK_LOST, StopReasons.causeOf(7))
        assertEquals(StopCause.APP, StopReasons.causeOf(1))
        listOf(3, 10, 12, 13, -128, 0, 99).forEach { assertEquals(StopCause.STOPPED, StopReasons.causeOf(it), "reason $it") }
    }

    @Test
    fun realRunsOf404And503AndAWrongChecksum() = runTest(90_000) {
        val server = serve(size = MiB)
        val ferry = openFerry(ManagerConfig(retryBudget = 2u, retryBaseDelayMs = 50u))
        fun req(path: String, id: String, sha256: String? = null) =
            DownloadRequest(url = server.base + path, destination = File(tmp.root, "$id.bin").path, taskId = id, sha256 = sha256)
        val env = WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds))

        val missing = runWorker(WorkerInput(ferry.enqueue(req("/status/404", "missing"))), env)
        assertEquals(ErrorCode.NOT_FOUND.number, (missing as WorkerResult.Failure).code, "$missing")

        val busy = runWorker(WorkerInput(ferry.enqueue(req("/status/503", "busy"))), env)
        assertIs<WorkerResult.Retry>(busy, "a 503 is retried later")
        assertEquals(ErrorCode.SERVER_ERROR, busy.error?.code)
        assertTrue(!busy.continueNow && busy.delayMs > 0, "after a delay: $busy")
        assertTrue(busy.error!!.code in TRANSIENT_CODES, "reconcile treats what the engine retries as transient")

        val wrong = runWorker(WorkerInput(ferry.enqueue(req("/file", "wrong", sha256 = "0".repeat(64)))), env)
        assertEquals(ErrorCode.CHECKSUM_MISMATCH.number, (wrong as WorkerResult.Failure).code, "$wrong")
        assertTrue(ErrorCode.NOT_FOUND !in TRANSIENT_CODES && ErrorCode.CHECKSUM_MISMATCH !in TRANSIENT_CODES)
    }

    /**
     * A real full disk: the destination on a 2 MiB tmpfs. Needs root and mount(8) (CI runs as
     * root); skipped when the mount fails.
     */
    @Test
    fun aFullDiskIsAFailureWithItsCode() = runTest(90_000) {
        val mountPoint = tmp.newFolder("tiny")
        val mounted = run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint.path)
        assumeTrue("cannot mount a tmpfs here (not root?): skipped", mounted)
        try {
            val server = serve(size = 8 * MiB)
            val ferry = openFerry()
            val id = ferry.enqueue(DownloadRequest(url = server.url, destination = File(mountPoint, "full.bin").path, taskId = "full"))
            val result = runWorker(WorkerInput(id), WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds)))
            println("OutcomeMappingTest: 8 MiB into a 2 MiB tmpfs: $result")
            assertEquals(WorkerResult.Failure(3001, (result as? WorkerResult.Failure)?.message ?: ""), result, "$result")
        } finally {
            closeEverything()
            if (!run("umount", mountPoint.path)) run("umount", "-l", mountPoint.path)
        }
    }

    private fun run(vararg command: String): Boolean = try {
        val p = ProcessBuilder(*command).redirectErrorStream(true).start()
        p.inputStream.readBytes()
        p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0
    } catch (e: java.io.IOException) {
        false
    }
}
