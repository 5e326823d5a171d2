import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
import Ferry

/// A process SIGKILLed between staging a chunk and ingesting it: the chunk is ingested when the
/// state directory is opened again. The process is this test binary, re-run as a child on one test
/// of this class, which stages and then waits to be killed.
final class KilledProcessTests: FerryTestCase {
    static let childEnvironment = "FERRY_TESTS_KILLED_CHILD"

    struct ChildSpec: Codable {
        let stateDirectory: String
        let url: String
        let twinURL: String
        let sha256: String
        let destination: String
        let marker: String
        let temporaryDirectory: String
    }

    #if os(Linux)
    func testAChunkStagedByAProcessKilledBeforeItsIngestIsIngestedOnReopen() async throws {
        let (server, twin) = try startServers(size: 8 * MiB, rate: 1_000_000)
        let dir = try makeTemporaryDirectory()
        let spec = ChildSpec(
            stateDirectory: dir.appendingPathComponent("state").path, url: server.url, twinURL: twin.url,
            sha256: server.sha256, destination: dir.appendingPathComponent("killed.bin").path,
            marker: dir.appendingPathComponent("staged").path, temporaryDirectory: dir.appendingPathComponent("os-tmp").path)
        let childLog = dir.appendingPathComponent("child.log")
        _ = FileManager.default.createFile(atPath: childLog.path, contents: nil)

        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        child.arguments = ["FerryTests.KilledProcessTests/testChildHalfStagesAChunkThenWaitsToBeKilled"]
        var environment = ProcessInfo.processInfo.environment
        environment[Self.childEnvironment] = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        child.environment = environment
        let output = try FileHandle(forWritingTo: childLog)
        child.standardOutput = output
        child.standardError = output
        try child.run()
        defer {
            // Never leave the child behind, whatever failed.
            if child.isRunning { kill(child.processIdentifier, SIGKILL) }
            child.waitUntilExit()
            try? output.close()
        }
        do {
            try await eventually(90, "the child to stage a chunk") {
                FileManager.default.fileExists(atPath: spec.marker) || !child.isRunning
            }
        } catch {
            throw TestFailure("\(error); child log:\n\(String(decoding: (try? Data(contentsOf: childLog)) ?? Data(), as: UTF8.self).suffix(3000))")
        }
        XCTAssertTrue(child.isRunning, "the child waits to be killed: \(String(decoding: (try? Data(contentsOf: childLog)) ?? Data(), as: UTF8.self).suffix(3000))")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        XCTAssertEqual(child.terminationStatus, SIGKILL)

        let stagedLease = try String(contentsOfFile: spec.marker, encoding: .utf8)
        XCTAssertTrue(staged(in: spec.stateDirectory).contains("\(stagedLease).meta"), "\(staged(in: spec.stateDirectory))")

        // The app is launched again; the OS kept running the tasks of the other leases.
        let downloader = try Downloader(stateDirectory: spec.stateDirectory)
        let os = ScriptedTransport(temporaryDirectory: URL(fileURLWithPath: spec.temporaryDirectory))
        let log = EventLog()
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), observer: log.observer)
        let live = downloads.liveLeases()
        XCTAssertTrue(live.contains { $0.leaseId == stagedLease }, "its lease is still live")
        os.adopt(live.filter { $0.leaseId != stagedLease })
        let plan = try await downloads.reconcile(foreground: false)
        XCTAssertEqual(plan.ingestLeaseIds, [stagedLease])
        XCTAssertEqual(plan.cancelOsTags, [])
        XCTAssertEqual(plan.export, [])
        await downloads.drain()
        XCTAssertTrue(log.outcomes(of: stagedLease).first?.isCommitted == true, "\(log.outcomes)")

        let reference = try await Reference.fetch(twin.url)
        for r in os.running { try os.finishWell(r, from: reference) }
        await downloads.drain()
        let done = try await downloader.status(of: "killed")
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: spec.destination), server.sha256)
        XCTAssertEqual(staged(in: spec.stateDirectory), [])
        await downloader.shutdown()
    }
    #endif

    /// The child's half: runs only in the child process the test above starts.
    func testChildHalfStagesAChunkThenWaitsToBeKilled() async throws {
        guard let json = ProcessInfo.processInfo.environment[Self.childEnvironment] else {
            throw XCTSkip("the child half of testAChunkStagedByAProcessKilledBeforeItsIngestIsIngestedOnReopen")
        }
        let spec = try JSONDecoder().decode(ChildSpec.self, from: Data(json.utf8))
        let downloader = try Downloader(stateDirectory: spec.stateDirectory)
        let id = try await downloader.enqueue(DownloadRequest(
            url: spec.url, destination: spec.destination, taskId: "killed", connections: 4, sha256: spec.sha256))
        try await eventually(30, "some bytes") { try await downloader.status(of: id).bytes >= UInt64(MiB) }
        let reference = try await Reference.fetch(spec.twinURL)
        let ingests = DispatchQueue(label: "never-runs")
        ingests.suspend()  // the kill comes between staging and ingesting
        let os = ScriptedTransport(temporaryDirectory: URL(fileURLWithPath: spec.temporaryDirectory))
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), ingestQueue: ingests)
        let requests = try await downloads.handOff().requests
        try os.finishWell(requests[0], from: reference)
        try requests[0].leaseId.write(toFile: spec.marker, atomically: true, encoding: .utf8)
        try await Task.sleep(nanoseconds: 120_000_000_000)
        XCTFail("the parent did not kill this process")
    }
}
