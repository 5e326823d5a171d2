// Copies of the generated `ManagerConfig`, which is immutable (`generate_immutable_records`): the
// facade fills in the proxy and the roots, and every other field must survive that.

import FerryBindings

extension ManagerConfig {
    /// This configuration with `proxy`, `noProxy` and `roots` replaced. Every field is copied:
    /// keep in step with the record.
    func copy(proxy: String?, noProxy: String?, roots: [PathRoot]) -> ManagerConfig {
        ManagerConfig(
            limits: limits, connectTimeoutMs: connectTimeoutMs, idleTimeoutMs: idleTimeoutMs,
            progressIntervalMs: progressIntervalMs, retryBudget: retryBudget, retryBaseDelayMs: retryBaseDelayMs,
            resumeOnOpen: resumeOnOpen, userAgent: userAgent, extraRootCertificatesPem: extraRootCertificatesPem,
            bundledTlsRoots: bundledTlsRoots, proxy: proxy, noProxy: noProxy, roots: roots,
            waitWhenUnreachable: waitWhenUnreachable
        )
    }
}
