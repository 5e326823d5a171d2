import Foundation
import XCTest
import Ferry

/// The system's proxy dictionary becomes the engine's proxy configuration.
final class SystemProxyTests: XCTestCase {
    func testTheHttpsProxyComesFirstWithItsExceptions() {
        let settings: [String: Any] = [
            "HTTPEnable": 1, "HTTPProxy": "plain.corp", "HTTPPort": 8080,
            "HTTPSEnable": 1, "HTTPSProxy": "secure.corp", "HTTPSPort": 3128,
            "ExceptionsList": ["*.local", "10.0.0.0/8"],
        ]
        let config = ManagerConfig(retryBudget: 3, userAgent: "app/1").withProxySettings(settings)
        XCTAssertEqual(config.proxy, "http://secure.corp:3128")
        XCTAssertEqual(config.noProxy, "*.local,10.0.0.0/8")
        XCTAssertEqual(config.retryBudget, 3, "the other fields are kept")
        XCTAssertEqual(config.userAgent, "app/1")
    }

    /// The record is immutable, so the facade copies it: no field may be lost on the way (the
    /// roots were, once). Every field here differs from its default.
    func testEveryOtherFieldSurvivesTheCopy() {
        let full = ManagerConfig(
            limits: Limits(maxRunningTasks: 2, maxConnectionsPerHost: 3, maxConnectionsPerTask: 4),
            connectTimeoutMs: 1, idleTimeoutMs: 2, progressIntervalMs: 3, retryBudget: 4, retryBaseDelayMs: 5,
            resumeOnOpen: false, userAgent: "app/1", extraRootCertificatesPem: ["PEM"], bundledTlsRoots: true,
            proxy: nil, noProxy: "a.example", roots: [PathRoot(name: "docs", path: "/tmp")], rateLimit: 7,
            refreshTimeoutMs: 8, refreshBeforeResume: true, waitWhenUnreachable: true,
            network: NetworkState(available: true, expensive: true, constrained: false),
            minSpeedBytesPerSecond: 9, minSpeedWindowMs: 10
        )
        let copied = full.withProxySettings(["HTTPSEnable": 1, "HTTPSProxy": "p", "HTTPSPort": 1])
        XCTAssertEqual(copied.proxy, "http://p:1")
        let expected = ManagerConfig(
            limits: full.limits, connectTimeoutMs: 1, idleTimeoutMs: 2, progressIntervalMs: 3, retryBudget: 4, retryBaseDelayMs: 5,
            resumeOnOpen: false, userAgent: "app/1", extraRootCertificatesPem: ["PEM"], bundledTlsRoots: true,
            proxy: "http://p:1", noProxy: "a.example", roots: full.roots, rateLimit: 7,
            refreshTimeoutMs: 8, refreshBeforeResume: true, waitWhenUnreachable: true,
            network: NetworkState(available: true, expensive: true, constrained: false),
            minSpeedBytesPerSecond: 9, minSpeedWindowMs: 10
        )
        XCTAssertEqual(copied, expected)
    }

    func testADisabledOrMissingProxyOrAnExplicitOneLeavesTheConfigurationAlone() {
        XCTAssertNil(ManagerConfig().withProxySettings(["HTTPSEnable": 0, "HTTPSProxy": "p"]).proxy)
        XCTAssertNil(ManagerConfig().withProxySettings([:]).proxy)
        XCTAssertEqual(ManagerConfig().withProxySettings(["HTTPEnable": 1, "HTTPProxy": "::1"]).proxy, "http://[::1]:80")
        let explicit = ManagerConfig(proxy: "none").withProxySettings(["HTTPSEnable": 1, "HTTPSProxy": "p", "HTTPSPort": 1])
        XCTAssertEqual(explicit.proxy, "none")
    }
}
