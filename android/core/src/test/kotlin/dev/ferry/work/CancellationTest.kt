package dev.ferry.work

import dev.ferry.ffi.StopCause
import dev.ferry.ffi.TaskState
import java.io.File
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import org.junit.Test

/**
 * Cancelling the worker's coroutine (WorkManager stopping it, `onStopJob`) cannot cancel the Rust
 * future; the run turns it into a stop request, so the transfer stops within a bounded time, the
 * journal is synced, and the task waits, held, for the next run.
 */
class CancellationTest : WorkTestBase() {

    @Test
    fun cancellingTheWorkerStopsTheTransferWithTheJournalSynced() = runTest(90_000) {
        val size = 24 * MiB
        val server = serve(size = size, rate = MiB)
        val stateDir = tmp.newFolder()
        val ferry = openFerry(stateDir = stateDir)
        val id = ferry.enqueue(request(server, "cancel.bin", "cancel"))
        var causeAsked = 0
        val env = WorkerEnvironment(
            openFerry = { ferry },
            budgets = RunBudgets(background = 600.seconds),
            stopCause = { causeAsked++; StopReasons.causeOf(StopReasons.CONSTRAINT_CONNECTIVITY) },
        )
        val run = async(Dispatchers.Default) { runWorker(WorkerInput(id), env) }
        eventually("1 MiB fetched") { ferry.status(id).bytes.toLong() >= MiB }

        val cancelledAt = System.nanoTime()
        run.cancel()
        val thrown = runCatching { run.await() }.exceptionOrNull()
        val tookMs = (System.nanoTime() - cancelledAt) / 1_000_000
        assertTrue(thrown is CancellationException, "the cancellation is rethrown: $thrown")
        assertEquals(1, causeAsked, "the stop cause was asked once")
        assertTrue(tookMs < 10_000, "the run ended $tookMs ms after the cancellation")

        val held = ferry.status(id)
        assertEquals(TaskState.QUEUED, held.state, "held for the next run, not failed")
        val sentAtStop = server.stats.bodyBytes
        delay(1_000)
        assertEquals(sentAtStop, server.stats.bodyBytes, "no byte sent after the stop")
        assertEquals(held.bytes, ferry.status(id).bytes, "no byte written after the stop")

        val journaled = journaledBytes(stateDir).getValue(id)
        println("CancellationTest: stopped ${tookMs} ms after the cancellation; ${held.bytes} bytes written, $journaled journaled")
        assertTrue(journaled > 0 && held.bytes.toLong() - journaled < MiB, "journal synced at the stop: $journaled of ${held.bytes}")

        // The next run continues from there.
        val fast = WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds))
        assertEquals(WorkerResult.Success, runWorker(WorkerInput(id), fast))
        assertEquals(server.sha256, sha256(File(tmp.root, "cancel.bin")))
        assertEquals(StopCause.NETWORK_LOST, StopReasons.causeOf(StopReasons.CONSTRAINT_CONNECTIVITY))
    }
}
