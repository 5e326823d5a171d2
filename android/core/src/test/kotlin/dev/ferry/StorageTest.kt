package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import java.io.File
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/** A download that cannot fit fails at once with `DISK_FULL` and the numbers, leaving no file. */
class StorageTest : FerryTestBase() {

    @Test
    fun aDownloadLargerThanTheFreeSpaceFailsAtOnceWithTheNumbers() = runTest {
        val pib = 1L shl 50 // more than any test machine's disk
        val server = serve(size = pib)
        val ferry = openFerry()
        val destination = File(tmp.newFolder(), "huge.bin")
        val status = ferry.await(ferry.enqueue(DownloadRequest(url = server.url, destination = destination.path)))
        assertEquals(TaskState.FAILED, status.state)
        assertEquals(ErrorCode.DISK_FULL, status.error?.code)
        assertTrue(status.error?.message?.contains(pib.toString()) == true, status.error?.message)
        assertFalse(destination.exists())
        assertTrue(server.stats.bodyBytes < (16L shl 20), "failed at the start, not after gigabytes")
    }
}
