// The manager facade: `Ferry`, the Kotlin entry point over one state directory, with suspend calls
// for what writes the task table, plain calls for what reads it, and FerryException for every
// failure. Its event flows are built in EventFlows.kt, its input checks in InputChecks.kt.

package dev.ferry

import dev.ferry.ffi.BatchItem
import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.DownloadException
import dev.ferry.ffi.DownloadManager
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.FreshCredentials
import dev.ferry.ffi.HttpHeader
import dev.ferry.ffi.Limits
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.NetworkPolicy
import dev.ferry.ffi.NetworkState
import dev.ferry.ffi.PathRoot
import dev.ferry.ffi.TaskErrorInfo
import dev.ferry.ffi.TaskStatus
import dev.ferry.ffi.defaultManager
import java.io.File
import java.util.concurrent.atomic.AtomicBoolean
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.selects.select
import kotlinx.coroutines.withContext

/**
 * The Kotlin entry point to Ferry: a download manager over one state directory (its persistent
 * task table), wrapping the generated [DownloadManager].
 *
 * Calls that write the task table ([enqueue], [pause], [cancel], ...) are `suspend` functions that
 * run on [Dispatchers.IO] (or the dispatcher given to [open]); reads ([status], [list]) are plain
 * calls that only look at memory. Every failure is a [FerryException] carrying a stable
 * [ErrorCode].
 *
 * Downloads outlive coroutines: cancelling a coroutine that is suspended in [await] or [download]
 * stops the waiting, not the transfer. Use [cancel] or [pause] for the transfer.
 *
 * ```
 * Ferry.open(File(appDir, "ferry")).use { ferry ->
 *     val done = ferry.download(url, File(appDir, "movie.mp4"), taskId = "movie")
 * }
 * ```
 *
 * [close] shuts the manager down (transfers stop with their progress saved; queued work resumes
 * when the directory is opened again) and releases the native object. A [Ferry] from [default]
 * only releases its handle: the process-wide default manager keeps running.
 */
class Ferry private constructor(
    /** The generated manager, for calls the facade does not wrap. Do not close it yourself. */
    val manager: DownloadManager,
    private val ownsManager: Boolean,
    private val io: CoroutineDispatcher,
) : AutoCloseable {

    private val closed = AtomicBoolean(false)
    private val stopped = CompletableDeferred<Unit>()
    private val eventFlows = EventFlows(stopped) { listener -> call { it.addListener(listener) } }

    /** The state directory holding the task table. */
    val stateDir: File get() = File(call { it.stateDir() })

    /** The concurrency limits now in force; change them with [setLimits]. */
    val limits: Limits get() = call { it.limits() }

    /** Number of [events] flows being collected right now (each holds one listener registration). */
    internal val activeEventFlows: Int get() = eventFlows.active

    /**
     * Enqueues a download and returns its task id. Enqueueing an id that already exists returns that
     * id without downloading again, so it is safe to repeat after a restart.
     */
    suspend fun enqueue(request: DownloadRequest): String {
        request.unencodableField()?.let { throw it }
        return io { it.enqueue(request) }
    }

    /**
     * Enqueues [url] into [destination] (see [downloadRequest] for the parameters) and returns the
     * task id.
     */
    suspend fun enqueue(
        url: String,
        destination: File,
        taskId: String? = null,
        sha256: String? = null,
        overwrite: Boolean = false,
    ): String = enqueue(downloadRequest(url, destination, taskId, sha256, overwrite))

    /**
     * Enqueues many downloads in one transaction. Returns one [BatchItem] per request, in order:
     * [BatchItem.Enqueued] with the task id or [BatchItem.Rejected] with the reason.
     */
    suspend fun enqueueAll(requests: List<DownloadRequest>): List<BatchItem> {
        val refused = requests.withIndex().mapNotNull { (i, request) ->
            request.unencodableField()?.let { i to BatchItem.Rejected(TaskErrorInfo(it.code, it.detail, null)) }
        }.toMap()
        if (refused.isEmpty()) return io { it.enqueueBatch(requests) }
        val accepted = io { m -> m.enqueueBatch(requests.filterIndexed { i, _ -> i !in refused }) }.iterator()
        return requests.indices.map { i -> refused[i] ?: accepted.next() }
    }

    /**
     * Suspends until the task is no longer queued or running, and returns its status: completed,
     * failed, cancelled or paused.
     *
     * @throws FerryException [ErrorCode.SHUT_DOWN] when this [Ferry] shuts down or closes first
     *   (the task stays in the table and resumes when the directory is opened again).
     */
    suspend fun await(taskId: String): TaskStatus {
        checkTaskId(taskId)
        val manager = live()
        return coroutineScope {
            val waiting = async {
                try {
                    manager.wait(taskId)
                } catch (e: DownloadException) {
                    throw e.toFerryException()
                }
            }
            select {
                waiting.onAwait { it }
                stopped.onAwait {
                    waiting.cancel()
                    throw FerryException(ErrorCode.SHUT_DOWN, "shut down while waiting for task $taskId")
                }
            }
        }
    }

    /**
     * Enqueues [request], waits for it, and returns the completed status.
     *
     * @throws FerryException with the task's error code when it fails, [ErrorCode.CANCELLED] when it
     *   is cancelled, [ErrorCode.INTERRUPTED] when it is paused (it stays in the table, resumable).
     */
    suspend fun download(request: DownloadRequest): TaskStatus = await(enqueue(request)).requireCompleted()

    /**
     * Downloads [url] into [destination] and returns the completed status; see [download].
     *
     * @param destination the file to create; must be absolute, its directory must exist.
     * @param taskId your id for the task (a UUID when absent); repeating it joins the same task.
     * @param sha256 expected SHA-256 (hex); the file only appears when it matches.
     * @param overwrite replace an existing file at [destination].
     */
    suspend fun download(
        url: String,
        destination: File,
        taskId: String? = null,
        sha256: String? = null,
        overwrite: Boolean = false,
    ): TaskStatus = download(downloadRequest(url, destination, taskId, sha256, overwrite))

    /**
     * Fetches a small resource into memory, without creating a task.
     *
     * @param headers extra request headers.
     * @param limit the most bytes accepted; a longer body fails with [ErrorCode.MEMORY_LIMIT_EXCEEDED].
     */
    suspend fun fetchBytes(
        url: String,
        headers: Map<String, String> = emptyMap(),
        limit: Long = DEFAULT_FETCH_LIMIT,
    ): ByteArray {
        require(limit >= 0) { "limit must not be negative" }
        checkFetchable(url, headers)
        val manager = live()
        return try {
            manager.fetchBytes(url, headers.map { (name, value) -> HttpHeader(name, value) }, limit.toULong())
        } catch (e: DownloadException) {
            throw e.toFerryException()
        }
    }

    /** A task's status. @throws FerryException [ErrorCode.TASK_NOT_FOUND] for an unknown id. */
    fun status(taskId: String): TaskStatus = checkTaskId(taskId).let { call { it.status(taskId) } }

    /** A task's status, or `null` when no task has this id. */
    fun statusOrNull(taskId: String): TaskStatus? = try {
        status(taskId)
    } catch (e: FerryException) {
        if (e.code == ErrorCode.TASK_NOT_FOUND) null else throw e
    }

    /** Every task, in enqueue order. */
    fun list(): List<TaskStatus> = call { it.list() }

    /** Pauses a task; its partial file and progress are kept. */
    suspend fun pause(taskId: String): Unit = checkTaskId(taskId).let { io { it.pause(taskId) } }

    /** Resumes a paused or failed task from where it stopped. */
    suspend fun resume(taskId: String): Unit = checkTaskId(taskId).let { io { it.resume(taskId) } }

    /** Cancels a task and deletes its partial file. Cancelling a finished task does nothing. */
    suspend fun cancel(taskId: String): Unit = checkTaskId(taskId).let { io { it.cancel(taskId) } }

    /** Forgets a task (and its partial file); with [deleteFile], also deletes a completed file. */
    suspend fun remove(taskId: String, deleteFile: Boolean = false): Unit =
        checkTaskId(taskId).let { io { it.remove(taskId, deleteFile) } }

    /** Changes a queued task's priority (higher runs first). */
    suspend fun setPriority(taskId: String, priority: Int): Unit =
        checkTaskId(taskId).let { io { it.setPriority(taskId, priority) } }

    /** Pauses every queued or running task; returns how many. */
    suspend fun pauseAll(): Int = io { it.pauseAll().toInt() }

    /** Resumes every queued, paused or failed task; returns how many. */
    suspend fun resumeAll(): Int = io { it.resumeAll().toInt() }

    /** Changes the concurrency limits at run time. */
    suspend fun setLimits(limits: Limits): Unit = io { it.setLimits(limits) }

    /** The network as last reported with [setNetwork] (available and unrestricted until then). */
    val network: NetworkState get() = call { it.network() }

    /**
     * Tells the engine the network's state; call it on every change (see [NetworkStates] and
     * `dev.ferry.work.android.NetworkReporter`). Tasks the network refuses stop with their bytes
     * kept and wait, [dev.ferry.ffi.TaskState.QUEUED] with [TaskStatus.waiting] set, spending no
     * retries; they resume on their own when a report allows them. Cheap: no I/O.
     */
    fun setNetwork(network: NetworkState): Unit = call { it.setNetwork(network) }

    /** Changes which networks a task may use; applies at once. */
    suspend fun setNetworkPolicy(taskId: String, policy: NetworkPolicy): Unit =
        checkTaskId(taskId).let { io { it.setNetworkPolicy(taskId, policy) } }

    /**
     * The cap on all downloads together in bytes per second, or null for none. Set it at open with
     * `ManagerConfig(rateLimit = ...)`; setting it here applies at once, running downloads included
     * (null or 0 lifts it).
     */
    var rateLimit: Long?
        get() = call { it.rateLimit()?.toLong() }
        set(bytesPerSecond) {
            val rate = bytesPerSecond?.let { rate(it) }
            call { it.setRateLimit(rate) }
        }

    /** A task's own cap in bytes per second, or null for none. */
    fun rateLimit(taskId: String): Long? = checkTaskId(taskId).let { call { it.taskRateLimit(taskId)?.toLong() } }

    /**
     * Caps one task over all its connections at [bytesPerSecond] (null or 0 lifts the cap), on top
     * of [rateLimit], at once if it runs. A file task's cap is stored: it holds after a reopen and
     * reaches another process that runs the task.
     */
    suspend fun setRateLimit(taskId: String, bytesPerSecond: Long?) {
        checkTaskId(taskId)
        val rate = bytesPerSecond?.let { rate(it) }
        io { it.setTaskRateLimit(taskId, rate) }
    }

    /**
     * Sets the function Ferry calls when a server answers 401 or 403 (`status`), and, with
     * [ManagerConfig.refreshBeforeResume], before a run resumes a task with bytes (`status` 0).
     * Return [freshCredentials] and the download goes on from its bytes; return `null` to give up
     * (the task fails with `ACCESS_DENIED`); throw, or take longer than
     * [ManagerConfig.refreshTimeoutMs], and it fails with `CREDENTIALS_REFRESH_FAILED`. Called on a
     * Ferry thread, never the main one: it may block on a token request. `null` removes it.
     */
    fun onCredentialsExpired(refresh: ((taskId: String, status: Int) -> FreshCredentials?)?): Unit =
        call { it.setCredentialRefresher(refresh?.let(::FunctionRefresher)) }

    /**
     * Replaces a task's URL or headers (stored with the task, used from its next request on). A
     * task that failed with `ACCESS_DENIED` is then resumed with [resume]. The server's validators
     * still decide whether the new URL serves the same bytes: a changed resource restarts cleanly.
     * Throws `INVALID_STATE` for a completed or cancelled task.
     */
    suspend fun updateCredentials(taskId: String, credentials: FreshCredentials): Unit =
        checkTaskId(taskId).let { io { it.updateCredentials(taskId, credentials) } }

    /**
     * Every engine event, in order, while collected. Collecting registers a listener; cancelling the
     * collection (or closing this [Ferry]) removes it. The flow ends when the manager shuts down,
     * through this [Ferry] or any other handle of the same state directory. Progress events are coalesced by the engine
     * at its progress cadence; state changes are never dropped. A slow collector only delays its
     * own events (apply `buffer` or `conflate` as you see fit).
     */
    val events: Flow<DownloadEvent> get() = eventFlows.flow()

    /** The events of one task; see [events]. */
    fun events(taskId: String): Flow<DownloadEvent> = events.filter { it.taskId == taskId }

    /** The progress events of one task; see [events]. */
    fun progress(taskId: String): Flow<DownloadEvent.Progress> =
        events(taskId).filterIsInstance<DownloadEvent.Progress>()

    /**
     * Stops all transfers (partial files and journals are saved; queued and running tasks resume
     * when the directory is opened again). Afterwards the manager accepts no new work, [await]
     * fails with [ErrorCode.SHUT_DOWN] and the [events] flows end.
     */
    suspend fun shutdown() {
        val manager = live()
        stop()
        manager.shutdown()
    }

    /**
     * Shuts down (for a [Ferry] from [open]; see [shutdown]) and releases the native object.
     * Further calls fail with [ErrorCode.SHUT_DOWN]. Calling it again does nothing.
     */
    override fun close() {
        if (!closed.compareAndSet(false, true)) return
        stop()
        try {
            if (ownsManager) runBlocking { manager.shutdown() }
        } finally {
            manager.destroy()
        }
    }

    /** Releases everything waiting on this [Ferry]: [await] calls and [events] flows. */
    private fun stop() {
        stopped.complete(Unit)
        eventFlows.closeAll()
    }

    private fun live(): DownloadManager {
        if (closed.get()) throw FerryException(ErrorCode.SHUT_DOWN, "this Ferry is closed")
        return manager
    }

    private inline fun <T> call(block: (DownloadManager) -> T): T {
        val manager = live()
        return try {
            block(manager)
        } catch (e: DownloadException) {
            throw e.toFerryException()
        }
    }

    private suspend fun <T> io(block: (DownloadManager) -> T): T = withContext(io) { call(block) }

    private fun rate(bytesPerSecond: Long): ULong {
        require(bytesPerSecond >= 0) { "a rate limit must not be negative" }
        return bytesPerSecond.toULong()
    }

    /** Opening managers, the process-wide default manager, and the library version. */
    companion object {
        /** The default [fetchBytes] limit: 16 MiB. */
        const val DEFAULT_FETCH_LIMIT: Long = 16L shl 20

        /**
         * Opens (creating it if needed) the manager of [stateDir]. Within one process, opening the
         * same directory again shares the same engine (and ignores the new [config]) until it is
         * closed. Other processes (a worker or service with `android:process`) may have the same
         * directory open: see "Several processes" in android/README.md for what they share. Unless [config] names a proxy, the platform's (the
         * `https.proxyHost` and `http.proxyHost` properties, which Android sets for the current
         * network) applies.
         * Throws [FerryException] with `LOCKS_UNAVAILABLE` on a file system without working file
         * locks, `PERMISSION_DENIED` for a directory that cannot be written.
         *
         * @param dispatcher where the suspend calls that write the task table run.
         * @param roots named directories whose path may change (restoring an app's data onto
         *   another device or user, moving it to other storage): a destination under one is stored
         *   relative to it and resolved against the roots of each open, so its task resumes from
         *   its bytes and reports where its file is now. For example
         *   `mapOf("files" to context.filesDir, "cache" to context.cacheDir)`. Declare the same
         *   names at every open (and in every process sharing [stateDir]); a task under a name
         *   that is not declared is listed with `ROOT_UNKNOWN` and not run. Added to
         *   [ManagerConfig.roots]; a bad root (a name used twice, a missing directory) is
         *   `INVALID_CONFIG`.
         */
        @JvmStatic
        @JvmOverloads
        fun open(
            stateDir: File,
            config: ManagerConfig = ManagerConfig(),
            dispatcher: CoroutineDispatcher = Dispatchers.IO,
            roots: Map<String, File> = emptyMap(),
        ): Ferry {
            val rooted = if (roots.isEmpty()) {
                config
            } else {
                config.copy(roots = config.roots + roots.map { (name, dir) -> PathRoot(name, dir.absolutePath) })
            }
            val manager = try {
                DownloadManager.open(stateDir.absolutePath, rooted.withPlatformProxy())
            } catch (e: DownloadException) {
                throw e.toFerryException()
            }
            return Ferry(manager, ownsManager = true, io = dispatcher)
        }

        /**
         * The process-wide default manager, the one behind the top-level `download`, `status` and
         * `cancel` functions of `dev.ferry.ffi`. Its directory comes from [setDefaultStateDir]
         * (call it first), else `$FERRY_STATE_DIR`, else the platform's data directory. Closing the
         * returned [Ferry] releases only this handle.
         */
        @JvmStatic
        fun default(dispatcher: CoroutineDispatcher = Dispatchers.IO): Ferry {
            val manager = try {
                defaultManager()
            } catch (e: DownloadException) {
                throw e.toFerryException()
            }
            return Ferry(manager, ownsManager = false, io = dispatcher)
        }

        /**
         * Chooses the default manager's state directory (on Android, a directory inside the app's
         * files dir). Call it before the first use of the default manager.
         *
         * @throws FerryException [ErrorCode.INVALID_STATE] when the default manager is already open
         *   on another directory.
         */
        @JvmStatic
        fun setDefaultStateDir(stateDir: File) {
            try {
                dev.ferry.ffi.setDefaultStateDir(stateDir.absolutePath)
            } catch (e: DownloadException) {
                throw e.toFerryException()
            }
        }

        /** The version of the native library. */
        @JvmStatic
        val version: String get() = dev.ferry.ffi.version()
    }
}
