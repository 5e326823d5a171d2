// Job ids for user-initiated jobs, from a counter persisted in a small file. Not hashCode():
// scheduling a job under an id that is already taken replaces that job and stops it if it runs,
// and two task ids can share a hash. A counter never hands out an id that is still in use.

package dev.ferry.work

import java.io.File
import java.io.FileOutputStream

/**
 * Allocates one job id per task and remembers it across process deaths, in [file] (by default
 * `android-job-ids` in the state directory: it lives and dies with the task table). Ids run from
 * [first] to [last] and wrap around, skipping ids in use. Safe across threads of one process; one
 * process owns the state directory anyway (the engine's lock).
 *
 * File format, one entry a line: `next <n>`, then `<jobId>\t<taskId>` (task ids have no control
 * characters). Written whole to a temporary file, synced, then renamed over the old one.
 */
class JobIds(private val file: File, private val first: Int = 1, private val last: Int = Int.MAX_VALUE) {
    init {
        require(first in 1..last) { "bad id range $first..$last" }
    }

    private var next = first
    private val byTask = LinkedHashMap<String, Int>()
    private var loaded = false

    /** The job id of [taskId]: the one it already has, or the next free one (persisted before it is returned). */
    @Synchronized
    fun idFor(taskId: String): Int {
        load()
        byTask[taskId]?.let { return it }
        val used = byTask.values.toHashSet()
        check(used.size.toLong() < last.toLong() - first + 1) { "no free job id in $first..$last" }
        var id = next
        while (id in used) id = if (id == last) first else id + 1
        byTask[taskId] = id
        next = if (id == last) first else id + 1
        save()
        return id
    }

    /** The task of job [jobId], or `null`. */
    @Synchronized
    fun taskOf(jobId: Int): String? {
        load()
        return byTask.entries.firstOrNull { it.value == jobId }?.key
    }

    /** Forgets every task but [taskIds] (their ids become free again). */
    @Synchronized
    fun retain(taskIds: Set<String>) {
        load()
        if (byTask.keys.retainAll(taskIds)) save()
    }

    /** Every task and its id. */
    @Synchronized
    fun all(): Map<String, Int> {
        load()
        return LinkedHashMap(byTask)
    }

    private fun load() {
        if (loaded) return
        loaded = true
        if (!file.exists()) return
        file.readLines().forEach { line ->
            if (line.startsWith("next ")) {
                line.removePrefix("next ").toIntOrNull()?.takeIf { it in first..last }?.let { next = it }
            } else {
                val tab = line.indexOf('\t')
                val id = if (tab > 0) line.substring(0, tab).toIntOrNull() else null
                if (id != null && id in first..last && tab + 1 < line.length) byTask[line.substring(tab + 1)] = id
            }
        }
    }

    private fun save() {
        file.parentFile?.mkdirs()
        val tmp = File(file.path + ".tmp")
        FileOutputStream(tmp).use { out ->
            val text = buildString {
                append("next ").append(next).append('\n')
                byTask.forEach { (task, id) -> append(id).append('\t').append(task).append('\n') }
            }
            out.write(text.toByteArray(Charsets.UTF_8))
            out.fd.sync()
        }
        check(tmp.renameTo(file)) { "could not replace $file" }
    }

    /** Companion. */
    companion object {
        /** The file's name in the state directory. */
        const val FILE_NAME: String = "android-job-ids"

        /** The allocator whose file is in [stateDir]. */
        fun inStateDir(stateDir: File): JobIds = JobIds(File(stateDir, FILE_NAME))
    }
}
