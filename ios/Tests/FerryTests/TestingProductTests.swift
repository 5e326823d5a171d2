import Foundation
import XCTest
import Ferry
import FerryTesting

/// FerryTesting as an app's unit tests use it: the ios/README.md example (run verbatim), and the
/// faults reaching a `Downloader` as the app would see them.
final class TestingProductTests: FerryTestCase {
    func testReadmeTestingExample() async throws {
        let stateDir = try makeTemporaryDirectory().appendingPathComponent("state").path
        let destination = try makeTemporaryDirectory().appendingPathComponent("file.bin").path

        try await within(60, "the README testing example") {
            // README testing: begin
            let server = try TestServer(TestServerConfig(busyRequests: 1))  // a 503 with Retry-After: 1, then the file
            let downloader = try Downloader(stateDirectory: stateDir)
            let status = try await downloader.download(from: server.url, to: destination)
            XCTAssertEqual(status.bytes, server.size)
            XCTAssertEqual(server.stats.requests, 2)  // the 503 and the retry
            // README testing: end
            await downloader.shutdown()
        }
    }

    /// ios/README.md shows exactly the lines `testReadmeTestingExample` runs.
    func testReadmeShowsTheTestedTestingSnippet() throws {
        let here = URL(fileURLWithPath: #filePath)
        let readme = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let tested = try lines(of: String(contentsOf: here, encoding: .utf8),
                               between: "// README testing: begin", and: "// README testing: end")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let section = text.range(of: "## Unit-testing your download code") else {
            throw TestFailure("ios/README.md has no \"Unit-testing your download code\" section")
        }
        let shown = try lines(of: String(text[section.upperBound...]), between: "```swift", and: "```")
        XCTAssertEqual(shown, tested)
        XCTAssertLessThanOrEqual(tested.count, 6)
    }

    func testAnErrorPageFailsTheDownloadWithItsCode() async throws {
        let server = try startServer(TestServerConfig())
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("missing.bin").path
        do {
            _ = try await within(30, "a 404") { try await downloader.download(from: server.statusURL(404), to: destination) }
            XCTFail("a 404 completed")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .notFound)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination))
    }

    func testADroppedConnectionIsRetriedToTheExactBytes() async throws {
        let server = try startServer(TestServerConfig(size: 2 << 20, dropAfter: 256 << 10, dropRequests: 1))
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("dropped.bin").path
        let status = try await within(60, "the download") {
            try await downloader.download(DownloadRequest(url: server.url(named: "dropped.bin"), destination: destination, connections: 1))
        }
        XCTAssertEqual(status.bytes, server.size)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertEqual(server.stats.requests, 2, "the dropped one and the retry: \(server.log)")
    }

    func testStatsWithinWaitsForTheServerAndGivesUpInTime() async throws {
        let server = try startServer(TestServerConfig(size: 4 << 20, rate: 1 << 20))
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("slow.bin").path
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination, connections: 1))
        let seen = try await server.stats(within: 20) { $0.bodyBytes >= 512 << 10 }
        XCTAssertGreaterThanOrEqual(seen.bodyBytes, 512 << 10)
        try await downloader.pause(id)
        do {
            try await server.stats(within: 0.2) { $0.requests > 100 }
            XCTFail("no timeout")
        } catch let timeout as TestServer.Timeout {
            XCTAssertEqual(timeout.seconds, 0.2)
        }
        XCTAssertEqual(server.redirectURL(hops: 2), server.base + "/redirect/2")
    }

    /// The lines strictly between the first line containing `begin` and the next containing `end`,
    /// without their common indentation.
    private func lines(of text: String, between begin: String, and end: String) throws -> [String] {
        let lines = text.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.contains(begin) }),
              let stop = lines[(start + 1)...].firstIndex(where: { $0.contains(end) }) else {
            throw TestFailure("no lines between \(begin) and \(end)")
        }
        let body = Array(lines[(start + 1)..<stop])
        let indent = body.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { $0.prefix(while: { $0 == " " }).count }.min() ?? 0
        return body.map { String($0.dropFirst(indent)) }
    }
}
