import Foundation
import XCTest
import Ferry

/// Bandwidth caps: a task's cap holds over its connections, lifting it shows at once, and the
/// global cap is set at open and changed at run time.
final class RateLimitTests: FerryTestCase {
    func testATaskCapHoldsOverItsConnectionsAndLiftingItLetsTheRestThrough() async throws {
        let server = try startServer(size: 16 << 20)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("capped.bin").path
        let cap: UInt64 = 1 << 20
        let taskId = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, connections: 3, rateLimit: cap))
        let asked = try await downloader.rateLimit(of: taskId)
        XCTAssertEqual(asked, cap)
        try await eventually(15, "first bytes") { try await downloader.status(of: taskId).bytes > 0 }
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let (from, bytesFrom) = (Date(), try await downloader.status(of: taskId).bytes)
        try await Task.sleep(nanoseconds: 2_000_000_000)
        let (to, bytesTo) = (Date(), try await downloader.status(of: taskId).bytes)
        let rate = Double(bytesTo - bytesFrom) / to.timeIntervalSince(from)
        XCTAssertEqual(rate, Double(cap), accuracy: Double(cap) * 0.15, "measured \(rate) B/s")

        // 13 MiB left: 13 s at the cap, far less without it.
        try await downloader.setRateLimit(nil, of: taskId)
        let done = try await within(8, "the uncapped rest") { try await downloader.wait(for: taskId) }
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }

    func testTheGlobalCapIsSetAtOpenAndChangedAtRunTime() async throws {
        let downloader = try makeDownloader(config: ManagerConfig(rateLimit: 2 << 20))
        XCTAssertEqual(downloader.rateLimit, 2 << 20)
        await downloader.setRateLimit(512 << 10)
        XCTAssertEqual(downloader.rateLimit, 512 << 10)
        await downloader.setRateLimit(nil)
        XCTAssertNil(downloader.rateLimit)
    }
}
