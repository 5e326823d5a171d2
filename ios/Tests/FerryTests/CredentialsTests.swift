import Foundation
import XCTest
import Ferry
import FerryTesting

/// Credentials that expire: a signed URL that runs out while the download is paused is replaced
/// through the closure, and the download finishes from its bytes; a closure that throws fails the
/// task with `.credentialsRefreshFailed`.
final class CredentialsTests: FerryTestCase {
    func testAPausedDownloadWhoseURLExpiredResumesThroughTheClosure() async throws {
        let server = try startServer(size: 4 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let asked = LockedBox<[Int]>([])
        downloader.onCredentialsExpired { _, status in
            asked.update { $0.append(status) }
            return FreshCredentials(url: URL(string: server.signedURL(validFor: 300_000)))
        }
        let destination = try makeTemporaryDirectory().appendingPathComponent("signed.bin").path
        _ = try await downloader.enqueue(DownloadRequest(url: server.signedURL(validFor: 1_500), destination: destination, taskId: "signed"))
        try await eventually(15, "first bytes") { try await downloader.status(of: "signed").bytes > 0 }
        try await downloader.pause("signed")
        _ = try await within(15, "the pause") { try await downloader.wait(for: "signed") }
        try await Task.sleep(nanoseconds: 1_800_000_000)
        try await downloader.resume("signed")
        let done = try await within(60, "the resumed download") { try await downloader.wait(for: "signed") }
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertFalse(asked.get().isEmpty)
        XCTAssertTrue(asked.get().allSatisfy { $0 == 403 })
    }

    func testAClosureThatThrowsFailsTheTaskTyped() async throws {
        struct TokenServiceDown: Error {}
        let server = try startServer(size: 1 << 20)
        let downloader = try makeDownloader()
        downloader.onCredentialsExpired { _, _ in throw TokenServiceDown() }
        let destination = try makeTemporaryDirectory().appendingPathComponent("denied.bin").path
        let taskId = try await downloader.enqueue(DownloadRequest(url: server.signedURL(validFor: 0), destination: destination))
        let status = try await within(60, "the failure") { try await downloader.wait(for: taskId) }
        XCTAssertEqual(status.state, .failed)
        XCTAssertEqual(status.error?.code, .credentialsRefreshFailed)
        XCTAssertTrue(status.error?.message.contains("TokenServiceDown") ?? false, "\(String(describing: status.error))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))
    }

    func testUpdateCredentialsThenResumeFinishesATaskThatWasDenied() async throws {
        let server = try startServer(size: 1 << 20)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("later.bin").path
        _ = try await downloader.enqueue(DownloadRequest(url: server.signedURL(validFor: 0), destination: destination, taskId: "later"))
        let first = try await within(60, "the denial") { try await downloader.wait(for: "later") }
        XCTAssertEqual(first.error?.code, .accessDenied)
        try downloader.updateCredentials("later", FreshCredentials(url: URL(string: server.signedURL(validFor: 300_000))))
        try await downloader.resume("later")
        let done = try await within(60, "the resumed download") { try await downloader.wait(for: "later") }
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }
}
