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

    func testADisabledOrMissingProxyOrAnExplicitOneLeavesTheConfigurationAlone() {
        XCTAssertNil(ManagerConfig().withProxySettings(["HTTPSEnable": 0, "HTTPSProxy": "p"]).proxy)
        XCTAssertNil(ManagerConfig().withProxySettings([:]).proxy)
        XCTAssertEqual(ManagerConfig().withProxySettings(["HTTPEnable": 1, "HTTPProxy": "::1"]).proxy, "http://[::1]:80")
        let explicit = ManagerConfig(proxy: "none").withProxySettings(["HTTPSEnable": 1, "HTTPSProxy": "p", "HTTPSPort": 1])
        XCTAssertEqual(explicit.proxy, "none")
    }
}
