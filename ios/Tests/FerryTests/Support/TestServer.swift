import Foundation
import XCTest

/// `ferry serve` as a child process: a loopback HTTP server that serves generated content until its
/// stdin is closed. Routes: /file (Range + ETag), /status/404, /redirect/N, /loop/a.
final class TestServer: @unchecked Sendable {
    /// The file URL (`<base>/file`).
    let url: String
    /// `http://127.0.0.1:<port>`.
    let base: String
    /// Size of /file in bytes.
    let size: Int
    /// Hex SHA-256 of /file.
    let sha256: String

    private let process: Process
    private let stdin: Pipe

    private struct Announcement: Decodable {
        let url: String
        let base: String
        let size: Int
        let sha256: String
    }

    /// The `ferry` binary: `$FERRY_BIN`, else target/debug/ferry of this checkout.
    static var ferryBinary: String {
        if let bin = ProcessInfo.processInfo.environment["FERRY_BIN"], !bin.isEmpty { return bin }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("target/debug/ferry").path
    }

    /// Starts a server and waits (at most `timeout` seconds) for its announcement line.
    /// - Parameter rate: per-connection rate cap, bytes per second.
    init(size: Int, rate: Int? = nil, seed: Int? = nil, timeout: TimeInterval = 15) throws {
        let binary = Self.ferryBinary
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestFailure("no ferry binary at \(binary); run ios/test-linux.sh or set FERRY_BIN")
        }
        var arguments = ["serve", "--size", String(size)]
        if let rate { arguments += ["--rate", String(rate)] }
        if let seed { arguments += ["--seed", String(seed)] }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()

        let line = Self.readLine(stdout.fileHandleForReading, timeout: timeout)
        guard let line, let data = line.data(using: .utf8),
              let announcement = try? JSONDecoder().decode(Announcement.self, from: data) else {
            try? stdin.fileHandleForWriting.close()
            process.terminate()
            process.waitUntilExit()
            throw TestFailure("ferry serve did not announce itself within \(timeout)s (got \(line ?? "nothing"))")
        }
        self.process = process
        self.stdin = stdin
        self.url = announcement.url
        self.base = announcement.base
        self.size = announcement.size
        self.sha256 = announcement.sha256
    }

    /// Stops the server: closes its stdin, then terminates it if it has not exited within 5 s.
    func stop() {
        try? stdin.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// Reads one line from `handle` on a background thread, giving up after `timeout` seconds.
    private static func readLine(_ handle: FileHandle, timeout: TimeInterval) -> String? {
        let done = DispatchSemaphore(value: 0)
        let result = LockedBox<String?>(nil)
        Thread.detachNewThread {
            var bytes: [UInt8] = []
            while true {
                let chunk = handle.readData(ofLength: 1)
                guard let byte = chunk.first else { break }
                if byte == UInt8(ascii: "\n") { break }
                bytes.append(byte)
            }
            result.set(bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self))
            done.signal()
        }
        guard done.wait(timeout: .now() + timeout) == .success else { return nil }
        return result.get()
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
