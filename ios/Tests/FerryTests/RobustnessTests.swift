import Foundation
import XCTest
import Ferry

/// Real-world misuse and stress: many tasks hammering one downloader, misbehaving listeners,
/// abandoned streams and waits, shutdown through another handle, hostile paths, a big batch.
final class RobustnessTests: FerryTestCase {
    /// Threads of this process named `ferry-listener` (one per live engine listener).
    static func listenerThreads() -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { tid in
            let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
            return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == "ferry-listener"
        }.count
    }

    func testManyTasksCallingOneDownloaderAtOnce() async throws {
        let server = try startServer(size: 1 << 20, rate: 4_000_000)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let requests = (0..<8).map {
            DownloadRequest(url: server.url, destination: dir.appendingPathComponent("\($0).bin").path, taskId: "t\($0)")
        }
        for request in requests { _ = try await downloader.enqueue(request) }

        let deadline = Date().addingTimeInterval(1.5)
        let unexpected = try await within(60, "every caller to finish") { () -> [String] in
            try await withThrowingTaskGroup(of: [String].self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        var errors: [String] = []
                        var op = 0
                        while Date() < deadline {
                            let request = requests[(worker + op) % requests.count]
                            let id = request.taskId!
                            do {
                                switch op % 4 {
                                case 0: _ = try await downloader.status(of: id)
                                case 1: try await downloader.pause(id)
                                case 2: try await downloader.resume(id)
                                default: _ = await downloader.tasks()
                                }
                                // The same request again is idempotent, whatever state the task is in.
                                let again = try await downloader.enqueue(request)
                                if again != id { errors.append("enqueue gave \(again) for \(id)") }
                            } catch let error as FerryError where error.code == .invalidState {
                                // e.g. pausing a task that just completed
                            } catch {
                                errors.append(String(describing: error))
                            }
                            op += 1
                        }
                        return errors
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
        }
        XCTAssertEqual(unexpected, [])
        await downloader.resumeAll()
        for request in requests {
            let status = try await within(60, "task \(request.taskId!)") { try await downloader.wait(for: request.taskId!) }
            XCTAssertEqual(status.state, .completed)
            XCTAssertEqual(try sha256(ofFile: request.destination!), server.sha256)
        }
    }

    func testThrowingAndBlockingListenersDoNotDelayOthers() async throws {
        struct Broken: Error {}
        let server = try startServer(size: 256 << 10)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let release = DispatchSemaphore(value: 0)
        let thrower = downloader.addListener { _ in throw Broken() }
        let blocker = downloader.addListener { _ in _ = release.wait(timeout: .now() + 10) }
        defer {
            thrower.cancel()
            blocker.cancel()
            for _ in 0..<20 { release.signal() }
        }
        let states = LockedBox<[TaskState]>([])
        let prompt = downloader.addListener { event in
            if let state = event.newState { states.update { $0.append(state) } }
        }
        defer { prompt.cancel() }

        let started = Date()
        let status = try await within(30, "download") {
            try await downloader.download(from: server.url, to: dir.appendingPathComponent("x.bin").path)
        }
        XCTAssertEqual(status.state, .completed)
        try await eventually(5, "the well-behaved listener to see the completion") { states.get().last == .completed }
        XCTAssertEqual(states.get(), [.queued, .running, .completed])
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "the blocked listener held things up")
    }

    func testListenersAddedAndReleasedInALoopLeaveNoThreadBehind() async throws {
        let downloader = try makeDownloader()
        let before = Self.listenerThreads()
        for i in 0..<1000 {
            let subscription = downloader.addListener { _ in }
            if i % 2 == 0 { subscription.cancel() }  // the others are only released
        }
        try await eventually(10, "every listener thread to end") { Self.listenerThreads() <= before }
    }

    func testAbandonedEventStreamsLeaveNoThreadBehind() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let before = Self.listenerThreads()
        // Never iterated, then dropped.
        for _ in 0..<200 { _ = downloader.events() }
        // Iterated for one event, then the loop is left and the stream dropped.
        var streams: [AsyncStream<DownloadEvent>] = (0..<50).map { _ in downloader.events() }
        _ = try await downloader.enqueue(DownloadRequest(url: server.url, destination: dir.appendingPathComponent("a.bin").path))
        for stream in streams {
            _ = try await within(10, "one event") { () -> Bool in
                for await _ in stream { return true }
                return false
            }
        }
        streams = []
        // A consumer task cancelled while it waits for the next event.
        let waiting = downloader.events()
        let consumer = Task { for await _ in waiting {} }
        try await Task.sleep(nanoseconds: 100_000_000)
        consumer.cancel()
        _ = try await within(10, "the cancelled consumer") { await consumer.value }
        try await eventually(10, "every listener thread to end") { Self.listenerThreads() <= before }
    }

    func testStreamsEndWhenAnotherDownloaderOfTheSameDirectoryShutsDown() async throws {
        let stateDir = try makeTemporaryDirectory().appendingPathComponent("state").path
        let first = try Downloader(stateDirectory: stateDir)
        let second = try Downloader(stateDirectory: stateDir)  // the same engine manager
        let events = second.events()
        let consumer = Task { () -> Int in
            var count = 0
            for await _ in events { count += 1 }
            return count
        }
        try await Task.sleep(nanoseconds: 100_000_000)
        await first.shutdown()
        _ = try await within(10, "the second downloader's stream to finish") { await consumer.value }
        do {
            _ = try await second.enqueue(DownloadRequest(url: "http://127.0.0.1:9/x", destination: stateDir + "/x"))
            XCTFail("the shared manager is shut down")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .shutDown)
        }
    }

    func testCancelledWaitsLeaveTheDownloadRunningAndShutdownPrompt() async throws {
        let server = try startServer(size: 8 << 20, rate: 1_000_000)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("slow.bin").path
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination, taskId: "slow"))
        let waiters = (0..<50).map { _ in Task { try await downloader.wait(for: id) } }
        let downloadCall = Task {
            try await downloader.download(DownloadRequest(url: server.url, destination: destination, taskId: "slow"))
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        for waiter in waiters { waiter.cancel() }
        downloadCall.cancel()
        for waiter in waiters {
            do {
                _ = try await within(5, "a cancelled wait") { try await waiter.value }
                XCTFail("a cancelled wait must throw")
            } catch is CancellationError {}
        }
        do {
            _ = try await within(5, "a cancelled download call") { try await downloadCall.value }
            XCTFail("a cancelled download call must throw")
        } catch is CancellationError {}
        let status = try await downloader.status(of: id)
        XCTAssertEqual(status.state, .running, "cancelling the waiters does not stop the download")

        let started = Date()
        _ = try await within(15, "shutdown") { await downloader.shutdown() }
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        let after = try await downloader.status(of: id)
        XCTAssertEqual(after.state, .queued, "a download stopped by shutdown resumes on the next open")
        let ended = try await within(5, "a wait after shutdown") { try await downloader.wait(for: id) }
        XCTAssertEqual(ended.state, .queued)
        do {
            _ = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination + ".2"))
            XCTFail("a shut-down downloader takes no new work")
        } catch let error as FerryError {
            XCTAssertEqual(error.code, .shutDown)
            XCTAssertEqual(error.kind, .stopped)
        }
        _ = try await within(15, "a second shutdown") { await downloader.shutdown() }
    }

    func testStateDirectoryThatIsAFileIsATypedError() throws {
        let file = try makeTemporaryDirectory().appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        for path in [file.path, file.appendingPathComponent("state").path] {
            XCTAssertThrowsError(try Downloader(stateDirectory: path)) { error in
                XCTAssertEqual((error as? FerryError)?.code, .storageIo, "\(error)")
                XCTAssertEqual((error as? FerryError)?.kind, .storage)
            }
        }
        XCTAssertThrowsError(try Downloader(stateDirectory: "")) { error in
            XCTAssertEqual((error as? FerryError)?.kind, .storage, "\(error)")
        }
    }

    func testHostileStrings() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let dir = try makeTemporaryDirectory()
        let cases: [(DownloadRequest, ErrorCode)] = [
            (DownloadRequest(url: server.url, destination: dir.path + "/a\u{0}b"), .destinationNotWritable),
            (DownloadRequest(url: server.url, destination: dir.path + "/" + String(repeating: "n", count: 300)), .destinationNotWritable),
            (DownloadRequest(url: server.url, destination: dir.path + "/x", taskId: String(repeating: "i", count: 1 << 20)), .invalidTaskId),
            (DownloadRequest(url: server.url, destination: dir.path + "/x", taskId: "bad\u{7}id"), .invalidTaskId),
            (DownloadRequest(url: "http://exa mple.com/\u{0}", destination: dir.path + "/x"), .invalidUrl),
            (DownloadRequest(url: server.url, destination: dir.path + "/x",
                             headers: [HttpHeader(name: "X-Bad", value: "a\r\nInjected: 1")]), .invalidHeader),
        ]
        for (request, code) in cases {
            do {
                _ = try await downloader.enqueue(request)
                XCTFail("accepted \(request.taskId ?? request.url)")
            } catch let error as FerryError {
                XCTAssertEqual(error.code, code, error.message)
            }
        }
        let id = "téléchargement-🚢-\u{202E}"
        let destination = dir.appendingPathComponent("ünïcode 🚢.bin").path
        let status = try await within(30, "a Unicode download") {
            try await downloader.download(DownloadRequest(url: server.url, destination: destination, taskId: id))
        }
        XCTAssertEqual(status.taskId, id)
        XCTAssertEqual(status.destination, destination)
        XCTAssertEqual(try sha256(ofFile: destination), server.sha256)
    }

    func testBatchOfTenThousandDeliversEveryQueuedEvent() async throws {
        let server = try startServer(size: 4 << 20, rate: 100_000)
        let downloader = try makeDownloader()
        try await downloader.setLimits(Limits(maxRunningTasks: 1, maxConnectionsPerHost: 16, maxConnectionsPerTask: 16))
        let dir = try makeTemporaryDirectory()
        let events = downloader.events()
        let requests = (0..<10_000).map {
            DownloadRequest(url: server.url, destination: dir.appendingPathComponent("\($0).bin").path, taskId: "b\($0)")
        }
        let started = Date()
        let results = await downloader.enqueue(requests)
        let took = Date().timeIntervalSince(started)
        print(String(format: "MEASURE enqueue of a 10,000-request batch: %.0f ms", took * 1000))
        XCTAssertEqual(results.compactMap { try? $0.get() }, requests.map { $0.taskId! })

        let queued = try await within(60, "10,000 queued events") { () -> Int in
            var queued = 0
            for await event in events where event.newState == .queued {
                queued += 1
                if queued == 10_000 { break }
            }
            return queued
        }
        XCTAssertEqual(queued, 10_000)
        let paused = await downloader.pauseAll()
        XCTAssertEqual(paused, 10_000)
    }
}
