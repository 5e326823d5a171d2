// FerryTesting: Ferry's loopback test server, for unit tests of the code that drives Ferry.
//
// Why this module: an app's tests of its progress UI, retry buttons and error handling need a
// server that misbehaves on cue, without a network, and iOS tests cannot start a process. This
// server runs inside the test process, on 127.0.0.1, on the engine's own threads: it is the server
// the engine's Rust tests use, with their faults (drops, stalls, 503 or 429 with `Retry-After`,
// validators that change, rate caps), exported through the generated bindings (cargo feature
// `testing`, in every build of the library). This file only gives it Swift names and types; the
// behaviour is all in Rust, so keep it thin.
//
// Ship it in test targets only: `.testTarget(..., dependencies: ["Ferry", "FerryTesting"])`.

import Foundation
import Ferry
import FerryBindings

/// How a `TestServer` behaves: the file's size and seed, and its faults. Every field has a default
/// (a 1 MiB file that is served well), e.g. `TestServerConfig(size: 8 << 20, dropAfter: 1 << 20,
/// dropRequests: 1)`. Counters ("the first n requests") count requests for the file.
public typealias TestServerConfig = FerryBindings.TestServerConfig

/// What a `TestServer` has sent: requests for the file, body bytes, ranged and `If-Range`
/// requests, bodies being sent now and the most at once.
public typealias TestServerStats = FerryBindings.TestServerStats

/// Which validators a `TestServer` sends (`TestServerConfig.validators`; `nil`: a strong ETag and
/// Last-Modified).
public typealias TestValidators = FerryBindings.TestValidators

/// An HTTP/1.1 server on 127.0.0.1, in this process, serving one generated file at `url` with the
/// faults its `TestServerConfig` asks for. Also `url(named:)` (the same file under another name),
/// `statusURL(_:)` (an error page: 404, 500, ...) and `redirectURL(hops:)`.
///
/// It serves until the last reference to it goes away: keep it in a constant the test uses to
/// the end (its `stats`, say), or in a property of the test case.
///
/// ```swift
/// let server = try TestServer(TestServerConfig(busyRequests: 1))  // a 503, then the file
/// let status = try await downloader.download(from: server.url, to: destination)
/// XCTAssertEqual(server.stats.requests, 2)
/// ```
public final class TestServer: Sendable {
    /// The generated server this wraps.
    private let server: FerryBindings.TestServer

    /// `http://127.0.0.1:<port>`.
    public let base: String

    /// The file's URL.
    public let url: String

    /// Starts a server on a free port of 127.0.0.1.
    /// - Throws: `FerryError` if no port can be bound (or the library was built without the
    ///   `testing` feature).
    public init(_ config: TestServerConfig = TestServerConfig()) throws {
        do {
            server = try FerryBindings.TestServer.start(config: config)
        } catch let error as DownloadError {
            throw FerryError(error)
        }
        base = server.base()
        url = server.url()
    }

    /// Starts a server for a file of `size` bytes, at most `rate` bytes per second per connection,
    /// with content (and validators) from `seed`: two servers with the same size and seed serve
    /// the same bytes.
    public convenience init(size: UInt64, rate: UInt64? = nil, seed: UInt64 = 1) throws {
        try self.init(TestServerConfig(size: size, seed: seed, rate: rate))
    }

    /// The file's URL ending in `name` (names matter to code that names files after URLs).
    public func url(named name: String) -> String { server.urlNamed(name: name) }

    /// A page answered with `code` (404, 500, 503, ...).
    public func statusURL(_ code: UInt16) -> String { server.statusUrl(code: code) }

    /// A chain of `hops` redirects that ends at the file.
    public func redirectURL(hops: UInt32) -> String { server.redirectUrl(hops: hops) }

    /// The file's URL signed to expire `milliseconds` from now: after that it answers 403, as a
    /// CDN's signed URLs do (for code that refreshes credentials).
    public func signedURL(validFor milliseconds: UInt64) -> String { server.signedUrl(validMs: milliseconds) }

    /// The file's length now.
    public var size: UInt64 { server.size() }

    /// SHA-256 (lower-case hex) of the file as it is served now.
    public var sha256: String { server.sha256() }

    /// The file's bytes as they are served now.
    public var content: Data { server.content() }

    /// What the server has sent so far.
    public var stats: TestServerStats { server.stats() }

    /// One line per request for the file: its range, `If-Range`, and the status answered.
    public var log: [String] { server.log() }

    /// Changes the size, seed and faults from the next request on (requests in flight keep theirs).
    public func setConfig(_ config: TestServerConfig) { server.setConfig(config: config) }

    /// Waits until `condition` holds for the server's stats (checked every 10 ms) and returns
    /// them, e.g. `try await server.stats(within: 10) { $0.bodyBytes >= 1 << 20 }` before pausing a
    /// download half-way.
    /// - Throws: `TestServer.Timeout` after `seconds`; `CancellationError` if the task is cancelled.
    @discardableResult
    public func stats(
        within seconds: TimeInterval, where condition: (TestServerStats) -> Bool
    ) async throws -> TestServerStats {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let now = stats
            if condition(now) { return now }
            if Date() >= deadline { throw Timeout(seconds: seconds, last: now) }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// `stats(within:where:)` gave up: the condition did not hold within `seconds`.
    public struct Timeout: Error, CustomStringConvertible {
        /// How long it waited.
        public let seconds: TimeInterval
        /// The stats it saw last.
        public let last: TestServerStats

        public var description: String { "the test server's stats did not match within \(seconds) s (last: \(last))" }
    }
}
