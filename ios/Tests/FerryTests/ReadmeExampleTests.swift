import Foundation
import XCTest
import Ferry

/// The example of ios/README.md, run verbatim.
final class ReadmeExampleTests: FerryTestCase {
    func testReadmeExample() async throws {
        let server = try startServer(size: 4 << 20, rate: 4_000_000)
        let (url, sha256) = (server.url, server.sha256)
        let stateDir = try makeTemporaryDirectory().appendingPathComponent("state").path
        let destination = try makeTemporaryDirectory().appendingPathComponent("file.bin").path

        try await within(60, "the README example") {
            // README begin
            let downloader = try Downloader(stateDirectory: stateDir)
            let events = downloader.events()  // subscribe before enqueueing
            let id = try await downloader.enqueue(DownloadRequest(url: url, destination: destination, sha256: sha256))
            for await event in events where event.taskId == id {
                if let fraction = event.fractionCompleted { print("\(Int(fraction * 100))%") }
                if event.newState?.isActive == false { break }  // completed, failed, paused or cancelled
            }
            let status = try await downloader.wait(for: id)
            print(status.state, status.bytes)  // completed 4194304
            // README end
            XCTAssertEqual(status.state, .completed)
            await downloader.shutdown()
        }
        XCTAssertEqual(try self.sha256(ofFile: destination), sha256)
    }

    /// The README shows exactly the lines that `testReadmeExample` runs.
    func testReadmeShowsTheTestedSnippet() throws {
        let here = URL(fileURLWithPath: #filePath)
        let readme = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let tested = try snippet(in: String(contentsOf: here, encoding: .utf8), from: "// README begin", to: "// README end")
        let shown = try snippet(in: String(contentsOf: readme, encoding: .utf8), from: "```swift", to: "```")
        XCTAssertEqual(shown, tested)
        XCTAssertLessThanOrEqual(tested.count, 10)
    }

    /// The lines strictly between the first line containing `begin` and the next containing `end`,
    /// without their common indentation.
    private func snippet(in text: String, from begin: String, to end: String) throws -> [String] {
        let lines = text.components(separatedBy: "\n")
        guard let start = lines.firstIndex(where: { $0.contains(begin) }),
              let stop = lines[(start + 1)...].firstIndex(where: { $0.contains(end) }) else {
            throw TestFailure("no snippet between \(begin) and \(end)")
        }
        let body = Array(lines[(start + 1)..<stop])
        let indent = body.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { $0.prefix(while: { $0 == " " }).count }.min() ?? 0
        return body.map { String($0.dropFirst(indent)) }
    }
}
