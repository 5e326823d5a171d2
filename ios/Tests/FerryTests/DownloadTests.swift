import Foundation
import XCTest
import Ferry

/// Real downloads from a loopback server, checked byte for byte.
final class DownloadTests: FerryTestCase {
    func testDownloadFromLoopbackMatchesSHA256() async throws {
        let server = try startServer(size: 4 << 20)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("file.bin").path

        let status = try await within(30, "download") {
            try await downloader.download(from: server.url, to: destination, sha256: server.sha256)
        }

        XCTAssertEqual(status.state, .completed)
        XCTAssertEqual(status.bytes, UInt64(server.size))
        XCTAssertEqual(status.total, UInt64(server.size))
        XCTAssertEqual(status.destination, destination)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination + ".part"))
    }

    func testFailedDownloadThrowsTheTaskErrorWithItsCode() async throws {
        let server = try startServer(size: 1024)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("missing.bin").path

        do {
            _ = try await within(30, "download of a 404") {
                try await downloader.download(from: server.base + "/status/404", to: destination)
            }
            XCTFail("a 404 must fail")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .notFound)
            XCTAssertEqual(error.errorCode, 2004)
            XCTAssertEqual(error.kind, .network)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))
    }

    func testTasksListsWhatWasEnqueued() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()

        let first = try await downloader.enqueue(DownloadRequest(url: server.url, destination: dir.appendingPathComponent("a").path, taskId: "a"))
        let second = try await downloader.enqueue(DownloadRequest(url: server.url, destination: dir.appendingPathComponent("b").path, taskId: "b"))
        _ = try await within(30, "both tasks") {
            (try await downloader.wait(for: first), try await downloader.wait(for: second))
        }

        let tasks = await downloader.tasks()
        XCTAssertEqual(tasks.map(\.taskId), ["a", "b"])
        XCTAssertEqual(tasks.map(\.state), [.completed, .completed])
        try await downloader.remove("a", deletingFile: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("a").path))
        let remaining = await downloader.tasks()
        XCTAssertEqual(remaining.map(\.taskId), ["b"])
    }
}
