// Credentials that expire: signed URLs and bearer tokens that run out before a large or paused
// download ends. The function Ferry calls for fresh ones, and the call that replaces a task's URL
// or headers; the engine decides when to ask and whether a new URL serves the same bytes.
package dev.ferry

import dev.ferry.ffi.CallbackException
import dev.ferry.ffi.CredentialRefresher
import dev.ferry.ffi.FreshCredentials
import dev.ferry.ffi.HttpHeader

/** Fresh credentials: a new [url] for the same resource, new [headers], or both (`null` keeps). */
fun freshCredentials(url: String? = null, headers: Map<String, String>? = null): FreshCredentials =
    FreshCredentials(url = url, headers = headers?.map { (name, value) -> HttpHeader(name, value) })

/** Calls the app's function; whatever it throws becomes the task's `CREDENTIALS_REFRESH_FAILED`. */
internal class FunctionRefresher(
    private val refresh: (taskId: String, status: Int) -> FreshCredentials?,
) : CredentialRefresher {
    override fun refresh(taskId: String, status: UShort): FreshCredentials? = try {
        refresh(taskId, status.toInt())
    } catch (e: CallbackException) {
        throw e
    } catch (e: Exception) {
        throw CallbackException.Failed(e.toString())
    }
}
