package dev.ferry

import dev.ferry.ffi.ManagerConfig
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertNull

/** The JVM's (and Android's) proxy properties become the engine's proxy configuration. */
class PlatformProxyTest {
    private fun props(vararg pairs: Pair<String, String>): (String) -> String? = mapOf(*pairs)::get

    @Test
    fun theHttpsProxyComesFirstWithItsExceptions() {
        val config = ManagerConfig().withPlatformProxy(
            props(
                "http.proxyHost" to "plain.corp", "http.proxyPort" to "8080",
                "https.proxyHost" to "secure.corp", "https.proxyPort" to "3128",
                "http.nonProxyHosts" to "localhost|*.local|10.1.2.3",
            ),
        )
        assertEquals("http://secure.corp:3128", config.proxy)
        assertEquals("localhost,*.local,10.1.2.3", config.noProxy)
    }

    @Test
    fun noPropertyOrAnExplicitProxyLeavesTheConfigurationAlone() {
        assertNull(ManagerConfig().withPlatformProxy(props()).proxy)
        assertEquals("http://[::1]:80", ManagerConfig().withPlatformProxy(props("http.proxyHost" to "::1")).proxy)
        val explicit = ManagerConfig(proxy = "none").withPlatformProxy(props("https.proxyHost" to "p"))
        assertEquals("none", explicit.proxy)
        assertNull(explicit.noProxy)
    }
}
