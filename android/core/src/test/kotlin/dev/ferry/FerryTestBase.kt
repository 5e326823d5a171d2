package dev.ferry

import dev.ferry.ffi.ManagerConfig
import dev.ferry.testing.TestServer
import java.io.File
import java.security.MessageDigest
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.Rule
import org.junit.rules.TemporaryFolder
import org.junit.rules.Timeout
import kotlin.test.fail

/**
 * Shared set-up: a temporary folder, a hard time limit per test, and servers and managers that
 * are closed after each test whatever happens.
 */
abstract class FerryTestBase {
    /** Temporary files and state directories of the test. */
    @get:Rule
    val tmp = TemporaryFolder()

    /** No test may hang the suite. */
    @get:Rule
    val timeout: Timeout = Timeout.seconds(120)

    private val closeAfter = mutableListOf<AutoCloseable>()

    /** Closes managers first, then servers (in reverse order of creation). */
    @After
    fun closeEverything() {
        closeAfter.asReversed().forEach { runCatching { it.close() } }
        closeAfter.clear()
    }

    /**
     * A loopback server (dev.ferry.testing, in this JVM) for a file of [size] bytes, at most [rate]
     * bytes per second per connection, with content from [seed]; closed after the test.
     */
    fun serve(size: Long, rate: Long? = null, seed: Long = 1): TestServer = serve(TestServer.Config(size = size, seed = seed, rate = rate))

    /** A loopback server with the faults of [config]; closed after the test. */
    fun serve(config: TestServer.Config): TestServer = TestServer.start(config).also { closeAfter += it }

    /** A manager on a fresh state directory, closed after the test. */
    fun openFerry(config: ManagerConfig = ManagerConfig(), stateDir: File = tmp.newFolder()): Ferry =
        Ferry.open(stateDir, config).also { closeAfter += it }

    /** Runs [block] in a coroutine, failing after [timeoutMs]. */
    fun runTest(timeoutMs: Long = 60_000, block: suspend CoroutineScope.() -> Unit) {
        runBlocking { withTimeout(timeoutMs) { block() } }
    }

    /** Polls [condition] every 10 ms until it holds; fails after [timeoutMs]. */
    suspend fun eventually(what: String, timeoutMs: Long = 20_000, condition: () -> Boolean) {
        val end = System.nanoTime() + timeoutMs * 1_000_000
        while (!condition()) {
            if (System.nanoTime() > end) fail("timed out after $timeoutMs ms waiting for $what")
            delay(10)
        }
    }

    companion object {
        /** One mebibyte. */
        const val MiB: Long = 1L shl 20

        /** SHA-256 (hex) of a file. */
        fun sha256(file: File): String = file.inputStream().use { input ->
            val digest = MessageDigest.getInstance("SHA-256")
            val buffer = ByteArray(1 shl 16)
            while (true) {
                val n = input.read(buffer)
                if (n < 0) break
                digest.update(buffer, 0, n)
            }
            hex(digest.digest())
        }

        /** SHA-256 (hex) of bytes. */
        fun sha256(bytes: ByteArray): String = hex(MessageDigest.getInstance("SHA-256").digest(bytes))

        private fun hex(bytes: ByteArray): String = bytes.joinToString("") { "%02x".format(it) }

        /**
         * The `ferry` command line tool, from `$FERRY_BIN` (set by android/test-jvm.sh and the Gradle
         * build): the multi-process tests run it as another client of a state directory.
         */
        val ferryCli: File
            get() = File(
                System.getenv("FERRY_BIN")
                    ?: error("FERRY_BIN is not set: run android/test-jvm.sh (or gradle :core:test)"),
            )

        /** The partial file the engine writes next to [destination]. */
        fun partFile(destination: File): File = File(destination.path + ".part")
    }
}
