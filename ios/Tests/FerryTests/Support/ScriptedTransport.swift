import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Ferry

/// A stand-in for the OS's background transfers that does what iOS does and Linux cannot, on the
/// test's command: it records the tasks created, and delivers the events the test scripts on one
/// serial "delegate queue", deleting each body's temporary file as soon as the handler returns.
/// It outlives a simulated relaunch, as `nsurlsessiond` does: a new coordinator simply sets itself
/// as the handler.
final class ScriptedTransport: BackgroundTransport, @unchecked Sendable {
    enum State: Equatable { case running, cancelled, ended, vanished }

    struct OSTask {
        let request: OsRangeRequest
        var state: State
        var bytes: UInt64
    }

    private let lock = NSLock()
    private var handler: BackgroundTransportHandler?
    private var tasks: [OSTask] = []
    private var cancelled: [String] = []
    private var leftBehind: [String] = []
    private let queue = DispatchQueue(label: "scripted-os-delegate")
    private let temporaryDirectory: URL

    init(temporaryDirectory: URL) {
        self.temporaryDirectory = temporaryDirectory
        try? FileManager.default.createDirectory(at: temporaryDirectory, withIntermediateDirectories: true)
    }

    // MARK: BackgroundTransport

    func setEventHandler(_ handler: BackgroundTransportHandler?) {
        locked { self.handler = handler }
    }

    func startTasks(_ requests: [OsRangeRequest]) {
        locked { tasks += requests.map { OSTask(request: $0, state: .running, bytes: 0) } }
    }

    func liveTasks() async -> [OsTaskInfo] {
        locked { tasks.filter { $0.state == .running }.map { OsTaskInfo(osTag: $0.request.osTag, bytesReceived: $0.bytes) } }
    }

    func cancelDuplicates(tagged tags: [String]) async -> [String: Int] {
        let wanted = Set(tags)
        let hit: [String] = locked {
            var hit: [String] = []
            var kept: Set<String> = []
            let order = tasks.indices.sorted { tasks[$0].bytes > tasks[$1].bytes }
            for i in order where tasks[i].state == .running && wanted.contains(tasks[i].request.osTag) {
                if kept.insert(tasks[i].request.osTag).inserted { continue }
                tasks[i].state = .cancelled
                hit.append(tasks[i].request.osTag)
            }
            cancelled += hit
            return hit
        }
        for tag in hit {
            queue.async { self.emit(.completed(tag: tag, error: URLError(.cancelled))) }
        }
        return Dictionary(hit.map { ($0, 1) }, uniquingKeysWith: +)
    }

    func cancelTasks(tagged tags: [String]) {
        let wanted = Set(tags)
        let hit: [String] = locked {
            var hit: [String] = []
            for i in tasks.indices where tasks[i].state == .running && wanted.contains(tasks[i].request.osTag) {
                tasks[i].state = .cancelled
                hit.append(tasks[i].request.osTag)
            }
            cancelled += hit
            return hit
        }
        // As on iOS: a cancelled task reports completion with NSURLErrorCancelled, later.
        for tag in hit {
            queue.async { self.emit(.completed(tag: tag, error: URLError(.cancelled))) }
        }
    }

    // MARK: What the test sees

    /// Every request given to the OS, in order.
    var requests: [OsRangeRequest] { locked { tasks.map(\.request) } }
    /// The requests of tasks still running.
    var running: [OsRangeRequest] { locked { tasks.filter { $0.state == .running }.map(\.request) } }
    /// Tags cancelled, in order.
    var cancelledTags: [String] { locked { cancelled } }
    /// Tags whose temporary file was still in place when the handler returned (it was not moved
    /// inside the callback, so on iOS its bytes would be lost).
    var tagsLeftBehind: [String] { locked { leftBehind } }

    // MARK: What the test scripts

    /// The OS finished a task: its body (as a temporary file) and answer, then its completion.
    func finish(_ tag: String, body: Data, status: UInt16, headers: [HttpHeader], thenComplete: Bool = true) throws {
        let file = temporaryDirectory.appendingPathComponent("CFNetworkDownload_\(UUID().uuidString).tmp")
        try body.write(to: file)
        setState(tag, .ended)
        queue.sync {
            emit(.finished(tag: tag, file: file, response: ChunkResponse(status: status, headers: headers)))
            if FileManager.default.fileExists(atPath: file.path) {
                locked { leftBehind.append(tag) }
                try? FileManager.default.removeItem(at: file)  // iOS deletes it on return
            }
            if thenComplete { emit(.completed(tag: tag, error: nil)) }
        }
    }

    /// The OS's task failed without a body.
    func fail(_ tag: String, error: Error) {
        setState(tag, .ended)
        queue.sync { emit(.completed(tag: tag, error: error)) }
    }

    /// The OS reports bytes received.
    func progress(_ tag: String, bytes: UInt64) {
        locked {
            if let i = tasks.firstIndex(where: { $0.request.osTag == tag }) { tasks[i].bytes = bytes }
        }
        queue.sync { emit(.progress(tag: tag, bytesReceived: bytes)) }
    }

    /// Tasks gone without a word (a force-quit cancels them all while no process listens).
    func vanish(_ tags: [String]? = nil) {
        locked {
            for i in tasks.indices where tasks[i].state == .running && (tags?.contains(tasks[i].request.osTag) ?? true) {
                tasks[i].state = .vanished
            }
        }
    }

    /// The OS has delivered everything it held (`urlSessionDidFinishEvents`).
    func allEventsDelivered() {
        queue.sync { emit(.allEventsDelivered) }
    }

    /// Tasks the OS kept running for leases made by a process that is gone.
    func adopt(_ requests: [OsRangeRequest]) {
        startTasks(requests)
    }

    /// Waits until the events queued so far (cancellations) are delivered.
    func flush() {
        queue.sync {}
    }

    private func setState(_ tag: String, _ state: State) {
        locked {
            if let i = tasks.firstIndex(where: { $0.request.osTag == tag }) { tasks[i].state = state }
        }
    }

    private func emit(_ event: BackgroundTransportEvent) {
        let handler = locked { self.handler }
        handler?(event)
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
