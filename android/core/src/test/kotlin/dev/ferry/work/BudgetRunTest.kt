package dev.ferry.work

import dev.ferry.ffi.TaskState
import java.io.File
import java.util.Collections
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertTrue
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.minutes
import kotlin.time.Duration.Companion.seconds
import kotlinx.coroutines.delay
import org.junit.Test

/**
 * A worker run that spends its budget mid-download stops synced and asks to continue; the next
 * run finishes from the journal, byte-exact, with almost nothing fetched twice. Foreground status
 * decides the budget, and a refusal (Android 12+ from the background) only shortens it.
 */
class BudgetRunTest : WorkTestBase() {

    @Test
    fun aRunThatSpendsItsBudgetRetriesAndTheNextRunFinishesByteExact() = runTest(90_000) {
        val size = 16 * MiB
        val server = serve(size = size, rate = 2 * MiB)
        val ferry = openFerry()
        val id = ferry.enqueue(request(server, "budget.bin", "budget"))
        val reported = Collections.synchronizedList(mutableListOf<WorkerProgress>())
        val env = WorkerEnvironment(
            openFerry = { ferry },
            progress = { reported += it },
            budgets = RunBudgets(background = 1500.milliseconds, foreground = 10.minutes),
            progressInterval = 100.milliseconds,
        )

        val first = runWorker(WorkerInput(id), env)
        val retry = assertIs<WorkerResult.Retry>(first)
        assertTrue(retry.continueNow, "budget spent: continue at once, $retry")
        val held = ferry.status(id)
        assertEquals(TaskState.QUEUED, held.state, "held for the next run")
        assertTrue(held.bytes.toLong() in 1 until size, "stopped mid-download at ${held.bytes}")
        delay(300)
        assertEquals(held.bytes, ferry.status(id).bytes, "a held task does not start again by itself")
        assertTrue(reported.size >= 2 && reported.last().bytes == held.bytes.toLong(), "progress reported: $reported")

        val second = runWorker(WorkerInput(id), env.copy(budgets = RunBudgets(background = 60.seconds)))
        assertEquals(WorkerResult.Success, second)
        assertEquals(server.sha256, sha256(File(tmp.root, "budget.bin")), "byte-exact")
        val sent = server.stats.bodyBytes
        println("BudgetRunTest: fetched twice across a budget stop: ${sent - size} bytes (stopped at ${held.bytes} of $size)")
        assertTrue(sent <= size + MiB, "almost nothing fetched twice: $sent bytes sent for $size")
    }

    @Test
    fun foregroundStatusGivesTheLongBudgetAndARefusalTheShortOne() = runTest {
        val server = serve(size = 8 * MiB, rate = MiB)
        val ferry = openFerry()
        val budgets = RunBudgets(background = 700.milliseconds, foreground = 60.seconds)
        assertEquals(60.seconds, budgets.of(ForegroundGrant.GRANTED))
        assertEquals(700.milliseconds, budgets.of(ForegroundGrant.REFUSED))

        // Refused by throwing, as setForeground does from the background on Android 12+: the run goes on.
        val refused = ferry.enqueue(request(server, "refused.bin", "refused"))
        var asked = 0
        val throwing = ForegroundRequester { asked++; throw IllegalStateException("ForegroundServiceStartNotAllowedException") }
        val started = System.nanoTime()
        val result = runWorker(WorkerInput(refused), WorkerEnvironment({ ferry }, foreground = throwing, budgets = budgets))
        assertEquals(1, asked)
        assertIs<WorkerResult.Retry>(result, "ran within the background budget")
        assertTrue((System.nanoTime() - started) / 1_000_000 < 10_000, "stopped near its 0.7 s budget")

        // Granted: the long budget, enough to finish.
        val granted = ForegroundRequester { ForegroundGrant.GRANTED }
        assertEquals(WorkerResult.Success, runWorker(WorkerInput(refused), WorkerEnvironment({ ferry }, foreground = granted, budgets = budgets)))
        assertEquals(server.sha256, sha256(File(tmp.root, "refused.bin")))

        // A task with nothing to do is not worth a notification.
        asked = 0
        assertEquals(WorkerResult.Success, runWorker(WorkerInput(refused), WorkerEnvironment({ ferry }, foreground = throwing)))
        assertEquals(WorkerResult.Success, runWorker(WorkerInput("nobody"), WorkerEnvironment({ ferry }, foreground = throwing)))
        assertEquals(0, asked, "no foreground request for a completed or unknown task")
    }
}

/** A copy of an environment with other budgets. */
fun WorkerEnvironment.copy(budgets: RunBudgets): WorkerEnvironment =
    WorkerEnvironment(openFerry, foreground, progress, budgets, stopCause, progressInterval, stopTimeout)
