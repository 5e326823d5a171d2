import Foundation
import XCTest
import Ferry

/// Bad input is refused with the right code, and every code keeps its number.
final class ErrorCodeTests: FerryTestCase {
    /// The table of tests/error_codes.rs, copied: a second pin, in Swift.
    static let pinned: [(ErrorCode, String, UInt16)] = [
        (.invalidUrl, "invalid_url", 1001),
        (.unsupportedScheme, "unsupported_scheme", 1002),
        (.relativeDestination, "relative_destination", 1003),
        (.destinationDirMissing, "destination_dir_missing", 1004),
        (.destinationExists, "destination_exists", 1005),
        (.destinationNotWritable, "destination_not_writable", 1006),
        (.invalidConnections, "invalid_connections", 1007),
        (.invalidHeader, "invalid_header", 1008),
        (.conflictingOutputs, "conflicting_outputs", 1009),
        (.invalidChecksum, "invalid_checksum", 1010),
        (.taskIdConflict, "task_id_conflict", 1011),
        (.destinationBusy, "destination_busy", 1012),
        (.taskNotFound, "task_not_found", 1013),
        (.invalidState, "invalid_state", 1014),
        (.invalidTaskId, "invalid_task_id", 1015),
        (.invalidConfig, "invalid_config", 1016),
        (.missingOutput, "missing_output", 1017),
        (.unknownLease, "unknown_lease", 1018),
        (.rootUnknown, "root_unknown", 1019),
        (.connectFailed, "connect_failed", 2001),
        (.timeout, "timeout", 2002),
        (.httpClientError, "http_client_error", 2003),
        (.notFound, "not_found", 2004),
        (.serverError, "server_error", 2005),
        (.tooManyRequests, "too_many_requests", 2006),
        (.tooManyRedirects, "too_many_redirects", 2007),
        (.redirectLoop, "redirect_loop", 2008),
        (.rangeMismatch, "range_mismatch", 2009),
        (.contentChanged, "content_changed", 2010),
        (.truncatedBody, "truncated_body", 2011),
        (.tls, "tls", 2012),
        (.network, "network", 2013),
        (.unsupportedEncoding, "unsupported_encoding", 2014),
        (.accessDenied, "access_denied", 2015),
        (.protocolError, "protocol_error", 2016),
        (.credentialsRefreshFailed, "credentials_refresh_failed", 2017),
        (.diskFull, "disk_full", 3001),
        (.storageIo, "storage_io", 3002),
        (.permissionDenied, "permission_denied", 3003),
        (.stateDirLocked, "state_dir_locked", 3004),
        (.database, "database", 3005),
        (.locksUnavailable, "locks_unavailable", 3006),
        (.checksumMismatch, "checksum_mismatch", 4001),
        (.sizeMismatch, "size_mismatch", 4002),
        (.memoryLimitExceeded, "memory_limit_exceeded", 4003),
        (.cancelled, "cancelled", 5001),
        (.interrupted, "interrupted", 5002),
        (.shutDown, "shut_down", 5003),
        (.sinkRejected, "sink_rejected", 5004),
        (.internal, "internal", 9001),
    ]

    func testEveryErrorCodeKeepsItsNumber() {
        for (code, name, number) in Self.pinned {
            XCTAssertEqual(code.rawValue, number, "\(name) changed its number")
            XCTAssertEqual(String(describing: code), camelCase(name), "\(number) changed its name")
            XCTAssertEqual(FerryError(code: code, message: "").errorCode, Int(number))
        }
        // No code exists that the table does not pin.
        let all = (0...UInt16.max).compactMap(ErrorCode.init(rawValue:))
        XCTAssertEqual(all.map(\.rawValue), Self.pinned.map(\.2), "a code was added: pin it here and in tests/error_codes.rs")
    }

    func testSwiftTableIsTheRustTable() throws {
        let rustTable = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tests/error_codes.rs")
        let source = try String(contentsOf: rustTable, encoding: .utf8)
        let regex = try NSRegularExpression(pattern: #"\(\s*"([a-z_0-9]+)"\s*,\s*([0-9]+)\s*\)"#)
        let rows = regex.matches(in: source, range: NSRange(source.startIndex..., in: source)).map { match in
            (String(source[Range(match.range(at: 1), in: source)!]), UInt16(source[Range(match.range(at: 2), in: source)!])!)
        }
        XCTAssertEqual(rows.map(\.0), Self.pinned.map(\.1))
        XCTAssertEqual(rows.map(\.1), Self.pinned.map(\.2))
    }

    func testRelativeDestinationIs1003() async throws {
        let server = try startServer(size: 1024)
        let downloader = try makeDownloader()
        let error = try await enqueueError(downloader, DownloadRequest(url: server.url, destination: "relative/file.bin"))
        XCTAssertEqual(error.code, .relativeDestination)
        XCTAssertEqual(error.kind, .invalidInput)
        let nsError = error as NSError
        XCTAssertEqual(nsError.domain, "dev.ferry")
        XCTAssertEqual(nsError.code, 1003)
        XCTAssertFalse(error.message.isEmpty)
    }

    func testFtpSchemeIs1002() async throws {
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let error = try await enqueueError(downloader, DownloadRequest(url: "ftp://127.0.0.1/file", destination: destination))
        XCTAssertEqual(error.code, .unsupportedScheme)
        XCTAssertEqual(error.errorCode, 1002)
        XCTAssertEqual((error as NSError).code, 1002)
    }

    func testZeroConnectionsIs1007() async throws {
        let server = try startServer(size: 1024)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let error = try await enqueueError(downloader, DownloadRequest(url: server.url, destination: destination, connections: 0))
        XCTAssertEqual(error.code, .invalidConnections)
        XCTAssertEqual(error.errorCode, 1007)
        XCTAssertEqual(FerryError.errorDomain, "dev.ferry")
    }

    func testUnknownTaskIs1013() async throws {
        let downloader = try makeDownloader()
        do {
            _ = try await downloader.status(of: "no-such-task")
            XCTFail("an unknown task must throw")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .taskNotFound)
        }
    }

    func testBatchRejectionsCarryTheirCodes() async throws {
        let server = try startServer(size: 1024)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("ok.bin").path
        let results = await downloader.enqueue([
            DownloadRequest(url: server.url, destination: destination),
            DownloadRequest(url: server.url, destination: "relative.bin"),
            DownloadRequest(url: "ftp://127.0.0.1/x", destination: destination + ".2"),
        ])
        XCTAssertEqual(results.count, 3)
        XCTAssertNotNil(try? results[0].get())
        XCTAssertEqual(failure(results[1])?.code, .relativeDestination)
        XCTAssertEqual(failure(results[2])?.code, .unsupportedScheme)
    }

    // MARK: Helpers

    private func enqueueError(_ downloader: Downloader, _ request: DownloadRequest) async throws -> FerryError {
        do {
            let id = try await downloader.enqueue(request)
            throw TestFailure("the request was accepted as task \(id)")
        } catch let error as FerryError {
            return error
        }
    }

    private func failure(_ result: Result<String, FerryError>) -> FerryError? {
        if case let .failure(error) = result { return error }
        return nil
    }

    private func camelCase(_ snake: String) -> String {
        let parts = snake.split(separator: "_")
        return parts.enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.prefix(1).uppercased() + $0.element.dropFirst() }.joined()
    }
}
