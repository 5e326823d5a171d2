package dev.ferry

import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.EventListener
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.TaskState
import java.io.File
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.flow.transformWhile
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/** The event Flow, and listeners that misbehave. */
class EventsTest : FerryTestBase() {

    @Test
    fun eventFlowDeliversProgressAndCompletion() = runTest {
        val server = serve(size = 4 * MiB, rate = 2_000_000)
        val ferry = openFerry(ManagerConfig(progressIntervalMs = 50u))
        val dest = File(tmp.root, "events.bin")
        val collected = async {
            ferry.events("watched")
                .transformWhile { emit(it); !it.isTransitionTo(TaskState.COMPLETED) }
                .toList()
        }
        eventually("the listener to be registered") { ferry.activeEventFlows == 1 }

        ferry.enqueue(DownloadRequest(url = server.url, destination = dest.path, taskId = "watched", connections = 2u))
        val events = collected.await()

        val states = events.filterIsInstance<DownloadEvent.StateChanged>()
        assertEquals(listOf(TaskState.QUEUED, TaskState.RUNNING, TaskState.COMPLETED), states.map { it.to })
        assertEquals(null, states.first().from, "a new task has no previous state")
        val progress = events.filterIsInstance<DownloadEvent.Progress>()
        assertTrue(progress.size >= 3, "progress events: ${progress.size}")
        assertTrue(progress.all { it.taskId == "watched" }, "only the watched task")
        assertTrue(progress.all { it.total.let { total -> total == null || total.toLong() == server.size } }, "totals: $progress")
        assertTrue(progress.zipWithNext().all { (a, b) -> a.bytes <= b.bytes }, "bytes never go back: $progress")
        assertTrue(progress.any { it.bytes > 0uL && it.progress > 0.0 }, "progress moves: $progress")
        assertEquals(server.sha256, sha256(dest))
        eventually("the listener to be removed") { ferry.activeEventFlows == 0 }
    }

    @Test
    fun closingFerryEndsItsEventFlows() = runTest {
        val ferry = openFerry()
        val collected = async { ferry.events.toList() }
        eventually("the listener to be registered") { ferry.activeEventFlows == 1 }

        ferry.close()

        assertEquals(emptyList(), collected.await())
        assertEquals(0, ferry.activeEventFlows)
    }

    @Test
    fun throwingListenerDoesNotStopTheEngine() = runTest {
        val server = serve(size = 2 * MiB, rate = 4_000_000)
        val ferry = openFerry(ManagerConfig(progressIntervalMs = 50u))
        val calls = AtomicInteger()
        val registration = ferry.manager.addListener(object : EventListener {
            override fun onEvent(event: DownloadEvent) {
                calls.incrementAndGet()
                throw IllegalStateException("listener failure #${calls.get()} (expected by the test)")
            }
        })
        try {
            val first = ferry.download(server.url, File(tmp.root, "one.bin"), sha256 = server.sha256)
            val second = ferry.download(server.url, File(tmp.root, "two.bin"), sha256 = server.sha256)

            assertEquals(TaskState.COMPLETED, first.state)
            assertEquals(TaskState.COMPLETED, second.state)
            // Queued, running and completed for each task: the listener kept receiving after throwing.
            eventually("the throwing listener to see every state change") { calls.get() >= 6 }
            assertTrue(!registration.isCancelled())
        } finally {
            registration.cancel()
            registration.destroy()
        }
    }
}
