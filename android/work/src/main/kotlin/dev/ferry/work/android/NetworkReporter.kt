// Feeds the engine from ConnectivityManager: every change of the default network, and of Data
// Saver, becomes one `Ferry.setNetwork` call. What the values mean is decided in the core
// (`dev.ferry.NetworkStates`, tested on the JVM); this file needs the Android SDK and is not built
// by android/test-jvm.sh.

package dev.ferry.work.android

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import dev.ferry.Ferry
import dev.ferry.NetworkStates

/** Reports the default network to [ferry] until [close]. Start it once, with the process. */
class NetworkReporter(context: Context, private val ferry: Ferry) : AutoCloseable {
    private val app = context.applicationContext
    private val connectivity = app.getSystemService(ConnectivityManager::class.java)
    @Volatile private var capabilities: NetworkCapabilities? = null

    private val callback = object : ConnectivityManager.NetworkCallback() {
        override fun onCapabilitiesChanged(network: Network, caps: NetworkCapabilities) {
            capabilities = caps
            report()
        }

        override fun onLost(network: Network) {
            capabilities = null
            report()
        }
    }

    private val dataSaver = object : BroadcastReceiver() {
        override fun onReceive(context: Context, intent: Intent) = report()
    }

    init {
        // The callback reports an existing default network at once, but says nothing when there
        // is none: start from what is there now.
        capabilities = connectivity.activeNetwork?.let(connectivity::getNetworkCapabilities)
        report()
        connectivity.registerDefaultNetworkCallback(callback)
        app.registerReceiver(dataSaver, IntentFilter(ConnectivityManager.ACTION_RESTRICT_BACKGROUND_CHANGED))
    }

    private fun report() {
        val caps = capabilities
        val state = if (caps == null) NetworkStates.OFFLINE else NetworkStates.of(caps::hasCapability, connectivity.restrictBackgroundStatus)
        ferry.setNetwork(state)
    }

    override fun close() {
        connectivity.unregisterNetworkCallback(callback)
        app.unregisterReceiver(dataSaver)
    }
}
