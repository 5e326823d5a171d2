import Foundation
import XCTest
import Ferry

/// Bodies kept in memory: `fetchBytes` and memory-output tasks.
final class FetchBytesTests: FerryTestCase {
    func testFetchBytesIntoMemory() async throws {
        let server = try startServer(size: 256 << 10, seed: 3)
        let downloader = try makeDownloader()
        let data = try await within(30, "fetchBytes") { try await downloader.fetchBytes(from: server.url) }
        XCTAssertEqual(UInt64(data.count), server.size)
        XCTAssertEqual(SHA256.hex(data), server.sha256)
    }

    func testFetchBytesOverTheLimitIs4003() async throws {
        let server = try startServer(size: 256 << 10)
        let downloader = try makeDownloader()
        do {
            _ = try await within(30, "fetchBytes") { try await downloader.fetchBytes(from: server.url, limit: 1000) }
            XCTFail("a body over the limit must fail")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .memoryLimitExceeded)
            XCTAssertEqual(error.errorCode, 4003)
        }
    }

    func testMemoryTaskKeepsItsBytes() async throws {
        let server = try startServer(size: 100_000, seed: 5)
        let downloader = try makeDownloader()
        let status = try await within(30, "memory task") {
            try await downloader.download(DownloadRequest(url: server.url, taskId: "mem", memoryLimit: 1 << 20))
        }
        XCTAssertEqual(status.output, "memory")
        let data = try await downloader.takeBytes(of: "mem")
        XCTAssertEqual(SHA256.hex(data), server.sha256)
    }
}
