package dev.ferry

import dev.ferry.ffi.TaskState
import java.util.concurrent.TimeUnit
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import org.junit.Test

/**
 * A state directory another process has open (as an app's worker in `android:process` would): a
 * `ferry get` child downloads into it while this process opens the same directory, sees the task
 * with its progress, and follows it to its end.
 */
class SharedDirectoryTest : FerryTestBase() {
    @Test
    fun aDirectoryAnotherProcessDownloadsIntoOpensAndShowsItsTask() = runTest {
        val server = serve(3 * MiB, rate = 1_000_000)
        val stateDir = tmp.newFolder("shared-state")
        val destination = tmp.root.resolve("cli.bin")
        val cli = ProcessBuilder(
            ferryCli.path, "--state-dir", stateDir.path, "get", server.url, "-x", "2", "--quiet",
            "--id", "cli", "-o", destination.path,
        ).redirectError(ProcessBuilder.Redirect.INHERIT).start()
        try {
            cli.outputStream.close()
            eventually("the CLI to create the task table") { stateDir.resolve("tasks.sqlite3").exists() }
            val ferry = openFerry(stateDir = stateDir)
            eventually("the CLI's task to show here, moving") { (ferry.statusOrNull("cli")?.bytes ?: 0uL) > 0uL }
            val seen = ferry.status("cli")
            assertEquals(TaskState.RUNNING, seen.state)
            assertEquals(listOf("cli"), ferry.list().map { it.taskId })
            eventually("more progress") { ferry.status("cli").bytes > seen.bytes }
            assertEquals(TaskState.COMPLETED, ferry.await("cli").state)
            assertTrue(cli.waitFor(60, TimeUnit.SECONDS), "the CLI did not exit")
            assertEquals(0, cli.exitValue())
            assertEquals(server.sha256, sha256(destination))
        } finally {
            cli.destroyForcibly().waitFor(5, TimeUnit.SECONDS)
        }
    }
}
