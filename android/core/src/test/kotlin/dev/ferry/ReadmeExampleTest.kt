package dev.ferry

import java.io.File
import kotlinx.coroutines.launch
import org.junit.Test
import kotlin.test.assertEquals

/** Runs the README's Kotlin example verbatim (between the markers), against a loopback server. */
class ReadmeExampleTest : FerryTestBase() {

    @Test
    fun readmeExample() = runTest {
        val server = serve(size = 6 * MiB, rate = 4_000_000)
        val url = server.url
        val appDir = tmp.root

        // README example: begin
        Ferry.open(File(appDir, "ferry")).use { ferry ->
            val progress = launch { ferry.progress("movie").collect { println("movie: ${(it.progress * 100).toInt()}%") } }
            try {
                val done = ferry.download(url, File(appDir, "movie.mp4"), taskId = "movie")
                println("saved ${done.bytes} bytes to ${done.destination}")
            } catch (e: FerryException) {
                println("download failed: ${e.code} (${e.code.number}): ${e.detail}")
            }
            progress.cancel()
        }
        // README example: end

        assertEquals(server.sha256, sha256(File(appDir, "movie.mp4")))
    }
}
