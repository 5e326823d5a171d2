import Foundation
import XCTest
import Ferry

/// Offline and metered networks: tasks the reported network refuses wait, with their reason, and
/// resume from their bytes when it allows them.
final class NetworkTests: FerryTestCase {
    func testOfflineTasksWaitWithTheirReasonAndResumeWhenTheNetworkReturns() async throws {
        // 2 MiB at 1 MB/s: still running when the network goes.
        let server = try startServer(size: 2 << 20, rate: 1_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("tunnel.bin").path
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination, taskId: "tunnel"))
        try await eventually(15, "first bytes") { try await downloader.status(of: id).bytes > 0 }

        downloader.setNetwork(.offline)
        try await eventually(15, "waiting for the network") { try await downloader.status(of: id).isWaitingForNetwork }
        let waiting = try await downloader.status(of: id)
        XCTAssertEqual(waiting.state, .queued)
        XCTAssertEqual(waiting.waiting, .networkUnavailable)
        XCTAssertEqual(downloader.network, .offline)

        downloader.setNetwork(.unrestricted)
        let done = try await within(60, "the resumed download") { try await downloader.wait(for: id) }
        XCTAssertEqual(done.state, .completed)
        XCTAssertNil(done.waiting)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }

    func testANotExpensiveTaskWaitsOnCellularAndRunsOnWiFi() async throws {
        let server = try startServer(size: 256 << 10)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("big.bin").path
        downloader.setNetwork(NetworkState(available: true, expensive: true, constrained: false))
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, taskId: "big", networkPolicy: .notExpensive))
        try await eventually(15, "waiting for an unmetered network") {
            try await downloader.status(of: id).waiting == .networkExpensive
        }
        let waiting = try await downloader.status(of: id)
        XCTAssertEqual(waiting.networkPolicy, .notExpensive)
        XCTAssertEqual(waiting.state, .queued)

        downloader.setNetwork(.unrestricted)
        let done = try await within(60, "the download on Wi-Fi") { try await downloader.wait(for: id) }
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }

    func testChangingThePolicyLetsAWaitingTaskRun() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("small.bin").path
        downloader.setNetwork(NetworkState(available: true, expensive: false, constrained: true))
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, networkPolicy: .notConstrained))
        try await eventually(15, "waiting in Low Data Mode") { try await downloader.status(of: id).waiting == .networkConstrained }
        try await downloader.setNetworkPolicy(.any, of: id)
        let done = try await within(60, "the download") { try await downloader.wait(for: id) }
        XCTAssertEqual(done.state, .completed)
    }
}
