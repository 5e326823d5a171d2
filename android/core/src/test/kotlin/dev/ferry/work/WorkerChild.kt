package dev.ferry.work

import dev.ferry.Ferry
import dev.ferry.ffi.DownloadRequest
import java.io.File
import kotlin.time.Duration.Companion.milliseconds
import kotlin.time.Duration.Companion.minutes
import kotlinx.coroutines.runBlocking

/**
 * A worker in a process of its own, for ProcessDeathTest: opens the state directory, enqueues the
 * download (idempotent), runs `runWorker` on it and prints `progress <bytes>` lines, then
 * `result <WorkerResult>`. The test kills it with SIGKILL part-way.
 *
 * Arguments: stateDir url destination taskId.
 */
object WorkerChild {
    @JvmStatic
    fun main(args: Array<String>) {
        val (stateDir, url, destination, taskId) = args
        val ferry = Ferry.open(File(stateDir))
        runBlocking {
            ferry.enqueue(DownloadRequest(url = url, destination = destination, taskId = taskId, connections = 2u))
            val env = WorkerEnvironment(
                openFerry = { ferry },
                progress = { println("progress ${it.bytes}") },
                budgets = RunBudgets(background = 5.minutes),
                progressInterval = 50.milliseconds,
            )
            println("result ${runWorker(WorkerInput(taskId), env)}")
        }
        System.out.flush()
        // Like a worker, never close the process's manager; exit as a process does.
        Runtime.getRuntime().halt(0)
    }
}
