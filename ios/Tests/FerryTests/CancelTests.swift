import Foundation
import XCTest
import Ferry

/// Cancel stops a task for good and deletes its partial file.
final class CancelTests: FerryTestCase {
    func testCancelRemovesThePartialFile() async throws {
        let server = try startServer(size: 8 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let destination = dir.appendingPathComponent("cancelled.bin").path
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination, connections: 2))

        try await eventually(15, "first bytes") { try await downloader.status(of: id).bytes > 0 }
        XCTAssertTrue(FileManager.default.fileExists(atPath: destination + ".part"))
        try await downloader.cancel(id)
        let status = try await within(15, "wait after cancel") { try await downloader.wait(for: id) }

        XCTAssertEqual(status.state, .cancelled)
        let again = try await downloader.status(of: id)
        XCTAssertEqual(again.state, .cancelled)
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))
        // The engine reports `cancelled` as soon as it stops the transfer; the partial file goes
        // when the transfer has wound down, a moment later.
        try await eventually(5, "the partial file to be removed") {
            !FileManager.default.fileExists(atPath: destination + ".part")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testDownloadThrowsCancelledWhenItsTaskIsCancelled() async throws {
        let server = try startServer(size: 8 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let request = DownloadRequest(url: server.url, destination: destination, taskId: "cancel-me", connections: 1)

        let download = Task { try await downloader.download(request) }
        try await eventually(15, "first bytes") {
            ((try? await downloader.status(of: "cancel-me"))?.bytes ?? 0) > 0
        }
        try await downloader.cancel("cancel-me")

        do {
            _ = try await within(15, "download to end") { try await download.value }
            XCTFail("a cancelled download must throw")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .cancelled)
            XCTAssertEqual(error.kind, .stopped)
        }
    }

    func testCancellingTheAwaitingTaskStopsWaitingButNotTheDownload() async throws {
        let server = try startServer(size: 4 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, connections: 1, sha256: server.sha256))

        let waiter = Task { try await downloader.wait(for: id) }
        try await Task.sleep(nanoseconds: 200_000_000)  // let it start waiting
        waiter.cancel()
        do {
            _ = try await within(5, "cancelled wait") { try await waiter.value }
            XCTFail("a cancelled wait must throw")
        } catch is CancellationError {}

        let status = try await within(30, "the download itself") { try await downloader.wait(for: id) }
        XCTAssertEqual(status.state, .completed)
    }
}
