import Foundation
import XCTest
import Ferry

/// What happens across the end of a process: a relaunch that finds chunks staged and leases live
/// from the previous process, with events the OS held for it; a force-quit, after which the
/// engine fetches what is left itself; a process killed between staging a chunk and ingesting it.
final class RelaunchTests: FerryTestCase {
    let session = "dev.ferry.tests.session"

    /// What a first process leaves behind.
    struct FirstProcess {
        let run: RunningDownload
        let requests: [OsRangeRequest]
        let bytesAtHandoff: UInt64
        /// Its ingest queue, to resume once the process is gone.
        let ingests: DispatchQueue
        let gone: () -> Bool
    }

    /// A process that runs a download, hands it off to `os`, gets one chunk ingested, then (with
    /// `stageOneMore`) one more staged but not ingested, and ends: its manager shut down and every
    /// reference to it dropped.
    func firstProcess(stateDirectory: String, os: ScriptedTransport, stageOneMore: Bool) async throws -> FirstProcess {
        let (server, twin) = try startServers(size: 8 * MiB, rate: 1_000_000)
        let downloader = try Downloader(stateDirectory: stateDirectory)
        let run = try await startRunningDownload(on: downloader, server: server, twin: twin)
        let ingests = DispatchQueue(label: "first-process-ingests")
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), ingestQueue: ingests)
        let requests = try await within(30, "hand-off") { try await downloads.handOff() }.requests
        XCTAssertGreaterThanOrEqual(requests.count, 4)
        let bytesAtHandoff = try await downloader.status(of: run.taskId).bytes
        try os.finishWell(requests[0], from: run.reference)
        await downloads.drain()
        ingests.suspend()
        if stageOneMore {
            try os.finishWell(requests[1], from: run.reference)
            XCTAssertTrue(staged(in: stateDirectory).contains("\(requests[1].leaseId).meta"), "staged, not ingested")
        }
        await downloader.shutdown()
        let weakly = WeakBox(downloader)
        return FirstProcess(run: run, requests: requests, bytesAtHandoff: bytesAtHandoff, ingests: ingests,
                            gone: { weakly.value == nil })
    }

    func testARelaunchInTheBackgroundFindsStagedChunksLiveLeasesAndTheEventsHeldForIt() async throws {
        let stateDirectory = try makeTemporaryDirectory().appendingPathComponent("state").path
        let os = ScriptedTransport(temporaryDirectory: try makeTemporaryDirectory())  // outlives the process
        let first = try await firstProcess(stateDirectory: stateDirectory, os: os, stageOneMore: true)
        first.ingests.resume()  // its queued ingest finds the coordinator gone
        XCTAssertTrue(first.gone(), "nothing of the first process is left")
        let requests = first.requests
        let atRelaunch = first.run.server.stats

        // While no process ran: one OS task vanished, another finished and waits to be delivered.
        os.vanish([requests[2].osTag])
        let downloader = try Downloader(stateDirectory: stateDirectory)
        let log = EventLog()
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), observer: log.observer)
        let session = self.session
        let hooks = await MainActor.run { BackgroundHooks(downloads: downloads, sessionIdentifier: session) }
        let relaunched = try await downloader.status(of: first.run.taskId)
        XCTAssertEqual(relaunched.state, .running)
        XCTAssertTrue(relaunched.handedOff, "still the OS's after a relaunch")
        XCTAssertEqual(Set(downloads.liveLeases().map(\.leaseId)), Set(requests.dropFirst().map(\.leaseId)))

        await hooks.didFinishLaunching(inForeground: false).value
        let calls = LockedBox<[String]>([])
        _ = await MainActor.run {
            hooks.handleEvents(forBackgroundURLSession: session) {
                calls.update { $0.append(log.events.map { String(describing: $0) }.joined(separator: "\n")) }
            }
        }
        try os.finishWell(requests[3], from: first.run.reference)
        os.allEventsDelivered()
        try await eventually(10, "the completion handler") { calls.get().count == 1 }

        XCTAssertTrue(log.outcomes(of: requests[1].leaseId).first?.isCommitted == true, "the chunk the first process staged")
        XCTAssertTrue(log.outcomes(of: requests[3].leaseId).first?.isCommitted == true, "the chunk the OS held")
        let exported = log.events.flatMap { event -> [OsRangeRequest] in
            if case let .started(requests) = event { return requests } else { return [] }
        }
        XCTAssertEqual(exported.count, 1, "the vanished range, leased again in the background")
        XCTAssertEqual(exported.first?.start, requests[2].start)
        XCTAssertEqual(exported.first?.endInclusive, requests[2].endInclusive)
        XCTAssertNotEqual(exported.first?.leaseId, requests[2].leaseId)
        let atCompletion = calls.get()[0]
        XCTAssertTrue(atCompletion.contains(requests[1].leaseId) && atCompletion.contains("started"),
                      "the completion handler came after the ingests and the reconcile")

        for r in os.running { try os.finishWell(r, from: first.run.reference) }
        await downloads.drain()
        let done = try await downloader.status(of: first.run.taskId)
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: first.run.destination), first.run.server.sha256)
        let after = first.run.server.stats
        XCTAssertEqual(after.requests, atRelaunch.requests, "the relaunched engine fetched nothing the OS had")
        XCTAssertEqual(staged(in: stateDirectory), [])
        XCTAssertEqual(log.failures, [])
        await downloader.shutdown()
    }

    func testAfterAForceQuitTheEngineFetchesWhatIsLeftItselfWithIfRange() async throws {
        let stateDirectory = try makeTemporaryDirectory().appendingPathComponent("state").path
        let os = ScriptedTransport(temporaryDirectory: try makeTemporaryDirectory())
        let first = try await firstProcess(stateDirectory: stateDirectory, os: os, stageOneMore: false)
        first.ingests.resume()
        XCTAssertTrue(first.gone())
        os.vanish()  // the user swiped the app away: iOS cancels every task, and no one hears of it

        let downloader = try Downloader(stateDirectory: stateDirectory)
        let log = EventLog()
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), observer: log.observer)
        let session = self.session
        let hooks = await MainActor.run { BackgroundHooks(downloads: downloads, sessionIdentifier: session) }
        let before = first.run.server.stats
        await hooks.didFinishLaunching(inForeground: true).value  // the user opens the app again

        let done = try await finished(downloader, first.run.taskId)
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: first.run.destination), first.run.server.sha256)
        let after = first.run.server.stats
        let firstChunk = first.requests[0].endInclusive! - first.requests[0].start + 1
        let left = UInt64(8 * MiB) - first.bytesAtHandoff - firstChunk
        XCTAssertGreaterThan(after.ifRangeRequests, before.ifRangeRequests, "resumed with If-Range")
        XCTAssertGreaterThanOrEqual(after.bodyBytes - before.bodyBytes, left)
        XCTAssertLessThanOrEqual(after.bodyBytes - before.bodyBytes, left + 4 * (16 << 10),
                                 "only what the OS never delivered is fetched again")
        XCTAssertEqual(os.requests.count, first.requests.count, "nothing given to the OS again in the foreground")
        XCTAssertEqual(log.failures, [])
        await downloader.shutdown()
    }
}

/// A weak reference.
final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}
