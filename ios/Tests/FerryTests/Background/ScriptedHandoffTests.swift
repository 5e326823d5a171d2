import Foundation
import XCTest
import Ferry

/// The coordinator against a scripted OS that does what iOS does and Linux cannot: bodies whose
/// temporary file is deleted when the callback returns, stitched legs, wrong statuses and
/// validators, refusals, duplicates, chunks for tasks that ended, failures without a body.
final class ScriptedHandoffTests: FerryTestCase {
    struct World {
        let downloader: Downloader
        let downloads: BackgroundDownloads
        let os: ScriptedTransport
        let log: EventLog
        let run: RunningDownload
        let requests: [OsRangeRequest]
    }

    /// An 8 MiB download running in the engine (4 connections at 1 MB/s), handed off in 1 MiB leases.
    func handedOff(options: BackgroundDownloads.Options? = nil) async throws -> World {
        let (server, twin) = try startServers(size: 8 * MiB, rate: 1_000_000)
        let downloader = try makeDownloader()
        let run = try await startRunningDownload(on: downloader, server: server, twin: twin)
        let os = ScriptedTransport(temporaryDirectory: try makeTemporaryDirectory())
        let log = EventLog()
        let downloads = BackgroundDownloads(
            downloader: downloader, transport: os, options: options ?? testOptions(), observer: log.observer)
        let result = try await within(30, "hand-off") { try await downloads.handOff() }
        XCTAssertEqual(result.skipped, [])
        XCTAssertGreaterThan(result.requests.count, 1)
        return World(downloader: downloader, downloads: downloads, os: os, log: log, run: run, requests: result.requests)
    }

    func testBodiesMovedInsideTheCallbackMakeTheExactFileAndTheEngineFetchesNothingMore() async throws {
        let w = try await handedOff()
        let size = UInt64(8 * MiB)
        XCTAssertEqual(w.os.requests, w.requests, "every OS task is created at the hand-off")
        for r in w.requests {
            XCTAssertEqual(r.taskId, w.run.taskId)
            XCTAssertTrue(r.headers.contains { $0.name == "If-Range" && $0.value == w.run.reference.etag }, "\(r.headers)")
            XCTAssertTrue(r.headers.contains { $0.name == "Accept-Encoding" && $0.value == "identity" })
        }
        let before = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(before.state, .running)
        XCTAssertTrue(before.handedOff)
        let leased = w.requests.reduce(UInt64(0)) { $0 + ($1.endInclusive! - $1.start + 1) }
        XCTAssertEqual(before.bytes + leased, size, "the engine's bytes and the leases tile the file")
        let atHandoff = w.run.server.stats

        w.os.progress(w.requests[0].osTag, bytes: 1000)
        let progressed = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(progressed.bytes, before.bytes + 1000, "the OS's progress shows in the status")

        for r in w.requests { try w.os.finishWell(r, from: w.run.reference) }
        await w.downloads.drain()

        XCTAssertEqual(w.os.tagsLeftBehind, [], "every body was moved before its callback returned")
        XCTAssertEqual(w.log.outcomes.count, w.requests.count)
        XCTAssertTrue(w.log.outcomes.allSatisfy { $0.outcome.isCommitted }, "\(w.log.outcomes)")
        XCTAssertEqual(w.log.outcomes.filter { $0.outcome.completedTask }.count, 1, "the last chunk publishes the file")
        let done = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(done.state, .completed)
        XCTAssertFalse(done.handedOff)
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
        XCTAssertEqual(staged(in: w.downloader.stateDirectory), [], "nothing left staged")
        let after = w.run.server.stats
        XCTAssertEqual(after.requests, atHandoff.requests, "the engine asked for nothing after the hand-off")
        XCTAssertLessThanOrEqual(after.bodyBytes - atHandoff.bodyBytes, 4 * 16 << 10, "at most a frame per stopped connection")
        XCTAssertEqual(w.log.failures, [])
    }

    func testTheSameChunkDeliveredTwiceIsWrittenOnce() async throws {
        let w = try await handedOff()
        let first = w.requests[0]
        try w.os.finishWell(first, from: w.run.reference)
        try w.os.finishWell(first, from: w.run.reference)  // again, while the first may be ingesting
        await w.downloads.drain()
        var outcomes = w.log.outcomes(of: first.leaseId)
        let dropped = w.log.events.filter { if case .discarded(first.osTag) = $0 { return true } else { return false } }.count
        XCTAssertTrue(outcomes.first?.isCommitted == true, "\(outcomes)")
        XCTAssertEqual(outcomes.dropFirst() + Array(repeating: .alreadyCommitted, count: dropped), [.alreadyCommitted],
                       "the second body is dropped while the first is ingested, or recognised after: \(outcomes)")
        try w.os.finishWell(first, from: w.run.reference)  // and once more, well after
        await w.downloads.drain()
        outcomes = w.log.outcomes(of: first.leaseId)
        XCTAssertEqual(outcomes.last, .alreadyCommitted)
        XCTAssertEqual(w.log.events.filter { if case .released = $0 { return true } else { return false } }.count, 0)
        for r in w.requests.dropFirst() { try w.os.finishWell(r, from: w.run.reference) }
        await w.downloads.drain()
        let done = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(done.bytes, UInt64(8 * MiB))
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
        XCTAssertEqual(staged(in: w.downloader.stateDirectory), [])
    }

    func testAChunkStitchedFromSelfResumedLegsIsAccepted() async throws {
        let w = try await handedOff()
        for r in w.requests {
            // iOS resumed the task itself and delivered the whole chunk, but the answer's
            // Content-Range names only the last leg.
            let end = r.endInclusive!
            let leg = r.start + (end - r.start) / 3
            var answer = w.run.reference.answer(for: r)
            answer.headers = answer.headers.map { h in
                switch h.name {
                case "Content-Range": return HttpHeader(name: h.name, value: "bytes \(leg)-\(end)/\(8 * MiB)")
                case "Content-Length": return HttpHeader(name: h.name, value: String(end - leg + 1))
                default: return h
                }
            }
            try w.os.finish(r.osTag, body: answer.body, status: 206, headers: answer.headers)
        }
        await w.downloads.drain()
        XCTAssertTrue(w.log.outcomes.allSatisfy { $0.outcome.isCommitted }, "\(w.log.outcomes)")
        let done = try await w.downloader.status(of: w.run.taskId)
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }

    func testAWholeAnswerAChangedValidatorOrA416RestartInTheEngineAndCancelTheOtherOSTasks() async throws {
        for answerCase in ["200 instead of 206", "changed ETag", "416"] {
            let w = try await handedOff()
            let first = w.requests[0]
            let ref = w.run.reference
            switch answerCase {
            case "200 instead of 206":
                try w.os.finish(first.osTag, body: ref.body, status: 200, headers: [
                    HttpHeader(name: "ETag", value: ref.etag), HttpHeader(name: "Content-Length", value: String(ref.size)),
                ])
            case "changed ETag":
                let good = ref.answer(for: first)
                let headers = good.headers.map { $0.name == "ETag" ? HttpHeader(name: "ETag", value: "\"another-version\"") : $0 }
                try w.os.finish(first.osTag, body: good.body, status: 206, headers: headers)
            default:
                try w.os.finish(first.osTag, body: Data(), status: 416, headers: [
                    HttpHeader(name: "Content-Range", value: "bytes */\(ref.size)"),
                ])
            }
            await w.downloads.drain()
            let outcome = w.log.outcomes(of: first.leaseId)
            XCTAssertEqual(outcome.count, 1, answerCase)
            XCTAssertTrue(outcome.first?.isRestart == true, "\(answerCase): \(outcome)")
            let others = Set(w.requests.dropFirst().map(\.osTag))
            XCTAssertEqual(Set(w.os.cancelledTags), others, "\(answerCase): every other OS task of the task is cancelled")
            w.os.flush()
            await w.downloads.drain()
            XCTAssertFalse(w.log.events.contains { if case .released = $0 { return true } else { return false } },
                           "\(answerCase): a task cancelled by the coordinator releases nothing")

            // A body the OS finished before the cancel reached it: deleted, never written.
            let late = w.requests[1]
            try w.os.finishWell(late, from: ref)
            await w.downloads.drain()
            XCTAssertTrue(w.log.outcomes(of: late.leaseId).first?.isRejected == true, "\(answerCase): \(w.log.outcomes(of: late.leaseId))")
            XCTAssertEqual(w.os.tagsLeftBehind, [])

            let done = try await finished(w.downloader, w.run.taskId)
            XCTAssertEqual(done.state, .completed, "\(answerCase): the engine fetched it again: \(done)")
            XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256, answerCase)
            XCTAssertEqual(staged(in: w.downloader.stateDirectory), [], answerCase)
        }
    }

    func testRefusedCredentialsAreReportedAndTheEngineFetchesThoseRanges() async throws {
        let w = try await handedOff()
        let (denied, forbidden) = (w.requests[0], w.requests[1])
        try w.os.finish(denied.osTag, body: Data("denied".utf8), status: 401, headers: [])
        try w.os.finish(forbidden.osTag, body: Data("forbidden".utf8), status: 403, headers: [])
        for r in w.requests.dropFirst(2) { try w.os.finishWell(r, from: w.run.reference) }
        await w.downloads.drain()

        let asked = w.log.events.compactMap { event -> String? in
            guard case let .credentialsNeeded(taskId, leaseId, status) = event else { return nil }
            return "\(taskId ?? "?") \(leaseId) \(status.map(String.init) ?? "-")"
        }
        XCTAssertEqual(asked, ["\(w.run.taskId) \(denied.leaseId) 401", "\(w.run.taskId) \(forbidden.leaseId) 403"])
        for lease in [denied, forbidden] {
            guard case let .rejected(taskId, _, _, _, retryable, credentials, _) = w.log.outcomes(of: lease.leaseId).first else {
                return XCTFail("\(w.log.outcomes(of: lease.leaseId))")
            }
            XCTAssertTrue(retryable && credentials)
            XCTAssertEqual(taskId, w.run.taskId, "the outcome names the task")
        }
        let done = try await finished(w.downloader, w.run.taskId)
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }

    func testChunksForPausedCancelledOrRemovedTasksAreDeletedNeverWritten() async throws {
        for action in ["pause", "cancel", "remove"] {
            let w = try await handedOff()
            switch action {
            case "pause": try await w.downloads.pause(w.run.taskId)
            case "cancel": try await w.downloads.cancel(w.run.taskId)
            default: try await w.downloads.remove(w.run.taskId)
            }
            XCTAssertEqual(Set(w.os.cancelledTags), Set(w.requests.map(\.osTag)), "\(action): every OS task is cancelled")
            XCTAssertEqual(w.os.running, [], action)

            let late = w.requests[0]
            try w.os.finishWell(late, from: w.run.reference)
            await w.downloads.drain()
            XCTAssertTrue(w.log.outcomes(of: late.leaseId).first?.isRejected == true, "\(action): \(w.log.outcomes)")
            XCTAssertEqual(w.os.tagsLeftBehind, [], action)
            XCTAssertEqual(staged(in: w.downloader.stateDirectory), [], "\(action): the body is deleted")
            XCTAssertFalse(FileManager.default.fileExists(atPath: w.run.destination), "\(action): nothing published")
            if action == "pause" {
                try await w.downloader.resume(w.run.taskId)
                let done = try await finished(w.downloader, w.run.taskId)
                XCTAssertEqual(done.state, .completed, "resumed in the engine after a pause: \(done)")
                XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
            } else {
                XCTAssertFalse(FileManager.default.fileExists(atPath: w.run.destination + ".part"), "\(action): no partial left")
            }
        }
    }

    func testATaskThatFailsWithoutABodyGivesItsRangeBackToTheEngine() async throws {
        let w = try await handedOff()
        let lost = w.requests[0]
        w.os.fail(lost.osTag, error: URLError(.networkConnectionLost))
        for r in w.requests.dropFirst() { try w.os.finishWell(r, from: w.run.reference) }
        await w.downloads.drain()
        let released = w.log.events.compactMap { if case let .released(leaseId, _) = $0 { return leaseId } else { return nil } }
        XCTAssertEqual(released, [lost.leaseId])
        let done = try await finished(w.downloader, w.run.taskId)
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }

    func testADuplicateOSTaskIsCancelledAloneAndItsLeaseKeepsTheOther() async throws {
        let w = try await handedOff()
        let twice = w.requests[0]
        w.os.adopt([twice])  // the OS holds two tasks for one lease (a re-export raced a relaunch)
        w.os.progress(twice.osTag, bytes: 10)
        let plan = try await w.downloads.reconcile(foreground: true)
        XCTAssertEqual(plan.duplicateOsTags, [twice.osTag])
        XCTAssertEqual(plan.cancelOsTags, [])
        w.os.flush()
        XCTAssertEqual(w.os.running.filter { $0.osTag == twice.osTag }.count, 1, "one of the two is cancelled")
        await w.downloads.drain()
        let released = w.log.events.compactMap { if case let .released(leaseId, _) = $0 { return leaseId } else { return nil } }
        XCTAssertEqual(released, [], "the cancelled duplicate releases nothing")
        for r in w.requests { try w.os.finishWell(r, from: w.run.reference) }
        await w.downloads.drain()
        XCTAssertTrue(w.log.outcomes(of: twice.leaseId).first?.isCommitted == true, "\(w.log.outcomes)")
        let done = try await finished(w.downloader, w.run.taskId)
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }

    func testBackInTheForegroundStalledOSTasksAreTakenBackAndHealthyOnesFinish() async throws {
        let w = try await handedOff(options: testOptions(staleAfter: 0.3))
        let healthy = w.requests[0]
        w.os.progress(healthy.osTag, bytes: 1000)
        try await Task.sleep(nanoseconds: 400_000_000)
        w.os.progress(healthy.osTag, bytes: 2000)
        let takenBack = try await w.downloads.returnToForeground()
        XCTAssertEqual(Set(takenBack), Set(w.requests.dropFirst().map(\.osTag)), "every lease but the one making progress")
        XCTAssertEqual(w.os.running, [healthy])
        let rest = UInt64(8 * MiB) - (healthy.endInclusive! - healthy.start + 1)
        try await eventually(60, "the engine to fetch the rest") {
            let status = try await w.downloader.status(of: w.run.taskId)
            return status.bytes >= rest && status.connections == 0
        }
        try w.os.finishWell(healthy, from: w.run.reference)
        await w.downloads.drain()
        // The last chunk completes the task, by its ingest or, when the engine's runner has not
        // quite ended after its last connection, by that runner (it publishes once the ingest
        // fills the map): either way without another request.
        XCTAssertTrue(w.log.outcomes(of: healthy.leaseId).first?.isCommitted == true, "\(w.log.outcomes)")
        let requests = w.run.server.stats.requests
        let done = try await finished(w.downloader, w.run.taskId, within: 10)
        XCTAssertEqual(w.run.server.stats.requests, requests, "nothing fetched after the last chunk")
        XCTAssertEqual(done.state, .completed)
        XCTAssertEqual(try sha256(ofFile: w.run.destination), w.run.server.sha256)
    }
}
