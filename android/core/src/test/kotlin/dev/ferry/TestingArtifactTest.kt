package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.testing.TestServer
import java.io.File
import kotlinx.coroutines.TimeoutCancellationException
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/**
 * The testing artifact (dev.ferry.testing) as an app's unit tests use it: the android/README.md
 * example, run verbatim, and its faults reaching a download as the app would see them.
 */
class TestingArtifactTest : FerryTestBase() {

    @Test
    fun readmeTestingExample() = runTest {
        val ferry = openFerry()
        val dir = tmp.newFolder()

        // README testing: begin
        TestServer.start(TestServer.Config(busyRequests = 1)).use { server ->  // a 503 with Retry-After: 1, then the file
            val done = ferry.download(server.url, File(dir, "file.bin"))
            assertEquals(server.size, done.bytes.toLong())
            assertEquals(2L, server.stats.requests)  // the 503 and the retry
        }
        // README testing: end
    }

    @Test
    fun anErrorPageFailsTheDownloadWithItsCode() = runTest {
        val server = serve(TestServer.Config())
        val ferry = openFerry()
        val dest = File(tmp.root, "missing.bin")
        val e = assertFailsWith<FerryException> { ferry.download(server.statusUrl(404), dest) }
        assertEquals(ErrorCode.NOT_FOUND, e.code)
        assertFalse(dest.exists())
    }

    @Test
    fun aDroppedConnectionIsRetriedToTheExactBytes() = runTest {
        val server = serve(TestServer.Config(size = 2 * MiB, dropAfter = 256L * 1024, dropRequests = 1))
        val ferry = openFerry()
        val dest = File(tmp.root, "dropped.bin")
        val done = ferry.download(DownloadRequest(url = server.url("dropped.bin"), destination = dest.path, connections = 1u))
        assertEquals(server.size, done.bytes.toLong())
        assertEquals(server.sha256, sha256(dest))
        assertEquals(2L, server.stats.requests, "the dropped one and the retry: ${server.log}")
    }

    @Test
    fun configChangesTheNextAnswerAndAwaitStatsIsBounded() = runTest {
        val server = serve(TestServer.Config(size = 4 * MiB, rate = MiB))
        val ferry = openFerry()
        val id = ferry.enqueue(DownloadRequest(url = server.url, destination = File(tmp.root, "slow.bin").path, connections = 1u))
        val seen = server.awaitStats(20_000) { it.bodyBytes >= 512L * 1024 }
        assertTrue(seen.bodyBytes >= 512L * 1024)
        ferry.pause(id)
        assertFailsWith<TimeoutCancellationException> { server.awaitStats(200) { it.requests > 100 } }

        server.config = server.config.copy(size = 5000, seed = 9, rate = null)
        assertEquals(5000L, server.size)
        val body = ferry.fetchBytes(server.redirectUrl(2))
        assertEquals(server.sha256, sha256(body))
        assertEquals(server.content().toList(), body.toList())
    }
}
