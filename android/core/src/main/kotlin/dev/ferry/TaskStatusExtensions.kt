// Conveniences on the generated TaskState and TaskStatus: state groups, the file, the percentage,
// the failure, and requireCompleted() for callers that want an exception instead of a state.

package dev.ferry

import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskState
import dev.ferry.ffi.TaskStatus
import java.io.File

/** Queued or running: the engine is still working on it. */
val TaskState.isActive: Boolean get() = this == TaskState.QUEUED || this == TaskState.RUNNING

/** Paused or failed: kept in the table with its partial file; `resume` continues it. */
val TaskState.isResumable: Boolean get() = this == TaskState.PAUSED || this == TaskState.FAILED

/** Completed or cancelled: nothing more will happen to it. */
val TaskState.isFinal: Boolean get() = this == TaskState.COMPLETED || this == TaskState.CANCELLED

/** Queued or running. */
val TaskStatus.isActive: Boolean get() = state.isActive

/**
 * Queued and held back by the network (none, or one its policy refuses): [TaskStatus.waiting]
 * says why. It resumes from its bytes on its own once a reported network allows it.
 */
val TaskStatus.isWaitingForNetwork: Boolean get() = state == TaskState.QUEUED && waiting != null

/** Done and verified. */
val TaskStatus.isCompleted: Boolean get() = state == TaskState.COMPLETED

/** Stopped by an error ([failure] says which). */
val TaskStatus.isFailed: Boolean get() = state == TaskState.FAILED

/** The destination file, for file outputs. */
val TaskStatus.file: File? get() = destination?.let(::File)

/** Progress as a whole percentage, 0..100 (0 while the length is unknown). */
val TaskStatus.percent: Int get() = (progress * 100).toInt().coerceIn(0, 100)

/** The error of a failed task (or the last retried error of a running one), as an exception. */
val TaskStatus.failure: FerryException? get() = error?.toFerryException()

/**
 * Returns this status when the task completed, and throws otherwise.
 *
 * @throws FerryException the task's own error when it failed, [ErrorCode.CANCELLED] when it was
 *   cancelled, [ErrorCode.INTERRUPTED] when it is paused, queued or running.
 */
fun TaskStatus.requireCompleted(): TaskStatus = when (state) {
    TaskState.COMPLETED -> this
    TaskState.FAILED -> throw failure ?: FerryException(ErrorCode.INTERNAL, "task $taskId failed without an error")
    TaskState.CANCELLED -> throw FerryException(ErrorCode.CANCELLED, "task $taskId was cancelled")
    TaskState.PAUSED, TaskState.QUEUED, TaskState.RUNNING ->
        throw FerryException(ErrorCode.INTERRUPTED, "task $taskId is ${state.name.lowercase()}, not completed")
}
