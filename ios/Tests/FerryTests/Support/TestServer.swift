import Foundation
import XCTest
import FerryTesting

// The suite's HTTP servers are FerryTesting's `TestServer`: in this process, on 127.0.0.1, the
// product apps use for their own unit tests (so the suite uses it the way they do). Servers are
// started with `FerryTestCase.startServer` and stop when the test case lets go of them in tearDown.

extension FerryTestCase {
    /// Starts a server for a file of `size` bytes, at most `rate` bytes per second per
    /// connection, with content from `seed` (two servers with the same size and seed serve the same
    /// bytes and validators); stopped in tearDown.
    func startServer(size: Int, rate: Int? = nil, seed: Int? = nil) throws -> TestServer {
        try startServer(TestServerConfig(size: UInt64(size), seed: UInt64(seed ?? 1), rate: rate.map { UInt64($0) }))
    }
}

/// The `ferry` command line tool, which the multi-process tests run as a second client of a state
/// directory (never as a server): `$FERRY_BIN`, else target/debug/ferry of this checkout.
enum FerryCLI {
    static var binary: String {
        if let bin = ProcessInfo.processInfo.environment["FERRY_BIN"], !bin.isEmpty { return bin }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("target/debug/ferry").path
    }
}

/// A value behind a lock.
final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T

    init(_ value: T) { self.value = value }

    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ newValue: T) { lock.lock(); value = newValue; lock.unlock() }

    /// Mutates the value under the lock and returns what `body` returns.
    @discardableResult
    func update<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

/// A test failure with a message, for helpers that throw.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
