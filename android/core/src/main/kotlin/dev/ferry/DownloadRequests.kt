package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import java.io.File

/**
 * A [DownloadRequest] for [url] into the file [destination], which must be absolute (a relative
 * path is refused with [dev.ferry.ffi.ErrorCode.RELATIVE_DESTINATION]) and whose directory must exist.
 *
 * @param taskId your id for the task (a UUID when absent).
 * @param sha256 expected SHA-256 (hex); the file only appears when it matches.
 * @param overwrite replace an existing file at [destination].
 */
fun downloadRequest(
    url: String,
    destination: File,
    taskId: String? = null,
    sha256: String? = null,
    overwrite: Boolean = false,
): DownloadRequest = DownloadRequest(
    url = url,
    destination = destination.path,
    taskId = taskId,
    sha256 = sha256,
    overwrite = overwrite,
)

/** Whether UTF-8 can carry this string: it holds no lone surrogate (which a Java string may). */
internal fun String.isValidUnicode(): Boolean {
    var i = 0
    while (i < length) {
        val c = this[i]
        if (c.isHighSurrogate()) {
            if (i + 1 >= length || !this[i + 1].isLowSurrogate()) return false
            i += 2
            continue
        }
        if (c.isLowSurrogate()) return false
        i++
    }
    return true
}

/**
 * The error for a field of this request that cannot cross to the engine (a lone surrogate), with
 * the code the engine gives that field's other mistakes; `null` when every field can.
 */
internal fun DownloadRequest.unencodableField(): FerryException? {
    val fields = listOf(
        Triple(url, ErrorCode.INVALID_URL, "the URL"),
        Triple(taskId, ErrorCode.INVALID_TASK_ID, "the task id"),
        // Like a NUL byte: a path the engine could never create.
        Triple(destination, ErrorCode.DESTINATION_NOT_WRITABLE, "the destination path"),
        Triple(sha256, ErrorCode.INVALID_CHECKSUM, "the checksum"),
    ) + headers.flatMap { listOf(Triple(it.name, ErrorCode.INVALID_HEADER, "a header name"), Triple(it.value, ErrorCode.INVALID_HEADER, "a header value")) }
    val bad = fields.firstOrNull { (value, _, _) -> value != null && !value.isValidUnicode() } ?: return null
    return FerryException(bad.second, "${bad.third} is not valid Unicode (it holds a lone surrogate)")
}

/** No task can have an id that is not valid Unicode: [ErrorCode.TASK_NOT_FOUND], as for any unknown id. */
internal fun checkTaskId(taskId: String) {
    if (!taskId.isValidUnicode()) throw FerryException(ErrorCode.TASK_NOT_FOUND, "no task has an id that is not valid Unicode")
}
