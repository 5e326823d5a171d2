package dev.ferry.work

import java.io.File
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.test.fail
import kotlin.time.Duration.Companion.seconds
import org.junit.Test

/**
 * The process dies under a worker (the system or the user kills it: SIGKILL, no callback); the
 * next run, in a new process, finishes from the journal, byte-exact.
 */
class ProcessDeathTest : WorkTestBase() {

    @Test
    fun aWorkerKilledWithSigkillIsFinishedByTheNextRun() = runTest(100_000) {
        val size = 16 * MiB
        val server = serve(size = size, rate = 2 * MiB)
        val stateDir = tmp.newFolder()
        val destination = File(tmp.root, "killed.bin")
        val child = startChild(stateDir, server.url, destination, "killed")
        val lines = LinkedBlockingQueue<String>()
        val reader = thread(isDaemon = true) {
            // The kill closes the pipe under the reader: that ends it, quietly.
            runCatching { child.inputStream.bufferedReader().forEachLine { lines.put(it) } }
        }
        var killedAt = 0L
        try {
            val end = System.nanoTime() + 30_000_000_000L
            while (killedAt < 4 * MiB) {
                val line = lines.poll(end - System.nanoTime(), TimeUnit.NANOSECONDS)
                    ?: fail("the child reported no 4 MiB within 30 s")
                if (line.startsWith("result")) fail("the child finished before it was killed: $line")
                if (line.startsWith("progress ")) killedAt = line.removePrefix("progress ").toLong()
            }
            assertTrue(killedAt < size, "killed mid-download")
        } finally {
            child.destroyForcibly() // SIGKILL on Linux: no shutdown hook, no sync, no callback
            assertTrue(child.waitFor(10, TimeUnit.SECONDS), "the child is gone")
            reader.join(5_000)
        }
        assertEquals(137, child.exitValue(), "killed by SIGKILL (128 + 9)")
        val sentBeforeKill = server.stats.bodyBytes

        // A new process (this one) opens the directory, and a new run finishes the download.
        val ferry = openFerry(stateDir = stateDir)
        val env = WorkerEnvironment({ ferry }, budgets = RunBudgets(background = 60.seconds))
        assertEquals(WorkerResult.Success, runWorker(WorkerInput("killed"), env))
        assertEquals(server.sha256, sha256(destination), "byte-exact")
        val sent = server.stats.bodyBytes
        println(
            "ProcessDeathTest: fetched twice across a SIGKILL: ${sent - size} bytes " +
                "(child reported $killedAt bytes, server had sent $sentBeforeKill when it died)",
        )
        assertTrue(sent <= size + 4 * MiB, "the next run continued from the journal: $sent bytes sent for $size")
    }

    /** `java` with this JVM's class path and native library path, running [WorkerChild]. */
    private fun startChild(stateDir: File, url: String, destination: File, taskId: String): Process {
        val java = ProcessHandle.current().info().command().orElse("java")
        val command = listOf(
            java,
            "-Djna.library.path=" + System.getProperty("jna.library.path", ""),
            "-cp", System.getProperty("java.class.path"),
            WorkerChild::class.java.name,
            stateDir.path, url, destination.path, taskId,
        )
        return ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start()
    }
}
