// dev.ferry.testing: Ferry's loopback test server, for unit tests of the code that drives Ferry.
//
// Why this artifact: an app's tests of its progress UI, retry buttons and error handling need a
// server that misbehaves on cue, without a network and without starting a process. This server
// runs inside the test JVM, on 127.0.0.1, on the engine's own threads: it is the server the
// engine's Rust tests use, with their faults (drops, stalls, 503 or 429 with Retry-After,
// validators that change, rate caps), exported through the generated bindings (cargo feature
// `testing`, in every build of the library). This file only gives it Kotlin names and types
// (Long and Int rather than the bindings' unsigned ones); the behaviour is all in Rust.
//
// Depend on it from tests only: `testImplementation(project(":testing"))`.

package dev.ferry.testing

import dev.ferry.toFerryException
import dev.ferry.ffi.DownloadException
import dev.ferry.ffi.TestValidators
import kotlinx.coroutines.delay
import kotlinx.coroutines.withTimeout
import dev.ferry.ffi.TestServer as FfiTestServer
import dev.ferry.ffi.TestServerConfig as FfiTestServerConfig
import dev.ferry.ffi.TestServerStats as FfiTestServerStats

/**
 * An HTTP/1.1 server on 127.0.0.1, in this process, serving one generated file at [url] with the
 * faults its [Config] asks for; also [url] with a name, [statusUrl] (an error page: 404, 500, ...)
 * and [redirectUrl]. [close] stops it.
 *
 * ```
 * TestServer.start(TestServer.Config(busyRequests = 1)).use { server ->  // a 503, then the file
 *     ferry.download(server.url, File(dir, "file.bin"))
 *     assertEquals(2L, server.stats.requests)
 * }
 * ```
 */
class TestServer private constructor(private val server: FfiTestServer, config: Config) : AutoCloseable {

    /** `http://127.0.0.1:<port>`. */
    val base: String = server.base()

    /** The file's URL. */
    val url: String = server.url()

    /** The file's URL ending in [name] (names matter to code that names files after URLs). */
    fun url(name: String): String = server.urlNamed(name)

    /** A page answered with [code] (404, 500, 503, ...). */
    fun statusUrl(code: Int): String = server.statusUrl(code.toUShort())

    /** A chain of [hops] redirects that ends at the file. */
    fun redirectUrl(hops: Int): String = server.redirectUrl(hops.toUInt())

    /** The file's URL signed to expire [validMs] milliseconds from now: after that it answers 403,
     *  as a CDN's signed URLs do (for code that refreshes credentials). */
    fun signedUrl(validMs: Long): String = server.signedUrl(validMs.toULong())

    /** The file's length now. */
    val size: Long get() = server.size().toLong()

    /** SHA-256 (lower-case hex) of the file as it is served now. */
    val sha256: String get() = server.sha256()

    /** The file's bytes as they are served now. */
    fun content(): ByteArray = server.content()

    /** What the server has sent so far. */
    val stats: Stats get() = Stats(server.stats())

    /** One line per request for the file: its range, `If-Range`, and the status answered. */
    val log: List<String> get() = server.log()

    /**
     * The size, seed and faults. Setting it changes them from the next request on (requests in
     * flight keep theirs): `server.config = server.config.copy(busyRequests = 3)`.
     */
    @Volatile
    var config: Config = config
        set(value) {
            server.setConfig(value.toFfi())
            field = value
        }

    /**
     * Waits until [condition] holds for the server's [stats] (checked every 10 ms) and returns
     * them, e.g. `server.awaitStats { it.bodyBytes >= MiB }` before pausing a download half-way.
     *
     * @throws kotlinx.coroutines.TimeoutCancellationException after [timeoutMs].
     */
    suspend fun awaitStats(timeoutMs: Long = 10_000, condition: (Stats) -> Boolean): Stats = withTimeout(timeoutMs) {
        var now = stats
        while (!condition(now)) {
            delay(10)
            now = stats
        }
        now
    }

    /** Stops the server: connections are closed, its port refused. */
    override fun close() = server.close()

    /**
     * How the server behaves; every field has a default (a 1 MiB file, served well). Counters
     * ("the first n requests") count requests for the file.
     *
     * @property size the file's length.
     * @property seed its content (and validators): two servers with the same size and seed serve
     *   the same bytes.
     * @property ranges honour `Range` (else always a 200 with the whole body).
     * @property validators which validators it sends; null: a strong ETag and Last-Modified.
     * @property rate a per-connection cap, bytes per second.
     * @property latencyMs a delay before each response head.
     * @property changeEvery the file (content and validators) changes every n requests.
     * @property dropAfter drop the connection after this many body bytes, for the first
     *   [dropRequests] requests.
     * @property stallAfter go silent (connection kept open) after this many body bytes, for the
     *   first [stallRequests] requests, for [stallMs].
     * @property busyStatus the status (503 or 429) of the first [busyRequests] answers, sent with
     *   `Retry-After: ` [retryAfterSecs].
     * @property chunked whole bodies chunked, without `Content-Length`.
     * @property shortBy announce this many bytes more than the body has, for the first
     *   [shortRequests] requests.
     */
    data class Config(
        val size: Long = 1L shl 20,
        val seed: Long = 1,
        val ranges: Boolean = true,
        val validators: TestValidators? = null,
        val rate: Long? = null,
        val latencyMs: Long = 0,
        val changeEvery: Long? = null,
        val dropAfter: Long? = null,
        val dropRequests: Long = 0,
        val stallAfter: Long? = null,
        val stallRequests: Long = 0,
        val stallMs: Long = 3_600_000,
        val busyStatus: Int = 503,
        val busyRequests: Long = 0,
        val retryAfterSecs: Long = 1,
        val chunked: Boolean = false,
        val shortBy: Long = 0,
        val shortRequests: Long = 0,
    ) {
        internal fun toFfi() = FfiTestServerConfig(
            size = size.toULong(), seed = seed.toULong(), ranges = ranges, validators = validators,
            rate = rate?.toULong(), latencyMs = latencyMs.toULong(), changeEvery = changeEvery?.toULong(),
            dropAfter = dropAfter?.toULong(), dropRequests = dropRequests.toULong(),
            stallAfter = stallAfter?.toULong(), stallRequests = stallRequests.toULong(), stallMs = stallMs.toULong(),
            busyStatus = busyStatus.toUShort(), busyRequests = busyRequests.toULong(),
            retryAfterSecs = retryAfterSecs.toULong(), chunked = chunked, shortBy = shortBy.toULong(),
            shortRequests = shortRequests.toULong(),
        )
    }

    /**
     * What the server has sent: [requests] for the file, [bodyBytes] of it, [rangedRequests] and
     * [ifRangeRequests] among them, bodies being sent now ([active]) and the most at once
     * ([maxActive]).
     */
    data class Stats(
        val requests: Long,
        val bodyBytes: Long,
        val rangedRequests: Long,
        val ifRangeRequests: Long,
        val active: Long,
        val maxActive: Long,
    ) {
        internal constructor(s: FfiTestServerStats) : this(
            s.requests.toLong(), s.bodyBytes.toLong(), s.rangedRequests.toLong(), s.ifRangeRequests.toLong(),
            s.active.toLong(), s.maxActive.toLong(),
        )
    }

    companion object {
        /**
         * Starts a server on a free port of 127.0.0.1.
         *
         * @throws dev.ferry.FerryException if no port can be bound (or the library was built
         *   without the `testing` feature).
         */
        fun start(config: Config = Config()): TestServer {
            val server = try {
                FfiTestServer.start(config.toFfi())
            } catch (e: DownloadException) {
                throw e.toFerryException()
            }
            return TestServer(server, config)
        }

        /** Starts a server for a file of [size] bytes, at most [rate] bytes per second per connection. */
        fun start(size: Long, rate: Long? = null, seed: Long = 1): TestServer =
            start(Config(size = size, seed = seed, rate = rate))
    }
}
