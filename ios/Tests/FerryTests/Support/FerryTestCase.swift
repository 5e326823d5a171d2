import Foundation
import XCTest
import Ferry
import FerryTesting

/// Base class: makes temporary directories, servers and downloaders, and cleans all of them up
/// in tearDown (servers stopped, downloaders shut down, directories removed).
class FerryTestCase: XCTestCase {
    private var servers: [TestServer] = []
    private var downloaders: [Downloader] = []
    private var directories: [URL] = []

    /// A new empty temporary directory, removed in tearDown.
    func makeTemporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("ferry-swift-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        directories.append(dir)
        return dir
    }

    /// Starts a loopback `TestServer` (FerryTesting) in this process; it stops when tearDown lets
    /// go of it.
    func startServer(_ config: TestServerConfig) throws -> TestServer {
        let server = try TestServer(config)
        servers.append(server)
        return server
    }

    /// A downloader over a fresh state directory; shut down in tearDown.
    func makeDownloader(config: ManagerConfig? = nil) throws -> Downloader {
        let stateDir = try makeTemporaryDirectory().appendingPathComponent("state").path
        let downloader = try Downloader(stateDirectory: stateDir, config: config)
        downloaders.append(downloader)
        return downloader
    }

    override func tearDown() async throws {
        for downloader in downloaders {
            _ = try? await within(10, "shutdown") { await downloader.shutdown() }
        }
        downloaders = []
        servers = []  // the last reference: each server stops
        for dir in directories { try? FileManager.default.removeItem(at: dir) }
        directories = []
        try await super.tearDown()
    }

    /// Hex SHA-256 of a file.
    func sha256(ofFile path: String) throws -> String {
        SHA256.hex(try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
