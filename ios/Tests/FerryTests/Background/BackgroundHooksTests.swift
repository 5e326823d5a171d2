import Foundation
import XCTest
import Ferry

/// Background time held around a hand-off and always given back.
@MainActor
final class RecordingExecution: BackgroundExecution {
    var begun: [String] = []
    var ended: [Int] = []
    var expireWhileBeginning = false
    private var next = 1

    func beginTask(named name: String, expirationHandler: @escaping @MainActor @Sendable () -> Void) -> Int {
        begun.append(name)
        let token = next
        next += 1
        if expireWhileBeginning { expirationHandler() }
        return token
    }

    func endTask(_ token: Int) {
        ended.append(token)
    }
}

/// The app's one-line hooks: the hand-off inside background time, and the OS's completion
/// handler given back only after the ingests.
final class BackgroundHooksTests: FerryTestCase {
    let session = "dev.ferry.tests.session"

    struct World {
        let downloader: Downloader
        let downloads: BackgroundDownloads
        let hooks: BackgroundHooks
        let os: ScriptedTransport
        let log: EventLog
        let run: RunningDownload
    }

    func running(execution: BackgroundExecution? = nil, options: BackgroundDownloads.Options? = nil,
                 ingestQueue: DispatchQueue? = nil) async throws -> World {
        let (server, twin) = try startServers(size: 8 * MiB, rate: 1_000_000)
        let downloader = try makeDownloader()
        let run = try await startRunningDownload(on: downloader, server: server, twin: twin)
        let os = ScriptedTransport(temporaryDirectory: try makeTemporaryDirectory())
        let log = EventLog()
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: options ?? testOptions(),
                                            ingestQueue: ingestQueue, observer: log.observer)
        let session = self.session
        let hooks = await MainActor.run {
            BackgroundHooks(downloads: downloads, sessionIdentifier: session, execution: execution ?? NoBackgroundExecution())
        }
        return World(downloader: downloader, downloads: downloads, hooks: hooks, os: os, log: log, run: run)
    }

    func testEnteringTheBackgroundHandsOffInsideBackgroundTimeThatIsAlwaysGivenBack() async throws {
        let execution = RecordingExecution()
        let w = try await running(execution: execution)

        try await within(30, "hand-off") { await w.hooks.didEnterBackground().value }
        var (begun, ended) = await (execution.begun, execution.ended)
        XCTAssertEqual(begun, ["Ferry hand-off"])
        XCTAssertEqual(ended, [1], "ended once the hand-off is done")
        XCTAssertGreaterThan(w.os.requests.count, 1, "the OS tasks were created inside the background time")
        let status = try await w.downloader.status(of: w.run.taskId)
        XCTAssertTrue(status.handedOff)

        // The time runs out before the hand-off ends: given back once, not twice.
        await MainActor.run { execution.expireWhileBeginning = true }
        try await within(30, "second hand-off") { await w.hooks.didEnterBackground().value }
        ended = await execution.ended
        XCTAssertEqual(ended, [1, 2])

        // The hand-off fails: still given back, and the failure reported.
        await w.downloader.shutdown()
        await MainActor.run { execution.expireWhileBeginning = false }
        try await within(30, "failing hand-off") { await w.hooks.didEnterBackground().value }
        (begun, ended) = await (execution.begun, execution.ended)
        XCTAssertEqual(begun.count, 3)
        XCTAssertEqual(ended, [1, 2, 3])
        XCTAssertEqual(w.log.failures.count, 1, "\(w.log.failures)")
        XCTAssertTrue(w.log.failures.first?.hasPrefix("hand-off") == true)
    }

    func testTheOSCompletionHandlerIsCalledOnceAfterTheSessionsEventsAreIngested() async throws {
        let w = try await running()
        try await within(30, "hand-off") { await w.hooks.didEnterBackground().value }
        let requests = w.os.requests
        let calls = LockedBox<[Int]>([])  // how many ingests had run at each call
        let log = w.log
        let session = self.session
        let (mine, theirs) = await MainActor.run {
            (w.hooks.handleEvents(forBackgroundURLSession: session) { calls.update { $0.append(log.outcomes.count) } },
             w.hooks.handleEvents(forBackgroundURLSession: "someone.else") { XCTFail("not our session") })
        }
        XCTAssertTrue(mine)
        XCTAssertFalse(theirs)

        for r in requests { try w.os.finishWell(r, from: w.run.reference) }
        try await Task.sleep(nanoseconds: 200_000_000)
        XCTAssertEqual(calls.get(), [], "not before the OS says it delivered everything")
        w.os.allEventsDelivered()
        try await eventually(10, "the completion handler") { calls.get().count == 1 }
        XCTAssertEqual(calls.get(), [requests.count], "called after every ingest")
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(calls.get().count, 1, "and only once")
        let status = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(status.state, .completed)
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }

    func testTheCompletionHandlerIsCalledAfterATimeoutWhenIngestsHang() async throws {
        let held = DispatchQueue(label: "held-ingests")
        held.suspend()
        var resumed = false
        defer { if !resumed { held.resume() } }
        let w = try await running(options: testOptions(completionTimeout: 0.5), ingestQueue: held)
        let result = try await within(30, "hand-off") { try await w.downloads.handOff() }
        let calls = LockedBox<[Int]>([])
        let log = w.log
        let session = self.session
        _ = await MainActor.run {
            w.hooks.handleEvents(forBackgroundURLSession: session) { calls.update { $0.append(log.outcomes.count) } }
        }
        let first = result.requests[0]
        try w.os.finishWell(first, from: w.run.reference)
        w.os.allEventsDelivered()
        try await eventually(10, "the completion handler, after its timeout") { calls.get().count == 1 }
        XCTAssertEqual(calls.get(), [0], "the ingest was still waiting")
        held.resume()
        resumed = true
        await w.downloads.drain()
        XCTAssertTrue(w.log.outcomes(of: first.leaseId).first?.isCommitted == true, "\(w.log.outcomes)")
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(calls.get().count, 1, "never twice")
    }

    func testTheSwiftUIBackgroundTaskReturnsAfterTheIngests() async throws {
        let w = try await running()
        let requests = try await within(30, "hand-off") { try await w.downloads.handOff() }.requests
        let hooks = w.hooks
        let waiting = Task { await hooks.urlSessionEvents() }
        try await Task.sleep(nanoseconds: 100_000_000)  // the closure is running and waiting
        for r in requests { try w.os.finishWell(r, from: w.run.reference) }
        w.os.allEventsDelivered()
        try await within(10, ".backgroundTask(.urlSession) to return") { await waiting.value }
        XCTAssertEqual(w.log.outcomes.count, requests.count)
        XCTAssertTrue(w.log.outcomes.allSatisfy { $0.outcome.isCommitted })
    }
}
