import Foundation
import XCTest
import Ferry

/// `Downloader.events()`: an AsyncStream over the engine's listener callback.
final class EventStreamTests: FerryTestCase {
    func testStreamDeliversProgressAndCompletion() async throws {
        // 4 MiB over one connection capped at 2 MB/s: about 2 s, several progress reports.
        let server = try startServer(size: 4 << 20, rate: 2_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let events = downloader.events()
        let id = try await downloader.enqueue(
            DownloadRequest(url: server.url, destination: destination, connections: 1, sha256: server.sha256))

        let received = try await within(60, "events up to completion") { () -> [DownloadEvent] in
            var received: [DownloadEvent] = []
            for await event in events where event.taskId == id {
                received.append(event)
                if let state = event.newState, !state.isActive { break }
            }
            return received
        }

        let states = received.compactMap(\.newState)
        let progress = received.compactMap(\.bytes)
        XCTAssertEqual(states.first, .queued)
        XCTAssertEqual(states.last, .completed)
        XCTAssertTrue(states.contains(.running))
        XCTAssertGreaterThanOrEqual(progress.count, 2, "progress is reported while it runs")
        XCTAssertEqual(progress, progress.sorted(), "progress never goes back")
        XCTAssertTrue(progress.allSatisfy { $0 <= UInt64(server.size) }, "\(progress)")
        XCTAssertEqual(progress.last, UInt64(server.size), "the last report is the whole file")
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }

    func testShutdownFinishesTheStream() async throws {
        let downloader = try makeDownloader()
        let events = downloader.events()
        let consumer = Task { () -> Int in
            var count = 0
            for await _ in events { count += 1 }
            return count
        }
        await downloader.shutdown()
        _ = try await within(10, "the stream to finish") { await consumer.value }

        // A stream asked for after shutdown is already finished.
        let late = downloader.events()
        let finished = try await within(10, "a finished stream") { () -> Bool in
            for await _ in late { return false }
            return true
        }
        XCTAssertTrue(finished)
    }

    func testEachStreamSeesEveryEvent() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let first = downloader.events()
        let second = downloader.events()
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination))

        @Sendable func states(_ stream: AsyncStream<DownloadEvent>) async -> [TaskState] {
            var states: [TaskState] = []
            for await event in stream where event.taskId == id {
                guard let state = event.newState else { continue }
                states.append(state)
                if !state.isActive { break }
            }
            return states
        }
        let a = try await within(30, "first stream") { await states(first) }
        let b = try await within(30, "second stream") { await states(second) }
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.last, .completed)
    }
}
