package dev.ferry.work

import dev.ferry.FerryTestBase
import dev.ferry.FerryTestBase.Companion.ferryCli
import dev.ferry.testing.TestServer
import java.io.File
import java.util.concurrent.TimeUnit

/**
 * The bytes the journal of [stateDir] vouches for, per task, read by another process (`ferry
 * list --json` opens the table read-only): what a process killed now would continue from.
 */
fun journaledBytes(stateDir: File): Map<String, Long> {
    val process = ProcessBuilder(ferryCli.path, "--state-dir", stateDir.path, "list", "--json")
        .redirectError(ProcessBuilder.Redirect.INHERIT).start()
    try {
        val out = process.inputStream.bufferedReader().readText()
        check(process.waitFor(20, TimeUnit.SECONDS) && process.exitValue() == 0) { "ferry list failed: $out" }
        return out.lines().filter { it.isNotBlank() }.associate { line ->
            val id = Regex("\"id\":\"([^\"]*)\"").find(line)!!.groupValues[1]
            id to Regex("\"bytes\":(\\d+)").find(line)!!.groupValues[1].toLong()
        }
    } finally {
        process.destroyForcibly()
    }
}

/** A WorkScheduler that records what it is asked, and refuses expedited work when told to. */
class FakeWorkScheduler(var refuseExpedited: Boolean = false, var failEnqueue: Boolean = false) : WorkScheduler {
    /** Unfinished works by unique name. */
    val works = linkedMapOf<String, WorkPlan>()
    val enqueued = mutableListOf<WorkPlan>()
    val cancelled = mutableListOf<String>()

    override fun enqueueUnique(plan: WorkPlan) {
        if (failEnqueue) throw IllegalStateException("enqueue failed")
        if (plan.expedited && refuseExpedited) throw IllegalStateException("expedited work refused")
        enqueued += plan
        if (plan.existing == ExistingWork.KEEP && plan.uniqueName in works) return
        works[plan.uniqueName] = plan
    }

    override fun cancelUnique(uniqueName: String) {
        cancelled += uniqueName
        works.remove(uniqueName)
    }

    override suspend fun scheduledTaskIds(): Set<String> = works.values.mapNotNull { WorkNames.taskIdOf(it.tags) }.toSet()
}

/** A JobScheduler for user-initiated jobs: accepts, answers RESULT_FAILURE, or throws. */
class FakeUidtScheduler(var answer: () -> Boolean = { true }) : UidtScheduler {
    val jobs = linkedMapOf<String, Int>()
    val requests = mutableListOf<UidtRequest>()
    val cancelled = mutableListOf<Int>()

    override fun schedule(request: UidtRequest): Boolean {
        requests += request
        return answer().also { if (it) jobs[request.taskId] = request.jobId }
    }

    override fun cancel(jobId: Int) {
        cancelled += jobId
        jobs.values.remove(jobId)
    }

    override fun scheduledJobs(): Map<String, Int> = LinkedHashMap(jobs)
}

/** Shared helpers of the work tests. */
abstract class WorkTestBase : FerryTestBase() {
    /** A download request of [server]'s file into a fresh folder, with [connections] connections. */
    fun request(server: TestServer, name: String, taskId: String, connections: Int = 2, sha256: String? = null) =
        dev.ferry.ffi.DownloadRequest(
            url = server.url,
            destination = File(tmp.root, name).path,
            taskId = taskId,
            connections = connections.toUInt(),
            sha256 = sha256,
        )
}
