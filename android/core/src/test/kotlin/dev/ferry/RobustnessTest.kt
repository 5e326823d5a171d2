package dev.ferry

import dev.ferry.ffi.BatchItem
import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.EventListener
import dev.ferry.ffi.HttpHeader
import dev.ferry.ffi.Limits
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.TaskState
import java.io.File
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.flow.transformWhile
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.withTimeoutOrNull
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

/**
 * Real-world misuse and stress: many threads on one manager, misbehaving listeners, abandoned flows
 * and coroutines, closing while downloads run, another handle shutting the manager down, hostile
 * strings, a big batch.
 */
class RobustnessTest : FerryTestBase() {

    /** Threads of this process named `ferry-listener` (one per live engine listener). */
    private fun listenerThreads(): Int = File("/proc/self/task").listFiles().orEmpty().count { task ->
        runCatching { File(task, "comm").readText().trim() == "ferry-listener" }.getOrDefault(false)
    }

    @Test
    fun manyThreadsCallingOneManagerAtOnce() = runTest {
        val server = serve(size = MiB, rate = 4_000_000)
        val ferry = openFerry()
        val requests = (0 until 8).map { downloadRequest(server.url, File(tmp.root, "$it.bin"), taskId = "t$it") }
        requests.forEach { ferry.enqueue(it) }
        val errors = Collections.synchronizedList(mutableListOf<Throwable>())
        val pool = Executors.newFixedThreadPool(16)
        val end = System.nanoTime() + 1_500_000_000L
        repeat(16) { worker ->
            pool.execute {
                var op = 0
                while (System.nanoTime() < end) {
                    val request = requests[(worker + op) % requests.size]
                    val id = request.taskId!!
                    try {
                        runBlocking {
                            when (op % 4) {
                                0 -> ferry.status(id)
                                1 -> ferry.pause(id)
                                2 -> ferry.resume(id)
                                else -> ferry.list()
                            }
                            // The same request again is idempotent, whatever state the task is in.
                            assertEquals(id, ferry.enqueue(request))
                        }
                    } catch (e: FerryException) {
                        if (e.code != ErrorCode.INVALID_STATE) errors += e // e.g. pausing a completed task
                    } catch (e: Throwable) {
                        errors += e
                    }
                    op++
                }
            }
        }
        pool.shutdown()
        assertTrue(pool.awaitTermination(30, TimeUnit.SECONDS), "a caller thread is stuck")
        assertEquals(emptyList(), errors.toList())
        ferry.resumeAll()
        for (request in requests) {
            assertEquals(TaskState.COMPLETED, ferry.await(request.taskId!!).state)
            assertEquals(server.sha256, sha256(File(request.destination!!)))
        }
    }

    @Test
    fun throwingAndBlockingListenersDoNotDelayOthers() = runTest {
        val server = serve(size = 256 * 1024)
        val ferry = openFerry()
        val release = CountDownLatch(1)
        val thrower = ferry.manager.addListener(object : EventListener {
            override fun onEvent(event: DownloadEvent) = throw IllegalStateException("throws on every event (expected)")
        })
        val blocker = ferry.manager.addListener(object : EventListener {
            override fun onEvent(event: DownloadEvent) {
                release.await(10, TimeUnit.SECONDS)
            }
        })
        try {
            val states = async {
                ferry.events.transformWhile { event ->
                    if (event is DownloadEvent.StateChanged) emit(event.to)
                    !event.isTransitionTo(TaskState.COMPLETED)
                }.toList()
            }
            eventually("the flow's listener") { ferry.activeEventFlows == 1 }
            val started = System.nanoTime()
            assertEquals(TaskState.COMPLETED, ferry.download(server.url, File(tmp.root, "x.bin")).state)
            assertEquals(listOf(TaskState.QUEUED, TaskState.RUNNING, TaskState.COMPLETED), withTimeout(5_000) { states.await() })
            assertTrue(System.nanoTime() - started < 8_000_000_000L, "the blocked listener held things up")
        } finally {
            release.countDown()
            thrower.destroy()
            blocker.destroy()
        }
    }

    @Test
    fun listenersAddedAndDroppedInALoopLeaveNoThreadBehind() = runTest {
        val ferry = openFerry()
        val before = listenerThreads()
        val quiet = object : EventListener {
            override fun onEvent(event: DownloadEvent) {}
        }
        repeat(1000) { i ->
            val registration = ferry.manager.addListener(quiet)
            when (i % 3) {
                0 -> registration.destroy() // released at once
                1 -> registration.cancel() // cancelled, released by the garbage collector
                else -> {} // only dropped: the garbage collector's cleaner cancels it
            }
        }
        System.gc()
        eventually("every listener thread to end", timeoutMs = 30_000) {
            System.gc()
            listenerThreads() <= before
        }
    }

    @Test
    fun abandonedFlowsLeaveNothingBehind() = runTest {
        val server = serve(size = 64 * 1024)
        val ferry = openFerry()
        val before = listenerThreads()
        val firstEvents = (0 until 50).map { async { ferry.events.first() } }
        val completed = async { ferry.events.first { it.isTransitionTo(TaskState.COMPLETED) } }
        eventually("51 collectors") { ferry.activeEventFlows == 51 }
        ferry.enqueue(server.url, File(tmp.root, "a.bin"))
        firstEvents.forEach { assertTrue(it.await() is DownloadEvent.StateChanged) }
        // The collectors below must meet silence: a late RUNNING or COMPLETED would end one early.
        withTimeout(10_000) { completed.await() }
        repeat(100) { assertNull(withTimeoutOrNull(5) { ferry.events.take(1).toList() }) }
        eventually("every flow to let go of its listener") { ferry.activeEventFlows == 0 }
        eventually("every listener thread to end") { listenerThreads() <= before }
    }

    @Test
    fun flowsEndWhenAnotherHandleOfTheSameDirectoryShutsTheManagerDown() = runTest {
        val stateDir = tmp.newFolder()
        val first = openFerry(stateDir = stateDir)
        val second = openFerry(stateDir = stateDir) // the same engine manager
        val collected = async { second.events.toList() }
        eventually("the listener") { second.activeEventFlows == 1 }
        first.close()
        assertEquals(emptyList(), withTimeout(10_000) { collected.await() })
        val error = assertFailsWith<FerryException> { second.enqueue("http://127.0.0.1:9/x", File(tmp.root, "x")) }
        assertEquals(ErrorCode.SHUT_DOWN, error.code)
    }

    @Test
    fun cancelledDownloadCoroutinesLeaveTheTaskRunningAndCloseIsPrompt() = runTest {
        val server = serve(size = 8 * MiB, rate = 1_000_000)
        val stateDir = tmp.newFolder()
        val dest = File(tmp.root, "slow.bin")
        val ferry = Ferry.open(stateDir)
        try {
            repeat(50) { assertNull(withTimeoutOrNull(20) { ferry.download(server.url, dest, taskId = "slow") }) }
            assertEquals(TaskState.RUNNING, ferry.status("slow").state, "cancelling callers does not stop the transfer")
            // close() while a coroutine waits for the download: the wait ends with SHUT_DOWN.
            val waiting = async { runCatching { ferry.await("slow") } }
            delay(100)
            val started = System.nanoTime()
            ferry.use { }
            assertTrue(System.nanoTime() - started < 10_000_000_000L, "close took too long")
            val outcome = withTimeout(5_000) { waiting.await() }
            assertEquals(ErrorCode.SHUT_DOWN, (outcome.exceptionOrNull() as FerryException).code)
            assertEquals(ErrorCode.SHUT_DOWN, assertFailsWith<FerryException> { ferry.status("slow") }.code)
            assertEquals(ErrorCode.SHUT_DOWN, assertFailsWith<FerryException> { ferry.await("slow") }.code)
            ferry.close() // twice is fine
        } finally {
            ferry.close()
        }
        // Reopened, the download continues where it stopped and completes.
        val reopened = openFerry(stateDir = stateDir)
        assertTrue(reopened.status("slow").bytes > 0uL)
        reopened.setLimits(Limits(maxRunningTasks = 4u))
        assertEquals(TaskState.COMPLETED, withTimeout(30_000) { reopened.await("slow") }.state)
        assertEquals(server.sha256, sha256(dest))
    }

    @Test
    fun stateDirectoryThatIsAFileIsATypedError() {
        val file = tmp.newFile("state-file")
        for (dir in listOf(file, File(file, "state"))) {
            val error = assertFailsWith<FerryException> { Ferry.open(dir) }
            assertEquals(ErrorCode.STORAGE_IO, error.code)
            assertEquals(ErrorKind.STORAGE, error.kind)
        }
    }

    @Test
    fun stringsWithLoneSurrogatesAreTypedErrors() = runTest {
        val server = serve(size = 64 * 1024)
        val ferry = openFerry()
        val lone = "\uD800"
        val cases = listOf(
            DownloadRequest(url = server.url, destination = File(tmp.root, "a${lone}.bin").path) to ErrorCode.DESTINATION_NOT_WRITABLE,
            DownloadRequest(url = server.url + "/" + lone, destination = File(tmp.root, "u.bin").path) to ErrorCode.INVALID_URL,
            DownloadRequest(url = server.url, destination = File(tmp.root, "t.bin").path, taskId = lone) to ErrorCode.INVALID_TASK_ID,
            DownloadRequest(url = server.url, destination = File(tmp.root, "h.bin").path, headers = listOf(HttpHeader("X-A", lone))) to
                ErrorCode.INVALID_HEADER,
        )
        for ((request, code) in cases) {
            assertEquals(code, assertFailsWith<FerryException> { ferry.enqueue(request) }.code)
        }
        val items = ferry.enqueueAll(listOf(downloadRequest(server.url, File(tmp.root, "ok.bin"), taskId = "ok")) + cases.map { it.first })
        assertTrue(items[0] is BatchItem.Enqueued)
        assertEquals(cases.map { it.second }, items.drop(1).map { (it as BatchItem.Rejected).error.code })
        assertEquals(ErrorCode.TASK_NOT_FOUND, assertFailsWith<FerryException> { ferry.status(lone) }.code)
        assertEquals(ErrorCode.TASK_NOT_FOUND, assertFailsWith<FerryException> { ferry.cancel(lone) }.code)
        assertEquals(ErrorCode.INVALID_URL, assertFailsWith<FerryException> { ferry.fetchBytes(server.url + lone) }.code)
        assertEquals(TaskState.COMPLETED, ferry.await("ok").state)
        assertEquals(listOf("ok"), ferry.list().map { it.taskId })
    }

    @Test
    fun batchOfTenThousandDeliversEveryQueuedEvent() = runTest(timeoutMs = 100_000) {
        val server = serve(size = 4 * MiB, rate = 100_000)
        val ferry = openFerry(ManagerConfig(limits = Limits(maxRunningTasks = 1u)))
        val queued = async {
            var count = 0
            ferry.events.transformWhile { event ->
                if (event.isTransitionTo(TaskState.QUEUED)) count++
                emit(count)
                count < 10_000
            }.toList()
            count
        }
        eventually("the flow's listener") { ferry.activeEventFlows == 1 }
        val requests = (0 until 10_000).map { downloadRequest(server.url, File(tmp.root, "$it.bin"), taskId = "b$it") }
        val started = System.nanoTime()
        val items = ferry.enqueueAll(requests)
        println("MEASURE enqueueAll of 10,000 file requests: ${(System.nanoTime() - started) / 1_000_000} ms")
        assertEquals(requests.map { it.taskId }, items.map { (it as BatchItem.Enqueued).taskId })
        assertEquals(10_000, withTimeout(60_000) { queued.await() })
        assertEquals(10_000, ferry.pauseAll())
    }
}
