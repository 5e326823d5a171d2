import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
import Ferry

/// The coordinator over a real `URLSession` (the default configuration: background sessions do not
/// exist on Linux), fetching leases from the loopback server.
final class URLSessionTransportTests: FerryTestCase {
    func testARealURLSessionCarriesTheLeasesOfAMultiConnectionDownloadAndFetchesNothingTwice() async throws {
        let size = 16 * MiB
        let server = try startServer(size: size, rate: 2_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("carried.bin").path
        let session = URLSessionTransport(configuration: .default)
        defer { session.invalidate() }
        // Holds the tasks until the test has measured the moment of the hand-off.
        let transport = GatedTransport(session)
        let log = EventLog()
        let options = BackgroundDownloads.Options(
            handoff: HandoffConfig(chunkBytes: UInt64(4 * MiB)), completionQueue: DispatchQueue(label: "test-completions"))
        let downloads = BackgroundDownloads(downloader: downloader, transport: transport, options: options, observer: log.observer)

        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, connections: 4, sha256: server.sha256))
        try await eventually(30, "the engine to be under way") { try await downloader.status(of: id).bytes >= UInt64(MiB) }
        let result = try await within(30, "hand-off") { try await downloads.handOff() }
        let atHandoff = server.stats
        let handedOff = try await downloader.status(of: id)

        XCTAssertEqual(result.skipped, [])
        XCTAssertTrue(handedOff.handedOff)
        let leased = result.requests.reduce(UInt64(0)) { $0 + ($1.endInclusive! - $1.start + 1) }
        XCTAssertEqual(handedOff.bytes + leased, UInt64(size), "the engine's bytes and the leases tile the file")
        XCTAssertTrue(result.requests.allSatisfy { $0.endInclusive! - $0.start < UInt64(4 * MiB) })
        XCTAssertEqual(transport.held.map(\.leaseId), result.requests.map(\.leaseId))
        transport.open()
        let live = await transport.liveTasks()
        XCTAssertEqual(Set(live.map(\.osTag)), Set(result.requests.map(\.osTag)), "one URLSession task per lease, all at once")

        let done = try await finished(downloader, id, within: 90)
        await downloads.drain()
        XCTAssertEqual(done.state, .completed, "\(done)")
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
        XCTAssertEqual(log.outcomes.count, result.requests.count)
        XCTAssertTrue(log.outcomes.allSatisfy { $0.outcome.isCommitted }, "\(log.outcomes)")
        XCTAssertEqual(staged(in: downloader.stateDirectory), [])
        XCTAssertEqual(log.failures, [])

        let after = server.stats
        XCTAssertEqual(after.requests - atHandoff.requests, UInt64(result.requests.count), "one request per lease")
        XCTAssertEqual(after.ifRangeRequests - atHandoff.ifRangeRequests, UInt64(result.requests.count))
        XCTAssertGreaterThanOrEqual(after.bodyBytes - atHandoff.bodyBytes, leased)
        XCTAssertLessThanOrEqual(after.bodyBytes - atHandoff.bodyBytes, leased + 4 * (16 << 10), "the leases' bytes, once")
        // Everything sent: the engine's bytes, what its four connections had in flight when they
        // stopped, and the leases.
        XCTAssertLessThanOrEqual(after.bodyBytes, UInt64(size) + 4 * (256 << 10), "nothing fetched twice beyond what was in flight")
    }

    #if !canImport(Darwin)
    func testOneTransportPerSessionIdentifier() {
        // On Apple platforms this would make real background sessions; the registry is the same code.
        let a = URLSessionTransport.background(identifier: "dev.ferry.tests.a")
        XCTAssertTrue(a === URLSessionTransport.background(identifier: "dev.ferry.tests.a"))
        XCTAssertFalse(a === URLSessionTransport.background(identifier: "dev.ferry.tests.b"))
        XCTAssertEqual(a.identifier, "dev.ferry.tests.a")
    }
    #endif
}

/// A transport that holds the tasks it is given until `open()`.
final class GatedTransport: BackgroundTransport, @unchecked Sendable {
    private let inner: BackgroundTransport
    private let box = LockedBox<(open: Bool, held: [OsRangeRequest])>((false, []))

    init(_ inner: BackgroundTransport) { self.inner = inner }

    var held: [OsRangeRequest] { box.get().held }

    func open() {
        let held = box.update { state -> [OsRangeRequest] in
            state.open = true
            defer { state.held = [] }
            return state.held
        }
        inner.startTasks(held)
    }

    func setEventHandler(_ handler: BackgroundTransportHandler?) { inner.setEventHandler(handler) }
    func liveTasks() async -> [OsTaskInfo] { await inner.liveTasks() }
    func cancelTasks(tagged tags: [String]) { inner.cancelTasks(tagged: tags) }
    func cancelDuplicates(tagged tags: [String]) async -> [String: Int] { await inner.cancelDuplicates(tagged: tags) }

    func startTasks(_ requests: [OsRangeRequest]) {
        let now = box.update { state -> Bool in
            if !state.open { state.held += requests }
            return state.open
        }
        if now { inner.startTasks(requests) }
    }
}
