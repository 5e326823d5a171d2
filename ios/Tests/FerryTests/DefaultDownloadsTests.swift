import Foundation
import XCTest
import Ferry

/// The seed-style API: `download` / `status` / `cancel` on the process-wide default downloader.
/// Only this test may choose the default state directory (it is process-wide).
final class DefaultDownloadsTests: FerryTestCase {
    func testSeedStyleDownloadStatusAndCancel() async throws {
        let stateDir = try makeTemporaryDirectory().appendingPathComponent("default-state").path
        try DefaultDownloads.setStateDirectory(stateDir)
        let server = try startServer(size: 1 << 20)
        let slow = try startServer(size: 8 << 20, rate: 1_000_000, seed: 7)
        let dir = try makeTemporaryDirectory()
        let destination = dir.appendingPathComponent("seed.bin").path

        let id = try DefaultDownloads.download(url: server.url, destination: destination, taskId: "seed-1")
        XCTAssertEqual(id, "seed-1")
        try await eventually(30, "the seed download to complete") {
            try DefaultDownloads.status(of: id).state == .completed
        }
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertEqual(try DefaultDownloads.download(url: server.url, destination: destination, taskId: "seed-1"), "seed-1",
                       "the same id is not downloaded twice")
        XCTAssertEqual(try DefaultDownloads.downloader().stateDirectory, stateDir)

        let slowDestination = dir.appendingPathComponent("slow.bin").path
        let slowId = try DefaultDownloads.download(url: slow.url, destination: slowDestination, taskId: "seed-2")
        try await eventually(15, "first bytes") { try DefaultDownloads.status(of: slowId).bytes > 0 }
        try DefaultDownloads.cancel(slowId)
        try await eventually(15, "cancelled") { try DefaultDownloads.status(of: slowId).state == .cancelled }
        XCTAssertFalse(FileManager.default.fileExists(atPath: slowDestination))
        // The engine reports `cancelled` as soon as it stops the transfer; the partial file goes
        // when the transfer has wound down, a moment later.
        try await eventually(5, "the partial file to be removed") {
            !FileManager.default.fileExists(atPath: slowDestination + ".part")
        }

        XCTAssertThrowsError(try DefaultDownloads.setStateDirectory(stateDir + "-other")) { error in
            XCTAssertEqual((error as? FerryError)?.code, .invalidState)
        }
        XCTAssertThrowsError(try DefaultDownloads.status(of: "never-enqueued")) { error in
            XCTAssertEqual((error as? FerryError)?.code, .taskNotFound)
        }
        XCTAssertFalse(ferryVersion.isEmpty)
    }
}
