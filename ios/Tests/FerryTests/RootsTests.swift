import Foundation
import XCTest
import Ferry

/// Containers that move: tasks under a declared root follow it to its new path.
final class RootsTests: FerryTestCase {
    /// A container with a state directory and a Documents root, as an app lays them out.
    private func container(_ base: URL, _ name: String) throws -> (state: String, documents: URL) {
        let root = base.appendingPathComponent(name)
        let documents = root.appendingPathComponent("Documents")
        try FileManager.default.createDirectory(at: documents, withIntermediateDirectories: true)
        return (root.appendingPathComponent("state").path, documents)
    }

    /// Opens, runs `body`, shuts down; the downloader is released before this returns, so the
    /// next open of the same directory gets a new engine with its own roots.
    private func withDownloader(_ state: String, _ roots: [PathRoot], _ body: (Downloader) async throws -> Void) async throws {
        let downloader = try Downloader(stateDirectory: state, roots: roots)
        do {
            try await body(downloader)
        } catch {
            await downloader.shutdown()
            throw error
        }
        await downloader.shutdown()
    }

    func testAMovedContainerResolvesAgainstTheRootsOfTheNextOpen() async throws {
        // 4 MiB at 2 MB/s: time enough to pause it half way.
        let server = try startServer(size: 4 << 20, rate: 2_000_000)
        let base = try makeTemporaryDirectory()
        let old = try container(base, "container-1")
        try await withDownloader(old.state, [PathRoot("documents", url: old.documents)]) { downloader in
            let done = try await downloader.download(from: server.url, to: old.documents.appendingPathComponent("done.bin").path)
            XCTAssertEqual(done.destination, old.documents.appendingPathComponent("done.bin").path)
            _ = try await downloader.enqueue(DownloadRequest(
                url: server.url, destination: old.documents.appendingPathComponent("paused.bin").path, taskId: "paused"))
            try await eventually(15, "first bytes") { try await downloader.status(of: "paused").bytes > 0 }
            try await downloader.pause("paused")
            _ = try await within(15, "the pause") { try await downloader.wait(for: "paused") }
        }

        // The container moves, as iOS moves it after an update or a restore.
        try FileManager.default.moveItem(at: base.appendingPathComponent("container-1"), to: base.appendingPathComponent("container-2"))
        let new = try container(base, "container-2")
        try await withDownloader(new.state, [PathRoot("documents", url: new.documents)]) { downloader in
            let all = await downloader.tasks()
            let done = try XCTUnwrap(all.first { $0.state == .completed })
            XCTAssertEqual(done.destination, new.documents.appendingPathComponent("done.bin").path)
            let paused = try await downloader.status(of: "paused")
            XCTAssertEqual(paused.state, .paused)
            XCTAssertGreaterThan(paused.bytes, 0)
            try await downloader.resume("paused")
            let resumed = try await within(60, "the resumed download") { try await downloader.wait(for: "paused") }
            XCTAssertEqual(resumed.state, .completed)
            XCTAssertEqual(resumed.destination, new.documents.appendingPathComponent("paused.bin").path)
            XCTAssertEqual(try sha256(ofFile: new.documents.appendingPathComponent("paused.bin").path), server.sha256)
        }

        // Without the root, the task is listed as stored, with `.rootUnknown`, and not run.
        try await withDownloader(new.state, []) { downloader in
            let listed = await downloader.tasks()
            let done = try XCTUnwrap(listed.first)
            XCTAssertEqual(done.destination, "@documents/done.bin")
            XCTAssertEqual(done.error?.code, .rootUnknown)
            do {
                try await downloader.resume(done.taskId)
                XCTFail("resuming a task under an undeclared root succeeded")
            } catch let error as FerryError {
                XCTAssertEqual(error.code, .rootUnknown)
            }
        }
    }

    func testABadRootIsInvalidConfig() throws {
        let base = try makeTemporaryDirectory()
        let missing = base.appendingPathComponent("missing")
        XCTAssertThrowsError(try Downloader(stateDirectory: base.appendingPathComponent("state").path,
                                            roots: [PathRoot("documents", url: missing)])) { error in
            XCTAssertEqual((error as? FerryError)?.code, .invalidConfig)
        }
    }
}
