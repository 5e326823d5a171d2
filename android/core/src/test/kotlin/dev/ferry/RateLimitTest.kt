package dev.ferry

import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.TaskState
import java.io.File
import kotlinx.coroutines.delay
import kotlinx.coroutines.withTimeout
import org.junit.Test
import kotlin.math.abs
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue

/** Bandwidth caps: per task over its connections, global, both changed while downloads run. */
class RateLimitTest : FerryTestBase() {

    @Test
    fun aTaskCapHoldsOverItsConnectionsAndLiftingItLetsTheRestThrough() = runTest {
        val server = serve(size = 16 * MiB)
        val ferry = openFerry()
        val file = File(tmp.newFolder(), "capped.bin")
        val cap = 1 * MiB
        val id = ferry.enqueue(downloadRequest(server.url, file, rateLimit = cap).copy(connections = 3u))
        assertEquals(cap, ferry.rateLimit(id))
        eventually("first bytes") { ferry.status(id).bytes > 0u }
        delay(1_000)
        val (from, bytesFrom) = System.nanoTime() to ferry.status(id).bytes.toLong()
        delay(2_000)
        val (to, bytesTo) = System.nanoTime() to ferry.status(id).bytes.toLong()
        val rate = (bytesTo - bytesFrom) * 1e9 / (to - from)
        assertTrue(abs(rate - cap) <= cap * 0.15, "measured $rate B/s against a cap of $cap")

        // 13 MiB left: 13 s at the cap, far less without it.
        ferry.setRateLimit(id, null)
        assertNull(ferry.rateLimit(id))
        val done = withTimeout(8_000) { ferry.await(id) }
        assertEquals(TaskState.COMPLETED, done.state)
        assertEquals(server.sha256, sha256(file))
    }

    @Test
    fun theGlobalCapIsSetAtOpenAndChangedAtRunTime() {
        val ferry = openFerry(ManagerConfig(rateLimit = (2 * MiB).toULong()))
        assertEquals(2 * MiB, ferry.rateLimit)
        ferry.rateLimit = 512 * 1024
        assertEquals(512L * 1024, ferry.rateLimit)
        ferry.rateLimit = null
        assertNull(ferry.rateLimit)
        assertFailsWith<IllegalArgumentException> { ferry.rateLimit = -1 }
    }
}
