// Refusing, before a call crosses to the engine, the strings that have no UTF-8 form: a Java
// string may hold a lone surrogate. Each refusal carries the code the engine gives that field's
// other mistakes. Ferry.kt runs them before each call that takes such strings.

package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode

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

/**
 * Refuses a [Ferry.fetchBytes] URL or header that cannot cross to the engine (a lone surrogate),
 * with the code the engine gives that field's other mistakes.
 */
internal fun checkFetchable(url: String, headers: Map<String, String>) {
    if (!url.isValidUnicode()) throw FerryException(ErrorCode.INVALID_URL, "the URL is not valid Unicode (it holds a lone surrogate)")
    if (!headers.all { (name, value) -> name.isValidUnicode() && value.isValidUnicode() }) {
        throw FerryException(ErrorCode.INVALID_HEADER, "a header is not valid Unicode (it holds a lone surrogate)")
    }
}
