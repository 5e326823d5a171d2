import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
import Ferry
import FerryTesting

let MiB = 1 << 20

/// The bytes and validators of a test server's file, fetched once, to answer ranged requests
/// as a well-behaved server would (and to fake the misbehaving answers).
struct Reference: Sendable {
    let body: Data
    let etag: String
    let lastModified: String?

    var size: UInt64 { UInt64(body.count) }

    /// Fetches `url` whole.
    static func fetch(_ url: String) async throws -> Reference {
        let (body, response) = try await HTTP.get(url)
        guard response.statusCode == 200, let etag = response.value(forHTTPHeaderField: "ETag") else {
            throw TestFailure("reference fetch of \(url): status \(response.statusCode)")
        }
        return Reference(body: body, etag: etag, lastModified: response.value(forHTTPHeaderField: "Last-Modified"))
    }

    /// What a good server answers to `request`: a 206 of its range, or a 200 for a whole-file lease.
    func answer(for request: OsRangeRequest) -> (body: Data, status: UInt16, headers: [HttpHeader]) {
        var headers = [HttpHeader(name: "ETag", value: etag), HttpHeader(name: "Accept-Ranges", value: "bytes")]
        if let lastModified { headers.append(HttpHeader(name: "Last-Modified", value: lastModified)) }
        if request.wholeFile {
            headers.append(HttpHeader(name: "Content-Length", value: String(size)))
            return (body, 200, headers)
        }
        let end = request.endInclusive ?? size - 1
        let slice = body.subdata(in: Int(request.start)..<Int(end + 1))
        headers.append(HttpHeader(name: "Content-Range", value: "bytes \(request.start)-\(end)/\(size)"))
        headers.append(HttpHeader(name: "Content-Length", value: String(slice.count)))
        return (slice, 206, headers)
    }
}

enum HTTP {
    static func get(_ url: String) async throws -> (Data, HTTPURLResponse) {
        guard let u = URL(string: url) else { throw TestFailure("bad URL \(url)") }
        var request = URLRequest(url: u)
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw TestFailure("no HTTP response from \(url)") }
        return (data, http)
    }
}

/// Everything a coordinator reported, in order.
final class EventLog: @unchecked Sendable {
    private let box = LockedBox<[BackgroundDownloads.Event]>([])

    var observer: @Sendable (BackgroundDownloads.Event) -> Void {
        { [box] event in box.update { $0.append(event) } }
    }

    var events: [BackgroundDownloads.Event] { box.get() }

    /// Ingest outcomes, in order.
    var outcomes: [(leaseId: String, outcome: IngestOutcome)] {
        events.compactMap { if case let .ingested(leaseId, outcome) = $0 { return (leaseId, outcome) } else { return nil } }
    }

    func outcomes(of leaseId: String) -> [IngestOutcome] {
        outcomes.filter { $0.leaseId == leaseId }.map(\.outcome)
    }

    var failures: [String] {
        events.compactMap { if case let .failed(operation, error) = $0 { return "\(operation): \(error)" } else { return nil } }
    }
}

extension IngestOutcome {
    var isCommitted: Bool { if case .committed = self { return true } else { return false } }
    var completedTask: Bool { if case .committed(_, true) = self { return true } else { return false } }
    var isRestart: Bool { if case .restart = self { return true } else { return false } }
    var isRejected: Bool { if case .rejected = self { return true } else { return false } }
}

/// A download running in the engine against a slow test server, and a fast twin of that server
/// (same seed and size, so the same bytes and validators) that stands in for what the OS fetches.
struct RunningDownload {
    let server: TestServer
    let twin: TestServer
    let reference: Reference
    let destination: String
    let taskId: String
}

extension FerryTestCase {
    /// Options for tests: 1 MiB leases, completion handlers on a private queue.
    func testOptions(completionTimeout: TimeInterval = 25, staleAfter: TimeInterval = 20) -> BackgroundDownloads.Options {
        BackgroundDownloads.Options(
            handoff: HandoffConfig(chunkBytes: UInt64(MiB)), staleAfter: staleAfter, completionTimeout: completionTimeout,
            completionQueue: DispatchQueue(label: "test-completions"), deferredRetryDelay: 0.2)
    }

    /// Starts the slow server and its fast twin.
    func startServers(size: Int, rate: Int) throws -> (server: TestServer, twin: TestServer) {
        (try startServer(size: size, rate: rate), try startServer(size: size))
    }

    /// Enqueues a download of `server` with 4 connections and waits until the engine has
    /// `atLeast` bytes.
    func startRunningDownload(
        on downloader: Downloader, server: TestServer, twin: TestServer, atLeast: UInt64 = UInt64(MiB), taskId: String = "big"
    ) async throws -> RunningDownload {
        let destination = try makeTemporaryDirectory().appendingPathComponent("big.bin").path
        let reference = try await within(30, "reference body") { try await Reference.fetch(twin.url) }
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, taskId: taskId, connections: 4, sha256: server.sha256))
        try await eventually(30, "the engine to have \(atLeast) bytes") { try await downloader.status(of: id).bytes >= atLeast }
        return RunningDownload(server: server, twin: twin, reference: reference, destination: destination, taskId: id)
    }

    /// Waits (bounded) for a task to stop running.
    func finished(_ downloader: Downloader, _ taskId: String, within seconds: TimeInterval = 60) async throws -> TaskStatus {
        try await within(seconds, "task \(taskId) to finish") { try await downloader.wait(for: taskId) }
    }

    /// The files left in a state directory's staging folder.
    func staged(in stateDirectory: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: stateDirectory + "/staging")) ?? []
    }
}

extension ScriptedTransport {
    /// Finishes `request` with a good answer from `reference`.
    func finishWell(_ request: OsRangeRequest, from reference: Reference) throws {
        let answer = reference.answer(for: request)
        try finish(request.osTag, body: answer.body, status: answer.status, headers: answer.headers)
    }
}
