import Foundation
import XCTest
import Ferry

/// Closure listeners: a throwing one is kept, and never stops the engine.
final class ListenerTests: FerryTestCase {
    struct ListenerBroke: Error {}

    func testThrowingListenerDoesNotStopTheEngine() async throws {
        let server = try startServer(size: 1 << 20)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let calls = LockedBox(0)
        let thrower = downloader.addListener { _ in
            calls.update { $0 += 1 }
            throw ListenerBroke()
        }
        defer { thrower.cancel() }

        let first = try await within(30, "first download") {
            try await downloader.download(from: server.url, to: dir.appendingPathComponent("1.bin").path, sha256: server.sha256)
        }
        XCTAssertEqual(first.state, .completed)
        try await eventually(10, "the throwing listener to see the completion") { calls.get() >= 3 }

        // Still registered, still called, and the engine still works.
        let before = calls.get()
        let second = try await within(30, "second download") {
            try await downloader.download(from: server.url, to: dir.appendingPathComponent("2.bin").path, sha256: server.sha256)
        }
        XCTAssertEqual(second.state, .completed)
        try await eventually(10, "more calls after throwing") { calls.get() > before }
        XCTAssertEqual(try sha256(ofFile: dir.appendingPathComponent("2.bin").path), server.sha256)
    }

    func testCancelledSubscriptionStopsDelivery() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let calls = LockedBox(0)
        let subscription = downloader.addListener { _ in calls.update { $0 += 1 } }
        _ = try await within(30, "download") {
            try await downloader.download(from: server.url, to: dir.appendingPathComponent("1.bin").path)
        }
        try await eventually(10, "events") { calls.get() > 0 }

        subscription.cancel()
        XCTAssertTrue(subscription.isCancelled)
        try await Task.sleep(nanoseconds: 300_000_000)  // an event already in delivery may finish
        let before = calls.get()
        _ = try await within(30, "download") {
            try await downloader.download(from: server.url, to: dir.appendingPathComponent("2.bin").path)
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        XCTAssertEqual(calls.get(), before)
    }
}
