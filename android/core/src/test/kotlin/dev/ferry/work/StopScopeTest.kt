package dev.ferry.work

import dev.ferry.ffi.StopCause
import kotlin.test.assertEquals
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import org.junit.Test

/**
 * Two workers on two tasks (WorkManager runs one work per task, several at once): stopping one
 * must leave the other running. (It failed while `request_stop` woke every budgeted run of the
 * process; the engine now ends only the runs of the tasks it stops.)
 */
class StopScopeTest : WorkTestBase() {
    @Test
    fun stoppingOneWorkerLeavesTheOtherRunning() = runTest(90_000) {
        val server = serve(size = 8 * MiB, rate = MiB)
        val ferry = openFerry()
        val a = ferry.enqueue(request(server, "a.bin", "a"))
        val b = ferry.enqueue(request(server, "b.bin", "b"))
        val env = WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds))
        val runA = async(Dispatchers.Default) { runWorker(WorkerInput(a), env) }
        val runB = async(Dispatchers.Default) { runWorker(WorkerInput(b), env) }
        eventually("both started") { ferry.status(a).bytes > 0u && ferry.status(b).bytes > 0u }
        assertEquals(1u, ferry.manager.requestStop(StopCause.STOPPED, listOf(a)))
        runA.cancel()
        assertEquals(WorkerResult.Success, runB.await(), "b's worker was not stopped (b is ${ferry.status(b).state})")
    }
}
