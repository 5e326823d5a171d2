// The platform's proxy for the engine: Rust reads `https_proxy` and friends from the environment,
// but not Apple's System Configuration (the proxy set in Settings or by a profile). `Downloader`
// passes it in `ManagerConfig.proxy` / `noProxy` when the caller set neither.

import Foundation
#if canImport(CFNetwork)
import CFNetwork
#endif

extension ManagerConfig {
    /// This configuration with the system's HTTP(S) proxy, unless it names a proxy already.
    func withSystemProxy() -> ManagerConfig {
        guard proxy == nil else { return self }
        #if canImport(CFNetwork)
        guard let settings = CFNetworkCopySystemProxySettings()?.takeRetainedValue() as? [String: Any] else { return self }
        return withProxySettings(settings)
        #else
        return self
        #endif
    }

    /// This configuration with the proxy of a System Configuration proxy dictionary (the keys of
    /// `CFNetworkCopySystemProxySettings`): the HTTPS proxy, else the HTTP one, and the exceptions
    /// list, unless the configuration names a proxy already. Automatic configuration (PAC) is not
    /// evaluated.
    public func withProxySettings(_ settings: [String: Any]) -> ManagerConfig {
        guard proxy == nil else { return self }
        func number(_ key: String) -> Int? {
            if let i = settings[key] as? Int { return i }
            return (settings[key] as? NSNumber)?.intValue
        }
        func entry(_ prefix: String) -> String? {
            guard number("\(prefix)Enable") == 1, let host = settings["\(prefix)Proxy"] as? String, !host.isEmpty else { return nil }
            let shown = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
            return "http://\(shown):\(number("\(prefix)Port") ?? 80)"
        }
        guard let url = entry("HTTPS") ?? entry("HTTP") else { return self }
        var exceptions = noProxy
        if exceptions == nil, let list = settings["ExceptionsList"] as? [String], !list.isEmpty {
            exceptions = list.joined(separator: ",")
        }
        return copy(proxy: url, noProxy: exceptions, roots: roots)
    }
}
