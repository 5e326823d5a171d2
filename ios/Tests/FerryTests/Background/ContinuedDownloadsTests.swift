import Foundation
import XCTest
import Ferry
import FerryTesting

/// Continued downloads (iOS 26's continued processing tasks) with the real engine against loopback
/// servers and a scripted scheduler: the engine keeps the covered downloads after background
/// entry, the task reports their progress steadily and ends with them, and an expiration hands
/// off the covered downloads still running exactly as background entry would.
final class ContinuedDownloadsTests: FerryTestCase {
    struct World {
        let downloader: Downloader
        let downloads: BackgroundDownloads
        let hooks: BackgroundHooks
        let os: ScriptedTransport
        let scheduler: ScriptedContinuedProcessing
        let execution: RecordingExecution
        let log: EventLog
    }

    func world(mode: ScriptedContinuedProcessing.Mode = .start, expirationTimeout: TimeInterval = 10) async throws -> World {
        let downloader = try makeDownloader()
        let os = ScriptedTransport(temporaryDirectory: try makeTemporaryDirectory())
        let log = EventLog()
        let downloads = BackgroundDownloads(downloader: downloader, transport: os, options: testOptions(), observer: log.observer)
        let (hooks, scheduler, execution) = await MainActor.run {
            let scheduler = ScriptedContinuedProcessing(mode: mode)
            let execution = RecordingExecution()
            let hooks = BackgroundHooks(
                downloads: downloads, sessionIdentifier: "dev.ferry.tests.session", execution: execution,
                continuedProcessing: scheduler,
                continuedOptions: ContinuedDownloads.Options(reportInterval: 0.05, expirationTimeout: expirationTimeout))
            return (hooks, scheduler, execution)
        }
        return World(downloader: downloader, downloads: downloads, hooks: hooks, os: os, scheduler: scheduler,
                     execution: execution, log: log)
    }

    /// Enqueues a download of a file of `size` bytes served at `rate` bytes per second per
    /// connection (4 connections), and waits until the engine has some of it.
    func download(_ w: World, id: String, size: Int, rate: Int) async throws -> (server: TestServer, destination: String) {
        let server = try startServer(size: size, rate: rate)
        let destination = try makeTemporaryDirectory().appendingPathComponent("\(id).bin").path
        _ = try await w.downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, taskId: id, connections: 4, sha256: server.sha256))
        try await eventually(30, "\(id) under way") { try await w.downloader.status(of: id).bytes > 0 }
        return (server, destination)
    }

    /// The one started task, once the scheduler started it.
    func started(_ w: World, count: Int = 1) async throws -> ScriptedContinuedTask {
        let scheduler = w.scheduler
        try await eventually(10, "the continued task to start") { await MainActor.run { scheduler.tasks.count == count } }
        return await MainActor.run { scheduler.tasks[count - 1] }
    }

    func completionsSoFar(_ task: ScriptedContinuedTask) async -> [Bool] {
        await MainActor.run { task.completions }
    }

    /// Waits (bounded) until the task was completed at least once.
    func completed(_ task: ScriptedContinuedTask, within seconds: TimeInterval = 60) async throws -> [Bool] {
        try await eventually(seconds, "the continued task to complete") { await MainActor.run { !task.completions.isEmpty } }
        return await MainActor.run { task.completions }
    }

    func status(_ w: World, _ id: String) async throws -> TaskStatus {
        try await w.downloader.status(of: id)
    }

    func handedOffTaskIds(_ os: ScriptedTransport) -> Set<String> {
        Set(os.requests.map(\.taskId))
    }

    func testTheEngineKeepsTheDownloadsAfterBackgroundEntryAndTheTaskReportsThemAndEndsWithThem() async throws {
        let w = try await world()
        let a = try await download(w, id: "a", size: 4 * MiB, rate: 250_000)  // about 4 s
        let b = try await download(w, id: "b", size: 1 * MiB, rate: 250_000)
        let hooks = w.hooks
        let identifier = try await MainActor.run { try hooks.continueInBackground(taskIds: ["a", "b", "a"], title: "Downloading") }
        let task = try await started(w)
        let request = await MainActor.run { w.scheduler.requests }
        XCTAssertEqual(request.map(\.identifier), [identifier])
        XCTAssertEqual(request.first?.request, ContinuedProcessingRequest(title: "Downloading", subtitle: "0 of 2 files"))
        let covered = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covered, ["a", "b"])

        let before = try await w.downloader.status(of: "a")
        XCTAssertEqual(before.state, .running, "still running when the app leaves")
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(w.os.requests.count, 0, "nothing handed to the OS: the engine keeps both")
        let kept = try await status(w, "a")
        XCTAssertFalse(kept.handedOff)

        let completions = try await completed(task)
        XCTAssertEqual(completions, [true])
        let (updates, subtitles) = await MainActor.run { (task.updates, task.subtitles) }
        let size = Int64(5 * MiB)
        XCTAssertEqual(updates.last?.completed, size)
        XCTAssertEqual(updates.last?.total, size)
        XCTAssertGreaterThanOrEqual(updates.count, 10, "reported every 50 ms for seconds")
        XCTAssertGreaterThanOrEqual(Set(updates.map(\.completed)).count, 5, "progress moved while the files came")
        for (previous, next) in zip(updates, updates.dropFirst()) {
            XCTAssertLessThanOrEqual(previous.completed, next.completed, "never backwards")
        }
        XCTAssertTrue(updates.allSatisfy { $0.completed <= $0.total && $0.total > 0 }, "\(updates)")
        XCTAssertEqual(subtitles.last, "2 of 2 files")
        XCTAssertEqual(subtitles, ["1 of 2 files", "2 of 2 files"], "set when it changes, and only then")
        XCTAssertEqual(try sha256(ofFile: a.destination), a.server.sha256)
        XCTAssertEqual(try sha256(ofFile: b.destination), b.server.sha256)
        let covers = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covers, [], "an ended task covers nothing")

        // Ended: no more reports.
        let reported = updates.count
        try await Task.sleep(nanoseconds: 300_000_000)
        let after = await MainActor.run { (task.updates.count, task.completions) }
        XCTAssertEqual(after.0, reported)
        XCTAssertEqual(after.1, [true], "completed once")
    }

    func testProgressNeverGoesBackWhenACoveredDownloadIsCancelledAndTheTaskEndsUnsuccessfully() async throws {
        let w = try await world()
        _ = try await download(w, id: "kept", size: 2 * MiB, rate: 250_000)
        _ = try await download(w, id: "dropped", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["kept", "dropped"], title: "Downloading") }
        let task = try await started(w)
        let downloader = w.downloader
        try await eventually(30, "a good part of the dropped download") { try await downloader.status(of: "dropped").bytes >= UInt64(MiB) }
        try await eventually(10, "a report of it") { await MainActor.run { (task.updates.last?.completed ?? 0) >= Int64(MiB) } }
        try await w.downloads.cancel("dropped")  // its bytes go with its file
        let completions = try await completed(task)
        XCTAssertEqual(completions, [false], "one download did not complete")
        let updates = await MainActor.run { task.updates }
        for (previous, next) in zip(updates, updates.dropFirst()) {
            XCTAssertLessThanOrEqual(previous.completed, next.completed, "never backwards: \(updates)")
        }
        XCTAssertTrue(updates.allSatisfy { $0.completed <= $0.total }, "\(updates)")
        let kept = try await status(w, "kept")
        XCTAssertEqual(kept.state, .completed)
    }

    func testAnExpirationLeavesAloneTheDownloadsAnotherRunningTaskCovers() async throws {
        let w = try await world()
        for id in ["first", "shared", "second"] { _ = try await download(w, id: id, size: 8 * MiB, rate: 250_000) }
        let hooks = w.hooks
        try await MainActor.run {
            _ = try hooks.continueInBackground(taskIds: ["first", "shared"], title: "One")
            _ = try hooks.continueInBackground(taskIds: ["shared", "second"], title: "Two")
        }
        _ = try await started(w, count: 2)
        let (first, two) = await MainActor.run { (w.scheduler.tasks[0], w.scheduler.tasks[1]) }
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(w.os.requests.count, 0, "all three covered")

        await MainActor.run { _ = first.expire() }
        let completions = try await completed(first, within: 30)
        XCTAssertEqual(completions, [false])
        XCTAssertEqual(handedOffTaskIds(w.os), ["first"], "shared is still covered by the second task")
        let covered = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covered, ["shared", "second"])
        let stillRunning = await completionsSoFar(two)
        XCTAssertEqual(stillRunning, [])
    }

    func testBackgroundEntryHandsOffEveryDownloadButThoseARunningTaskCovers() async throws {
        let w = try await world()
        _ = try await download(w, id: "kept", size: 8 * MiB, rate: 250_000)
        _ = try await download(w, id: "other", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["kept"], title: "Downloading") }
        _ = try await started(w)

        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertFalse(w.os.requests.isEmpty)
        XCTAssertEqual(handedOffTaskIds(w.os), ["other"])
        let other = try await status(w, "other")
        XCTAssertTrue(other.handedOff)
        let kept = try await status(w, "kept")
        XCTAssertFalse(kept.handedOff)
        XCTAssertEqual(kept.state, .running)
        let downloader = w.downloader
        try await eventually(10, "the engine to go on with the covered download") {
            try await downloader.status(of: "kept").bytes > kept.bytes
        }
        XCTAssertEqual(w.log.failures, [])
    }

    func testAnExpirationInTheBackgroundHandsOffTheCoveredDownloadsStillRunningAndCompletesUnsuccessfullyOnce() async throws {
        let w = try await world()
        _ = try await download(w, id: "slow", size: 8 * MiB, rate: 250_000)
        _ = try await download(w, id: "quick", size: 256 << 10, rate: 1_000_000)
        _ = try await download(w, id: "other", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["slow", "quick"], title: "Downloading") }
        let task = try await started(w)
        _ = try await finished(w.downloader, "quick")
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(handedOffTaskIds(w.os), ["other"])
        let atEntry = w.os.requests.count
        let begun = await MainActor.run { w.execution.begun }
        XCTAssertEqual(begun, ["Ferry hand-off"])

        // The system ends the task (twice, as a cancel from the UI racing an expiration would).
        let expired = await MainActor.run { task.expire() && task.expire() }
        XCTAssertTrue(expired)
        let completions = try await completed(task, within: 30)
        XCTAssertEqual(completions, [false])
        let later = w.os.requests.dropFirst(atEntry)
        XCTAssertFalse(later.isEmpty, "the covered download still running was handed off")
        XCTAssertEqual(Set(later.map(\.taskId)), ["slow"], "and nothing else (quick had completed)")
        let (slow, quick) = (try await status(w, "slow"), try await status(w, "quick"))
        XCTAssertTrue(slow.handedOff)
        XCTAssertEqual(quick.state, .completed)
        let (names, ended) = await MainActor.run { (w.execution.begun, w.execution.ended) }
        XCTAssertEqual(names, ["Ferry hand-off", "Ferry continued hand-off"], "the expiration's hand-off runs in background time")
        XCTAssertEqual(ended, [1, 2], "given back")
        XCTAssertEqual(w.log.failures, [])

        try await Task.sleep(nanoseconds: 300_000_000)
        let again = await completionsSoFar(task)
        XCTAssertEqual(again, [false], "exactly once")
        let covered = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covered, [])
    }

    func testAnExpirationWhoseHandOffOutlastsTheTimeoutCompletesOnce() async throws {
        let w = try await world(expirationTimeout: 0)
        _ = try await download(w, id: "slow", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["slow"], title: "Downloading") }
        let task = try await started(w)
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(w.os.requests.count, 0)
        await MainActor.run { _ = task.expire() }
        let os = w.os
        try await eventually(30, "the covered download handed off") { !os.requests.isEmpty }
        try await Task.sleep(nanoseconds: 300_000_000)  // the hand-off's own completion came and went
        let completions = await completionsSoFar(task)
        XCTAssertEqual(completions, [false], "by the timeout, and not again after the hand-off")
        XCTAssertEqual(handedOffTaskIds(w.os), ["slow"])
    }

    func testAnExpirationInTheForegroundHandsNothingOffAndBackgroundEntryThenDoes() async throws {
        let w = try await world()
        _ = try await download(w, id: "slow", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["slow"], title: "Downloading") }
        let task = try await started(w)
        // Left and came back: the task still runs when it expires, in the foreground.
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        try await within(30, "return") { await hooks.willEnterForeground().value }
        let completions = await MainActor.run { () -> [Bool] in
            _ = task.expire()
            return task.completions
        }
        XCTAssertEqual(completions, [false], "completed at once")
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(w.os.requests.count, 0, "nothing handed off in the foreground")
        let slow = try await status(w, "slow")
        XCTAssertEqual(slow.state, .running)
        XCTAssertFalse(slow.handedOff)

        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(handedOffTaskIds(w.os), ["slow"], "no longer covered: handed off with the rest")
        let after = await completionsSoFar(task)
        XCTAssertEqual(after, [false])
    }

    func testARefusedRequestLeavesTheDownloadsToTheNormalHandOff() async throws {
        let w = try await world(mode: .refuse)
        _ = try await download(w, id: "slow", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        let refused = await MainActor.run { () -> String? in
            do { _ = try hooks.continueInBackground(taskIds: ["slow"], title: "Downloading"); return nil } catch { return "\(error)" }
        }
        XCTAssertEqual(refused, "\(ScriptedContinuedProcessing.Refused())", "the scheduler's refusal is thrown")
        let covered = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covered, [])
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        XCTAssertEqual(handedOffTaskIds(w.os), ["slow"])
        let slow = try await status(w, "slow")
        XCTAssertTrue(slow.handedOff)

        // Without a scheduler (before iOS 26) the call says so.
        let plain = await MainActor.run {
            BackgroundHooks(downloads: w.downloads, sessionIdentifier: "dev.ferry.tests.session")
        }
        let unavailable = await MainActor.run { () -> ContinuedProcessingError? in
            do { _ = try plain.continueInBackground(taskIds: ["slow"], title: "Downloading"); return nil } catch {
                return error as? ContinuedProcessingError
            }
        }
        XCTAssertEqual(unavailable, .unavailable)
    }

    func testARequestStillWaitingAtBackgroundEntryIsWithdrawnAndItsDownloadsHandedOff() async throws {
        let w = try await world(mode: .hold)
        _ = try await download(w, id: "slow", size: 8 * MiB, rate: 250_000)
        let hooks = w.hooks
        let identifier = try await MainActor.run { try hooks.continueInBackground(taskIds: ["slow"], title: "Downloading") }
        let covered = await MainActor.run { hooks.continued?.coveredTaskIds }
        XCTAssertEqual(covered, [], "a request not started covers nothing")
        try await within(30, "background entry") { await hooks.didEnterBackground().value }
        let cancelled = await MainActor.run { w.scheduler.cancelled }
        XCTAssertEqual(cancelled, [identifier])
        XCTAssertEqual(handedOffTaskIds(w.os), ["slow"])

        // The system started it all the same: it is completed at once and reports nothing.
        await MainActor.run { w.scheduler.startHeld(includingCancelled: true) }
        let task = try await started(w)
        let (updates, completions) = await MainActor.run { (task.updates, task.completions) }
        XCTAssertEqual(updates.count, 0)
        XCTAssertEqual(completions, [false])
    }

    func testADownloadThatFailsMakesTheTaskUnsuccessful() async throws {
        let w = try await world()
        let server = try startServer(size: 512 << 10, rate: 500_000)
        let destination = try makeTemporaryDirectory().path
        for (id, url) in [("good", server.url), ("missing", server.statusURL(404))] {
            _ = try await w.downloader.enqueue(DownloadRequest(url: url, destination: destination + "/\(id).bin", taskId: id))
        }
        let hooks = w.hooks
        try await MainActor.run { _ = try hooks.continueInBackground(taskIds: ["good", "missing"], title: "Downloading") }
        let task = try await started(w)
        let completions = try await completed(task)
        XCTAssertEqual(completions, [false], "one of the two failed")
        let (good, missing) = (try await status(w, "good"), try await status(w, "missing"))
        XCTAssertEqual(good.state, .completed)
        XCTAssertEqual(missing.state, .failed)
        let subtitles = await MainActor.run { task.subtitles }
        XCTAssertEqual(subtitles.last, "1 of 2 files")
    }
}
