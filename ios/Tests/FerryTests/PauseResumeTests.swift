import Foundation
import XCTest
import Ferry

/// Pause keeps the bytes received; resume continues from them and completes.
final class PauseResumeTests: FerryTestCase {
    func testPauseKeepsBytesAndResumeCompletes() async throws {
        // 8 MiB over 2 connections capped at 2 MB/s each: about 2 s, time enough to pause.
        let server = try startServer(size: 8 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("paused.bin").path
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, connections: 2, sha256: server.sha256))

        try await eventually(15, "first bytes") { try await downloader.status(of: id).bytes > 0 }
        try await downloader.pause(id)
        let paused = try await within(15, "wait after pause") { try await downloader.wait(for: id) }

        XCTAssertEqual(paused.state, .paused)
        XCTAssertGreaterThan(paused.bytes, 0)
        XCTAssertLessThan(paused.bytes, UInt64(server.size))
        XCTAssertTrue(FileManager.default.fileExists(atPath: destination + ".part"), "the partial file is kept")
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))

        try await Task.sleep(nanoseconds: 500_000_000)
        let later = try await downloader.status(of: id)
        XCTAssertEqual(later.state, .paused)
        XCTAssertEqual(later.bytes, paused.bytes, "no bytes move while paused")

        // Every progress report after resuming starts from the bytes kept, never from 0.
        let progress = LockedBox<[UInt64]>([])
        let subscription = downloader.addListener { event in
            if event.taskId == id, let bytes = event.bytes { progress.update { $0.append(bytes) } }
        }
        defer { subscription.cancel() }
        try await downloader.resume(id)
        let done = try await within(60, "wait after resume") { try await downloader.wait(for: id) }

        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(done.bytes, UInt64(server.size))
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertGreaterThanOrEqual(progress.get().min() ?? UInt64(server.size), paused.bytes)
    }
}
