// The engine's event listener as Kotlin Flows: the plumbing behind `Ferry.events`, kept apart from
// the manager facade so that Ferry.kt holds the calls and this file what a collection registers,
// and how every flow ends.

package dev.ferry

import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.EventListener
import dev.ferry.ffi.ListenerRegistration
import java.util.concurrent.ConcurrentHashMap
import kotlinx.coroutines.Deferred
import kotlinx.coroutines.channels.SendChannel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch

/**
 * The event flows of one [Ferry]. Each collection registers an engine listener through [register]
 * and ends when the collection is cancelled, when the [Ferry] stops ([stopped] completes and it
 * calls [closeAll]), or when the engine ends the registration (a shutdown through another handle of
 * the same state directory).
 */
internal class EventFlows(
    private val stopped: Deferred<Unit>,
    private val register: (EventListener) -> ListenerRegistration,
) {
    private val channels = ConcurrentHashMap.newKeySet<SendChannel<DownloadEvent>>()

    /** Number of flows being collected right now (each holds one listener registration). */
    val active: Int get() = channels.size

    /** Every engine event, in order, while collected; see [Ferry.events]. */
    fun flow(): Flow<DownloadEvent> = callbackFlow {
        val channel = this.channel
        val listener = object : EventListener {
            override fun onEvent(event: DownloadEvent) {
                // Blocks only this listener's own delivery thread; fails at once when closed.
                channel.trySendBlocking(event)
            }
        }
        val registration = register(listener)
        channels += channel
        if (stopped.isCompleted) channel.close()
        // Delivery also ends when the engine manager shuts down through another handle of the
        // same state directory (once the events queued before were delivered): end the flow.
        launch {
            registration.waitEnded()
            channel.close()
        }
        awaitClose {
            channels -= channel
            registration.cancel()
            registration.destroy()
        }
    }

    /** Ends every flow being collected (the [Ferry] has stopped; later ones end at once). */
    fun closeAll() {
        channels.forEach { it.close() }
    }
}
