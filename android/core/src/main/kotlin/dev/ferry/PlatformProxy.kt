// The platform's proxy for the engine: Rust reads `https_proxy` and friends from the environment,
// but not the JVM's proxy properties, which is where Android publishes the proxy of the current
// network (and a JVM its -Dhttps.proxyHost). `Ferry.open` passes it in `ManagerConfig.proxy` /
// `noProxy` when the caller set neither.

package dev.ferry

import dev.ferry.ffi.ManagerConfig

/**
 * This configuration with the proxy named by the `https.proxyHost` / `https.proxyPort` properties,
 * else `http.proxyHost` / `http.proxyPort`, and the `http.nonProxyHosts` exceptions, unless it
 * names a proxy already.
 */
internal fun ManagerConfig.withPlatformProxy(property: (String) -> String? = System::getProperty): ManagerConfig {
    if (proxy != null) return this
    fun entry(scheme: String): String? {
        val host = property("$scheme.proxyHost")?.trim()?.takeIf { it.isNotEmpty() } ?: return null
        val port = property("$scheme.proxyPort")?.trim()?.toIntOrNull() ?: 80
        val shown = if (':' in host && !host.startsWith("[")) "[$host]" else host
        return "http://$shown:$port"
    }
    val url = entry("https") ?: entry("http") ?: return this
    val exceptions = noProxy ?: property("http.nonProxyHosts")
        ?.split('|')?.map { it.trim() }?.filter { it.isNotEmpty() }?.takeIf { it.isNotEmpty() }?.joinToString(",")
    return copy(proxy = url, noProxy = exceptions)
}
