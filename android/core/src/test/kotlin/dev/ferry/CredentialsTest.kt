package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import java.io.File
import java.util.Collections
import kotlinx.coroutines.delay
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/** Credentials that expire: refreshed through the function, or replaced, and the download finishes. */
class CredentialsTest : FerryTestBase() {

    @Test
    fun aPausedDownloadWhoseUrlExpiredResumesThroughTheFunction() = runTest {
        val server = serve(size = 4 * MiB, rate = 2_000_000)
        val ferry = openFerry()
        val asked = Collections.synchronizedList(mutableListOf<Int>())
        ferry.onCredentialsExpired { _, status ->
            asked += status
            freshCredentials(url = server.signedUrl(300_000))
        }
        val destination = File(tmp.newFolder(), "signed.bin")
        ferry.enqueue(DownloadRequest(url = server.signedUrl(1_500), destination = destination.path, taskId = "signed"))
        eventually("some bytes") { ferry.status("signed").bytes > 0u }
        ferry.pause("signed")
        assertEquals(TaskState.PAUSED, ferry.await("signed").state)
        delay(1_800)
        ferry.resume("signed")
        val done = ferry.await("signed")
        assertEquals(TaskState.COMPLETED, done.state, done.error?.message)
        assertEquals(server.sha256, sha256(destination))
        assertTrue(asked.isNotEmpty() && asked.all { it == 403 }, "$asked")
    }

    @Test
    fun aFunctionThatThrowsFailsTheTaskTyped() = runTest {
        val server = serve(size = MiB)
        val ferry = openFerry()
        ferry.onCredentialsExpired { _, _ -> throw IllegalStateException("token service down") }
        val destination = File(tmp.newFolder(), "denied.bin")
        val status = ferry.await(ferry.enqueue(DownloadRequest(url = server.signedUrl(0), destination = destination.path)))
        assertEquals(TaskState.FAILED, status.state)
        assertEquals(ErrorCode.CREDENTIALS_REFRESH_FAILED, status.error?.code)
        assertTrue(status.error?.message?.contains("token service down") == true, status.error?.message)
        assertFalse(destination.exists())
    }

    @Test
    fun updateCredentialsThenResumeFinishesATaskThatWasDenied() = runTest {
        val server = serve(size = MiB)
        val ferry = openFerry()
        val destination = File(tmp.newFolder(), "later.bin")
        val first = ferry.await(ferry.enqueue(DownloadRequest(url = server.signedUrl(0), destination = destination.path, taskId = "later")))
        assertEquals(ErrorCode.ACCESS_DENIED, first.error?.code)
        ferry.updateCredentials("later", freshCredentials(url = server.signedUrl(300_000)))
        ferry.resume("later")
        val done = ferry.await("later")
        assertEquals(TaskState.COMPLETED, done.state, done.error?.message)
        assertEquals(server.sha256, sha256(destination))
    }
}
