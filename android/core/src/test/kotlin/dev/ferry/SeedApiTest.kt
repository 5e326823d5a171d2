package dev.ferry

import dev.ferry.ffi.DownloadException
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import java.io.File
import kotlinx.coroutines.delay
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue
import dev.ferry.ffi.cancel as ferryCancel
import dev.ferry.ffi.download as ferryDownload
import dev.ferry.ffi.status as ferryStatus

/**
 * The seed-style API: `download(url, destination, taskId)`, `status(taskId)`, `cancel(taskId)` on
 * the process-wide default manager. The only test that opens the default manager (it is opened
 * once per process, on the directory chosen first).
 */
class SeedApiTest : FerryTestBase() {

    @Test
    fun seedStyleDownloadStatusAndCancel() = runTest {
        val server = serve(size = 8 * MiB, rate = 500_000)
        val stateDir = tmp.newFolder("default-state")
        Ferry.setDefaultStateDir(stateDir)

        // Download and poll, as an app without coroutines would.
        val dest = File(tmp.root, "seed.bin")
        val id = ferryDownload(server.url, dest.path, "seed-file")
        assertEquals("seed-file", id)
        assertEquals(id, ferryDownload(server.url, dest.path, "seed-file"), "the same id downloads once")
        while (ferryStatus(id).state.isActive) delay(100)
        val done = ferryStatus(id)
        assertEquals(TaskState.COMPLETED, done.state)
        assertEquals(1.0, done.progress)
        assertEquals(server.sha256, sha256(dest))

        // Cancel a running download: the partial file goes away.
        val dest2 = File(tmp.root, "seed-cancelled.bin")
        val id2 = ferryDownload(server.url, dest2.path)
        assertTrue(id2.isNotEmpty() && id2 != id, "a generated id")
        eventually("bytes to arrive") { ferryStatus(id2).bytes > 0uL }
        ferryCancel(id2)
        eventually("the task to turn cancelled") { ferryStatus(id2).state == TaskState.CANCELLED }
        eventually("the partial file to disappear") { !partFile(dest2).exists() }
        assertFalse(dest2.exists())

        val unknown = assertFailsWith<DownloadException> { ferryStatus("no-such-task") }
        assertEquals(ErrorCode.TASK_NOT_FOUND, unknown.code)

        // The facade sees the same manager; closing this handle leaves the default manager running.
        Ferry.default().use { ferry ->
            assertEquals(stateDir.canonicalFile, ferry.stateDir.canonicalFile)
            assertEquals(setOf(id, id2), ferry.list().map { it.taskId }.toSet())
        }
        assertEquals(TaskState.COMPLETED, ferryStatus(id).state)
        val elsewhere = assertFailsWith<FerryException> { Ferry.setDefaultStateDir(tmp.newFolder("other")) }
        assertEquals(ErrorCode.INVALID_STATE, elsewhere.code)
    }
}
