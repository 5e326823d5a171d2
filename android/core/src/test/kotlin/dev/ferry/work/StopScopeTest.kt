package dev.ferry.work

import dev.ferry.ffi.StopCause
import kotlin.test.assertEquals
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import org.junit.Ignore
import org.junit.Test

/**
 * Two workers on two tasks (WorkManager runs one work per task, several at once): stopping one
 * must leave the other running.
 *
 * Ignored: it fails against the engine as it is. `request_stop` ends with
 * `stop_requested.notify_waiters()`, which wakes every `run_budgeted` in the process, and each
 * woken run then holds all of its own tasks (src/engine/run/manager/budget.rs). So
 * `requestStop(listOf("a"))` returns 1, yet b's run ends with `Retry(0, "a stop was requested")`
 * and b is held. Reported to the engine's owners; remove the @Ignore with the fix. Until then the
 * harm is bounded: b's worker appends its continuation and carries on from the journal at once.
 */
class StopScopeTest : WorkTestBase() {
    @Ignore("engine: request_stop wakes every budgeted run, not only those of the given tasks")
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
        assertEquals(1u, ferry.manager.requestStop(listOf(a), StopCause.STOPPED))
        runA.cancel()
        assertEquals(WorkerResult.Success, runB.await(), "b's worker was not stopped (b is ${ferry.status(b).state})")
    }
}
