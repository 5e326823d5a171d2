package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import java.io.File
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.delay
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertIs
import kotlin.test.assertNull
import kotlin.test.assertTrue

/** Downloads, pause and resume, cancel, fetchBytes and closing, against a loopback server. */
class DownloadTest : FerryTestBase() {

    @Test
    fun downloadsFromLoopbackAndVerifiesSha256() = runTest {
        val server = serve(size = 3 * MiB + 17, seed = 7)
        val ferry = openFerry()
        val dest = File(tmp.root, "file.bin")

        val done = ferry.download(server.url, dest, taskId = "plain", sha256 = server.sha256)

        assertEquals(TaskState.COMPLETED, done.state)
        assertTrue(done.isCompleted && !done.isActive && done.state.isFinal)
        assertEquals("plain", done.taskId)
        assertEquals(dest, done.file)
        assertEquals(server.size, done.bytes.toLong())
        assertEquals(server.size, done.total?.toLong())
        assertEquals(100, done.percent)
        assertNull(done.failure)
        assertEquals(server.sha256, sha256(dest))
        assertFalse(partFile(dest).exists())
        assertEquals(listOf("plain"), ferry.list().map { it.taskId })
    }

    @Test
    fun pauseKeepsBytesAndResumeCompletes() = runTest {
        val server = serve(size = 8 * MiB, rate = 2_000_000)
        val ferry = openFerry()
        val dest = File(tmp.root, "paused.bin")
        val id = ferry.enqueue(DownloadRequest(url = server.url, destination = dest.path, connections = 2u))
        eventually("some bytes") { ferry.status(id).bytes.toLong() >= 512 * 1024 }

        ferry.pause(id)
        assertEquals(TaskState.PAUSED, ferry.status(id).state)
        assertTrue(ferry.status(id).state.isResumable)
        assertEquals(TaskState.PAUSED, ferry.await(id).state)
        delay(300) // let the stopped connections settle
        val kept = ferry.status(id).bytes.toLong()
        delay(700)
        val later = ferry.status(id)
        assertEquals(TaskState.PAUSED, later.state)
        assertEquals(kept, later.bytes.toLong(), "no bytes move while paused")
        assertTrue(kept in 1 until server.size, "paused with $kept of ${server.size} bytes")
        assertTrue(partFile(dest).exists(), "the partial file is kept")
        assertFalse(dest.exists())
        val interrupted = assertFailsWith<FerryException> { later.requireCompleted() }
        assertEquals(ErrorCode.INTERRUPTED, interrupted.code)

        ferry.resume(id)
        assertTrue(ferry.status(id).bytes.toLong() >= kept, "resuming does not start over")
        val done = ferry.await(id)

        assertEquals(TaskState.COMPLETED, done.state)
        assertEquals(server.size, done.bytes.toLong())
        assertEquals(server.sha256, sha256(dest))
    }

    @Test
    fun cancelRemovesThePartialFile() = runTest {
        val server = serve(size = 8 * MiB, rate = 1_000_000)
        val ferry = openFerry()
        val dest = File(tmp.root, "cancelled.bin")
        val request = DownloadRequest(url = server.url, destination = dest.path, taskId = "doomed", connections = 2u)
        val outcome = async(start = CoroutineStart.UNDISPATCHED) { runCatching { ferry.download(request) } }
        eventually("the task to receive bytes") { (ferry.statusOrNull("doomed")?.bytes ?: 0uL) > 0uL }

        ferry.cancel("doomed")

        // The task turns cancelled once its runner stopped (possibly a moment after cancel returns).
        assertEquals(TaskState.CANCELLED, ferry.await("doomed").state)
        val failure = assertIs<FerryException>(outcome.await().exceptionOrNull(), "download() throws")
        assertEquals(ErrorCode.CANCELLED, failure.code)
        assertEquals(ErrorKind.STOPPED, failure.kind)
        eventually("the partial file to disappear") { !partFile(dest).exists() }
        assertFalse(dest.exists())
        ferry.cancel("doomed") // cancelling again does nothing
        assertEquals(TaskState.CANCELLED, ferry.await("doomed").state)
    }

    @Test
    fun failedDownloadThrowsTheTaskErrorCode() = runTest {
        val server = serve(size = 1024)
        val ferry = openFerry()
        val dest = File(tmp.root, "missing.bin")

        val e = assertFailsWith<FerryException> { ferry.download("${server.base}/status/404", dest, taskId = "404") }

        assertEquals(ErrorCode.NOT_FOUND, e.code)
        assertEquals(2004, e.code.number)
        val status = ferry.status("404")
        assertEquals(TaskState.FAILED, status.state)
        assertTrue(status.isFailed && status.state.isResumable)
        assertEquals(ErrorCode.NOT_FOUND, status.failure?.code)
        assertFalse(dest.exists())
    }

    @Test
    fun fetchBytesReturnsTheBodyAndMapsErrors() = runTest {
        val server = serve(size = 200_000, seed = 3)
        val ferry = openFerry()

        val body = ferry.fetchBytes(server.url)
        assertEquals(server.size, body.size.toLong())
        assertEquals(server.sha256, sha256(body))
        assertEquals(server.sha256, sha256(ferry.fetchBytes("${server.base}/redirect/2", mapOf("X-Test" to "1"))))

        val notFound = assertFailsWith<FerryException> { ferry.fetchBytes("${server.base}/status/404") }
        assertEquals(ErrorCode.NOT_FOUND, notFound.code)
        assertEquals(ErrorKind.NETWORK, notFound.kind)
        assertFalse(notFound.retryable, "a missing resource stays missing")
        val loop = assertFailsWith<FerryException> { ferry.fetchBytes("${server.base}/loop/a") }
        assertEquals(ErrorCode.REDIRECT_LOOP, loop.code)
        val tooBig = assertFailsWith<FerryException> { ferry.fetchBytes(server.url, limit = 1000) }
        assertEquals(ErrorCode.MEMORY_LIMIT_EXCEEDED, tooBig.code)
        assertTrue(ferry.list().isEmpty(), "fetchBytes creates no task")
    }

    @Test
    fun closeReleasesCoroutinesWaitingForTasks() = runTest {
        val server = serve(size = 8 * MiB, rate = 200_000)
        val ferry = openFerry()
        val request = DownloadRequest(url = server.url, destination = File(tmp.root, "slow.bin").path, taskId = "slow")
        val outcome = async(start = CoroutineStart.UNDISPATCHED) { runCatching { ferry.download(request) } }
        eventually("the task to run") { ferry.statusOrNull("slow")?.state == TaskState.RUNNING }

        ferry.close()

        val failure = assertIs<FerryException>(outcome.await().exceptionOrNull(), "download() throws")
        assertEquals(ErrorCode.SHUT_DOWN, failure.code)
    }

    @Test
    fun closeShutsDownAndTheTableSurvives() = runTest {
        val server = serve(size = 64 * 1024)
        val stateDir = tmp.newFolder("state")
        val dest = File(tmp.root, "kept.bin")

        val ferry = Ferry.open(stateDir)
        ferry.use {
            assertEquals(stateDir.canonicalFile, it.stateDir.canonicalFile)
            it.download(server.url, dest, taskId = "kept")
        }

        val e = assertFailsWith<FerryException> { ferry.status("kept") }
        assertEquals(ErrorCode.SHUT_DOWN, e.code)
        assertFailsWith<FerryException> { ferry.enqueue(server.url, File(tmp.root, "x.bin")) }
        ferry.close() // a second close does nothing

        openFerry(stateDir = stateDir).use { reopened ->
            assertEquals(TaskState.COMPLETED, reopened.status("kept").state)
            assertNull(reopened.statusOrNull("unknown"))
        }
        assertEquals(server.sha256, sha256(dest))
    }
}
