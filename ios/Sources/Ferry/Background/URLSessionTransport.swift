// Why this file: the one `BackgroundTransport` over a real `URLSession`. On Apple platforms it is a
// background session (the transfers run in `nsurlsessiond`, outside the app); elsewhere (Linux) a
// default session with the same delegate, so the path from OS callback to ingest is exercised by
// the Linux tests. It makes no decisions: it turns requests into download tasks and delegate
// callbacks into `BackgroundTransportEvent`s.

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import FerryBindings

/// A `BackgroundTransport` over a `URLSession` whose delegate queue is serial (a concurrent one
/// would let `didCompleteWithError` overtake `didFinishDownloadingTo`).
///
/// The session is made when the event handler is set, not before: a background session starts
/// delivering the events held for the app as soon as it exists, and a `finished` event with no one
/// to move its file would lose the chunk.
public final class URLSessionTransport: BackgroundTransport, @unchecked Sendable {
    /// The background session's identifier (nil for a session made from a configuration).
    public let identifier: String?
    private let configuration: URLSessionConfiguration
    private let delegate = SessionDelegate()
    private let lock = NSLock()
    private var made: URLSession?

    private static let transports = Locked<[String: URLSessionTransport]>([:])

    /// The transport of the background session `identifier`: one per identifier per process (two
    /// live sessions with one identifier are an error on iOS). On Apple platforms the session is
    /// `URLSessionConfiguration.background(withIdentifier:)` with `sessionSendsLaunchEvents` and
    /// not discretionary; where background sessions do not exist (Linux) it is a default session.
    public static func background(identifier: String) -> URLSessionTransport {
        transports.withLock { all in
            if let transport = all[identifier] { return transport }
            let transport = URLSessionTransport(identifier: identifier, configuration: backgroundConfiguration(identifier))
            all[identifier] = transport
            return transport
        }
    }

    /// A transport over a session made from `configuration` (e.g. `.default`, for tests or for
    /// transfers that need not outlive the process).
    public convenience init(configuration: URLSessionConfiguration) {
        self.init(identifier: nil, configuration: configuration)
    }

    private init(identifier: String?, configuration: URLSessionConfiguration) {
        self.identifier = identifier
        self.configuration = configuration
    }

    /// The session (made on first use).
    public var session: URLSession {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        queue.name = "dev.ferry.urlsession-delegate"
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: queue)
        made = session
        return session
    }

    public func setEventHandler(_ handler: BackgroundTransportHandler?) {
        delegate.setHandler(handler)
        _ = session
    }

    public func startTasks(_ requests: [OsRangeRequest]) {
        let session = self.session
        for request in requests {
            guard let url = URL(string: request.url) else {
                let tag = request.osTag
                session.delegateQueue.addOperation { [delegate] in
                    delegate.emit(.completed(tag: tag, error: URLError(.badURL)))
                }
                continue
            }
            var urlRequest = URLRequest(url: url)
            urlRequest.httpMethod = "GET"
            for header in request.headers {
                urlRequest.addValue(header.value, forHTTPHeaderField: header.name)
            }
            let task = session.downloadTask(with: urlRequest)
            task.taskDescription = request.osTag
            task.resume()
        }
    }

    public func liveTasks() async -> [OsTaskInfo] {
        let session = self.session
        return await withCheckedContinuation { continuation in
            session.getAllTasks { tasks in
                // A task that completed but whose events are not delivered yet still counts: its
                // events will say what became of it. A cancelled one does not.
                let live = tasks.compactMap { task -> OsTaskInfo? in
                    guard let tag = task.taskDescription, task.state != .canceling else { return nil }
                    return OsTaskInfo(osTag: tag, bytesReceived: UInt64(max(0, task.countOfBytesReceived)))
                }
                continuation.resume(returning: live)
            }
        }
    }

    public func cancelDuplicates(tagged tags: [String]) async -> [String: Int] {
        guard !tags.isEmpty else { return [:] }
        let wanted = Set(tags)
        let session = self.session
        return await withCheckedContinuation { continuation in
            session.getAllTasks { tasks in
                var cancelled: [String: Int] = [:]
                let live = tasks.filter { $0.state != .canceling && $0.taskDescription.map(wanted.contains) == true }
                for (tag, group) in Dictionary(grouping: live, by: { $0.taskDescription ?? "" }) {
                    for task in group.sorted(by: { $0.countOfBytesReceived > $1.countOfBytesReceived }).dropFirst() {
                        task.cancel()
                        cancelled[tag, default: 0] += 1
                    }
                }
                continuation.resume(returning: cancelled)
            }
        }
    }

    public func cancelTasks(tagged tags: [String]) {
        guard !tags.isEmpty else { return }
        let wanted = Set(tags)
        session.getAllTasks { tasks in
            for task in tasks where task.taskDescription.map(wanted.contains) == true {
                task.cancel()
            }
        }
    }

    /// Cancels every task and invalidates the session (for sessions made from a configuration;
    /// a background session lives as long as the process).
    public func invalidate() {
        delegate.setHandler(nil)
        session.invalidateAndCancel()
    }

    private static func backgroundConfiguration(_ identifier: String) -> URLSessionConfiguration {
        #if canImport(Darwin)
        let configuration = URLSessionConfiguration.background(withIdentifier: identifier)
        configuration.sessionSendsLaunchEvents = true
        configuration.isDiscretionary = false
        return configuration
        #else
        return .default
        #endif
    }
}

/// The session's delegate: callbacks in, events out.
private final class SessionDelegate: NSObject, URLSessionDownloadDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var handler: BackgroundTransportHandler?

    func setHandler(_ handler: BackgroundTransportHandler?) {
        lock.lock()
        self.handler = handler
        lock.unlock()
    }

    func emit(_ event: BackgroundTransportEvent) {
        lock.lock()
        let handler = self.handler
        lock.unlock()
        handler?(event)
    }

    func urlSession(
        _ session: URLSession, downloadTask: URLSessionDownloadTask, didWriteData bytesWritten: Int64,
        totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64
    ) {
        guard let tag = downloadTask.taskDescription else { return }
        // The running total, never a sum of `bytesWritten` (swift-corelibs-foundation samples the
        // total later than the increment).
        emit(.progress(tag: tag, bytesReceived: UInt64(max(0, totalBytesWritten))))
    }

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didFinishDownloadingTo location: URL) {
        guard let tag = downloadTask.taskDescription else { return }
        let http = downloadTask.response as? HTTPURLResponse
        var headers: [HttpHeader] = []
        for (name, value) in http?.allHeaderFields ?? [:] {
            guard let name = name as? String else { continue }
            headers.append(HttpHeader(name: name, value: "\(value)"))
        }
        let status = UInt16(clamping: http?.statusCode ?? 0)
        emit(.finished(tag: tag, file: location, response: ChunkResponse(status: status, headers: headers)))
        // iOS deletes the file when this returns; swift-corelibs-foundation never does. Deleting
        // it here makes both behave alike (the handler moved it already).
        try? FileManager.default.removeItem(at: location)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let tag = task.taskDescription else { return }
        emit(.completed(tag: tag, error: error))
    }

    #if canImport(Darwin)
    func urlSessionDidFinishEvents(forBackgroundURLSession session: URLSession) {
        emit(.allEventsDelivered)
    }
    #endif
}
