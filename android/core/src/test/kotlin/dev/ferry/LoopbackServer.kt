package dev.ferry

import java.io.File
import java.util.concurrent.CompletableFuture
import java.util.concurrent.TimeUnit

/**
 * The `ferry serve` test server as a child process: generated content on 127.0.0.1 (`/file` with
 * Range and ETag, `/status/N`, `/redirect/N`, `/loop/a`). It serves until its stdin is closed;
 * [close] closes stdin and destroys the process, so no server outlives its test.
 */
class LoopbackServer private constructor(
    private val process: Process,
    /** The URL of the generated file. */
    val url: String,
    /** `http://127.0.0.1:<port>`, for the other routes. */
    val base: String,
    /** Size of the file in bytes. */
    val size: Long,
    /** SHA-256 (hex) of the file. */
    val sha256: String,
) : AutoCloseable {

    override fun close() {
        runCatching { process.outputStream.close() }
        if (!process.waitFor(5, TimeUnit.SECONDS)) {
            process.destroy()
            if (!process.waitFor(2, TimeUnit.SECONDS)) process.destroyForcibly().waitFor(2, TimeUnit.SECONDS)
        }
    }

    companion object {
        /** The `ferry` binary, from `$FERRY_BIN` (set by android/test-jvm.sh and the Gradle build). */
        val binary: File
            get() = File(
                System.getenv("FERRY_BIN")
                    ?: error("FERRY_BIN is not set: run android/test-jvm.sh (or gradle :core:test)"),
            )

        /**
         * Starts a server for a file of [size] bytes, at most [rate] bytes per second per connection,
         * with content from [seed]. Waits at most 20 s for its address.
         */
        fun start(size: Long, rate: Long? = null, seed: Long? = null): LoopbackServer {
            val command = mutableListOf(binary.path, "serve", "--size", size.toString())
            if (rate != null) command += listOf("--rate", rate.toString())
            if (seed != null) command += listOf("--seed", seed.toString())
            val process = ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start()
            try {
                val reader = process.inputStream.bufferedReader()
                val line = CompletableFuture.supplyAsync { reader.readLine() }.get(20, TimeUnit.SECONDS)
                    ?: error("ferry serve exited without printing its address")
                return LoopbackServer(
                    process,
                    url = field(line, "url"),
                    base = field(line, "base"),
                    size = Regex("\"size\":(\\d+)").find(line)?.groupValues?.get(1)?.toLong()
                        ?: error("no size in $line"),
                    sha256 = field(line, "sha256"),
                )
            } catch (e: Throwable) {
                process.destroyForcibly()
                throw e
            }
        }

        private fun field(json: String, name: String): String =
            Regex("\"$name\":\"([^\"]*)\"").find(json)?.groupValues?.get(1) ?: error("no $name in $json")
    }
}
