// FerryException, the one exception the facade throws, and the conversions to it from what the
// generated bindings throw and from a task's recorded error.

package dev.ferry

import dev.ferry.ffi.DownloadException
import dev.ferry.ffi.ErrorCode
import dev.ferry.ffi.TaskErrorInfo

/**
 * The one exception the facade throws. Decide what to do from [code] (stable, see [ErrorCode]) or
 * its broader [kind], never from the message.
 *
 * @property code the stable error code.
 * @property detail what happened, in words (never contains URL query strings).
 * @property httpStatus the HTTP status, when a server answered.
 * @property retryable whether a later attempt may succeed on its own (network trouble, busy
 *   servers); reported for errors of kind [ErrorKind.NETWORK].
 */
class FerryException(
    val code: ErrorCode,
    val detail: String,
    val httpStatus: Int? = null,
    val retryable: Boolean = false,
    cause: Throwable? = null,
) : Exception("$detail [${code.name} ${code.number}]", cause) {

    /** What kind of trouble this is, from the code's band. */
    val kind: ErrorKind get() = code.kind
}

/** The stable code of any [DownloadException] thrown by the generated bindings. */
val DownloadException.code: ErrorCode
    get() = when (this) {
        is DownloadException.InvalidInput -> code
        is DownloadException.Network -> code
        is DownloadException.Storage -> code
        is DownloadException.Integrity -> code
        is DownloadException.Stopped -> code
        is DownloadException.Internal -> code
    }

/** The description of any [DownloadException] thrown by the generated bindings. */
val DownloadException.detail: String
    get() = when (this) {
        is DownloadException.InvalidInput -> detail
        is DownloadException.Network -> detail
        is DownloadException.Storage -> detail
        is DownloadException.Integrity -> detail
        is DownloadException.Stopped -> detail
        is DownloadException.Internal -> detail
    }

/** This generated exception as a [FerryException] (which keeps it as its cause). */
fun DownloadException.toFerryException(): FerryException = when (this) {
    is DownloadException.Network ->
        FerryException(code, detail, httpStatus = httpStatus?.toInt(), retryable = retryable, cause = this)
    else -> FerryException(code, detail, cause = this)
}

/** The error recorded on a failed task as a [FerryException]. */
fun TaskErrorInfo.toFerryException(): FerryException = FerryException(code, message)
