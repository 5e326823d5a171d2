import Foundation
import XCTest
import Ferry
import FerryTesting

/// A download that cannot fit fails at once with `.diskFull` and the numbers, leaving no file.
final class StorageTests: FerryTestCase {
    func testADownloadLargerThanTheFreeSpaceFailsAtOnceWithTheNumbers() async throws {
        let pib = 1 << 50  // more than any test machine's disk
        let server = try startServer(size: pib)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("huge.bin").path
        let taskId = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination))
        let status = try await within(60, "the failure") { try await downloader.wait(for: taskId) }
        XCTAssertEqual(status.state, .failed)
        XCTAssertEqual(status.error?.code, .diskFull)
        XCTAssertTrue(status.error?.message.contains(String(pib)) ?? false, "\(String(describing: status.error))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))
        XCTAssertLessThan(server.stats.bodyBytes, 16 << 20, "failed at the start, not after gigabytes")
    }
}
