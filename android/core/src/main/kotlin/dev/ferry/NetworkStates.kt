// The engine's NetworkState from what Android's ConnectivityManager says, decided here on plain
// values so that the JVM tests cover it; the callback that feeds it lives in the `work` module
// (NetworkReporter), which needs the Android SDK.

package dev.ferry

import dev.ferry.ffi.NetworkState

/** Builds [NetworkState]s from `NetworkCapabilities` and the Data Saver status. */
object NetworkStates {
    /** `NetworkCapabilities.NET_CAPABILITY_NOT_METERED`. */
    const val NET_CAPABILITY_NOT_METERED: Int = 11

    /** `NetworkCapabilities.NET_CAPABILITY_INTERNET`. */
    const val NET_CAPABILITY_INTERNET: Int = 12

    /** `NetworkCapabilities.NET_CAPABILITY_VALIDATED`: the internet was actually reached. */
    const val NET_CAPABILITY_VALIDATED: Int = 16

    /** `NetworkCapabilities.NET_CAPABILITY_TEMPORARILY_NOT_METERED` (API 30): free for now. */
    const val NET_CAPABILITY_TEMPORARILY_NOT_METERED: Int = 25

    /** `ConnectivityManager.RESTRICT_BACKGROUND_STATUS_ENABLED`: Data Saver is on for this app. */
    const val RESTRICT_BACKGROUND_STATUS_ENABLED: Int = 3

    /** No default network (`onLost`, or none at registration). */
    val OFFLINE: NetworkState = NetworkState(available = false, expensive = false, constrained = false)

    /**
     * The state of the default network whose capabilities [has] answers, with the app's
     * `getRestrictBackgroundStatus()`. Available once it has the internet and was validated (a
     * captive portal is not); expensive when metered; constrained when Data Saver is on for this
     * app on a metered network (Android applies Data Saver to metered networks only).
     */
    fun of(has: (capability: Int) -> Boolean, restrictBackgroundStatus: Int): NetworkState {
        val available = has(NET_CAPABILITY_INTERNET) && has(NET_CAPABILITY_VALIDATED)
        val metered = !has(NET_CAPABILITY_NOT_METERED) && !has(NET_CAPABILITY_TEMPORARILY_NOT_METERED)
        val saver = restrictBackgroundStatus == RESTRICT_BACKGROUND_STATUS_ENABLED
        return NetworkState(available = available, expensive = metered, constrained = metered && saver)
    }
}
