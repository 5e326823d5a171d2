// Conveniences on the generated DownloadEvent: which task an event is about, and what it says.

package dev.ferry

import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.TaskState

/** The task this event is about. */
val DownloadEvent.taskId: String
    get() = when (this) {
        is DownloadEvent.Progress -> taskId
        is DownloadEvent.StateChanged -> taskId
    }

/** Whether this event says the task entered [state]. */
fun DownloadEvent.isTransitionTo(state: TaskState): Boolean = this is DownloadEvent.StateChanged && to == state
