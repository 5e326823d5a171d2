// Building a DownloadRequest from a File, with the defaults most downloads want.

package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.NetworkPolicy
import java.io.File

/**
 * A [DownloadRequest] for [url] into the file [destination], which must be absolute (a relative
 * path is refused with [dev.ferry.ffi.ErrorCode.RELATIVE_DESTINATION]) and whose directory must exist.
 *
 * @param taskId your id for the task (a UUID when absent).
 * @param sha256 expected SHA-256 (hex); the file only appears when it matches.
 * @param overwrite replace an existing file at [destination].
 * @param rateLimit cap on the task's bytes per second over all its connections (null: none); stored
 *   with a file task, change it with [Ferry.setRateLimit].
 * @param networkPolicy which networks it may use (any when absent); see [Ferry.setNetwork].
 */
fun downloadRequest(
    url: String,
    destination: File,
    taskId: String? = null,
    sha256: String? = null,
    overwrite: Boolean = false,
    rateLimit: Long? = null,
    networkPolicy: NetworkPolicy? = null,
): DownloadRequest = DownloadRequest(
    url = url,
    destination = destination.path,
    taskId = taskId,
    sha256 = sha256,
    overwrite = overwrite,
    rateLimit = rateLimit?.also { require(it >= 0) { "a rate limit must not be negative" } }?.toULong(),
    networkPolicy = networkPolicy,
)
