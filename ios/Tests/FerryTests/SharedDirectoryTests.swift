import Foundation
import XCTest
import Ferry

/// A state directory another process has open (as an app and its extension share one App Group
/// container): a `ferry get` child downloads into it while this process opens the same directory,
/// sees the task with its progress, and follows it to its end.
final class SharedDirectoryTests: FerryTestCase {
    func testADirectoryAnotherProcessDownloadsIntoOpensAndShowsItsTask() async throws {
        let server = try startServer(size: 3 << 20, rate: 1_000_000)
        let dir = try makeTemporaryDirectory()
        let stateDir = dir.appendingPathComponent("state").path
        let destination = dir.appendingPathComponent("cli.bin").path
        let cli = Process()
        cli.executableURL = URL(fileURLWithPath: FerryCLI.binary)
        cli.arguments = ["--state-dir", stateDir, "get", server.url, "-x", "2", "--quiet", "--id", "cli", "-o", destination]
        cli.standardInput = FileHandle.nullDevice
        try cli.run()
        defer {
            if cli.isRunning {
                cli.terminate()
                cli.waitUntilExit()
            }
        }
        try await eventually(30, "the CLI to create the task table") {
            FileManager.default.fileExists(atPath: stateDir + "/tasks.sqlite3")
        }
        let downloader = try Downloader(stateDirectory: stateDir)
        do {
            try await eventually(30, "the CLI's task to show here, moving") {
                ((try? await downloader.status(of: "cli"))?.bytes ?? 0) > 0
            }
            let seen = try await downloader.status(of: "cli")
            XCTAssertEqual(seen.state, .running)
            let ids = await downloader.tasks().map(\.taskId)
            XCTAssertEqual(ids, ["cli"])
            try await eventually(30, "more progress") { try await downloader.status(of: "cli").bytes > seen.bytes }
            let done = try await within(60, "the CLI's download to end") { try await downloader.wait(for: "cli") }
            XCTAssertEqual(done.state, .completed)
        } catch {
            await downloader.shutdown()
            throw error
        }
        await downloader.shutdown()
        let deadline = Date().addingTimeInterval(30)
        while cli.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        XCTAssertFalse(cli.isRunning, "the CLI did not exit")
        XCTAssertEqual(cli.terminationStatus, 0)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }
}
