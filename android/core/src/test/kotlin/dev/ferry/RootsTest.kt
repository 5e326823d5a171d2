package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import java.io.File
import java.nio.file.Files
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue

/** Directories that move: tasks under a declared root follow it to its new path. */
class RootsTest : FerryTestBase() {

    /** An app's data as Android lays it out: the state directory and filesDir side by side. */
    private fun appData(base: File, name: String): Pair<File, File> {
        val data = File(base, name)
        val files = File(data, "files").apply { mkdirs() }
        return File(data, "state") to files
    }

    @Test
    fun movedAppDataResolvesAgainstTheRootsOfTheNextOpen() = runTest {
        val server = serve(size = 4 * MiB, rate = 2_000_000)
        val base = tmp.newFolder()
        val (state, files) = appData(base, "data-1")
        Ferry.open(state, roots = mapOf("files" to files)).use { ferry ->
            val done = ferry.download(server.url, File(files, "done.bin"), taskId = "done")
            assertEquals(File(files, "done.bin"), done.file)
            ferry.enqueue(DownloadRequest(url = server.url, destination = File(files, "paused.bin").path, taskId = "paused"))
            eventually("some bytes") { ferry.status("paused").bytes > 0u }
            ferry.pause("paused")
            assertEquals(TaskState.PAUSED, ferry.await("paused").state)
        }

        // The app's data moves (a restore onto another device or user, say), by a rename.
        Files.move(File(base, "data-1").toPath(), File(base, "data-2").toPath())
        val (movedState, movedFiles) = appData(base, "data-2")
        Ferry.open(movedState, roots = mapOf("files" to movedFiles)).use { ferry ->
            val done = ferry.status("done")
            assertEquals(TaskState.COMPLETED, done.state)
            assertEquals(File(movedFiles, "done.bin"), done.file)
            val paused = ferry.status("paused")
            assertEquals(TaskState.PAUSED, paused.state)
            assertTrue(paused.bytes > 0u, "the paused download kept its bytes")
            ferry.resume("paused")
            val resumed = ferry.await("paused")
            assertEquals(TaskState.COMPLETED, resumed.state)
            assertEquals(File(movedFiles, "paused.bin"), resumed.file)
            assertEquals(server.sha256, sha256(File(movedFiles, "paused.bin")))
        }

        // Without the root: listed as stored, with ROOT_UNKNOWN, and never run.
        Ferry.open(movedState).use { ferry ->
            val done = ferry.status("done")
            assertEquals("@files/done.bin", done.destination)
            assertEquals(ErrorCode.ROOT_UNKNOWN, done.failure?.code)
            val refused = assertFailsWith<FerryException> { ferry.resume("done") }
            assertEquals(ErrorCode.ROOT_UNKNOWN, refused.code)
        }
    }

    @Test
    fun aMissingRootDirectoryIsInvalidConfig() {
        val base = tmp.newFolder()
        val refused = assertFailsWith<FerryException> {
            Ferry.open(File(base, "state"), roots = mapOf("files" to File(base, "missing")))
        }
        assertEquals(ErrorCode.INVALID_CONFIG, refused.code)
    }
}
