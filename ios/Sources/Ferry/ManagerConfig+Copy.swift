// The generated `ManagerConfig` is immutable (its fields are `let`, so it is `Sendable`): the
// facade's adjustments (the system proxy, named roots) build a copy here, the one place that
// lists every field. Keep it in step with the record; `SystemProxyTests.testEveryOtherFieldSurvivesTheCopy`
// fails when a field is dropped.

import FerryBindings

extension ManagerConfig {
    /// This configuration with the given fields replaced (`nil`: kept as they are).
    func replacing(proxy: String? = nil, noProxy: String? = nil, roots: [PathRoot]? = nil) -> ManagerConfig {
        ManagerConfig(
            limits: limits, connectTimeoutMs: connectTimeoutMs, idleTimeoutMs: idleTimeoutMs,
            progressIntervalMs: progressIntervalMs, retryBudget: retryBudget, retryBaseDelayMs: retryBaseDelayMs,
            resumeOnOpen: resumeOnOpen, userAgent: userAgent, extraRootCertificatesPem: extraRootCertificatesPem,
            bundledTlsRoots: bundledTlsRoots, proxy: proxy ?? self.proxy, noProxy: noProxy ?? self.noProxy,
            roots: roots ?? self.roots, rateLimit: rateLimit, refreshTimeoutMs: refreshTimeoutMs,
            refreshBeforeResume: refreshBeforeResume, waitWhenUnreachable: waitWhenUnreachable,
            network: network, minSpeedBytesPerSecond: minSpeedBytesPerSecond, minSpeedWindowMs: minSpeedWindowMs
        )
    }
}
