// Why this file: every decision about handing downloads to the OS is written against this
// protocol, not against `URLSession`, so that the same coordinator runs on Linux over a real
// (foreground) `URLSession` and over a scripted stand-in for what only iOS does: relaunches,
// force-quits, temporary files deleted when the callback returns, stitched legs.

import Foundation
import FerryBindings

/// What the OS's transfer service reports about one of its tasks, named by the task's tag (its
/// `taskDescription`).
public enum BackgroundTransportEvent: Sendable {
    /// The task's running total of bytes received.
    case progress(tag: String, bytesReceived: UInt64)
    /// The task's body is at `file`, and the server's answer is `response`. The OS deletes the
    /// file as soon as the handler returns: the handler moves it before returning.
    case finished(tag: String, file: URL, response: ChunkResponse)
    /// The task ended: after `finished` (with `error` nil), or without a body (failed, cancelled).
    case completed(tag: String, error: Error?)
    /// Every event the OS held for the app (suspended or not running) has been delivered
    /// (`urlSessionDidFinishEvents(forBackgroundURLSession:)`).
    case allEventsDelivered
}

/// Receives a transport's events, one at a time and in order.
public typealias BackgroundTransportHandler = @Sendable (BackgroundTransportEvent) -> Void

/// The OS's out-of-process downloader, as the coordinator (`BackgroundDownloads`) sees it.
///
/// Implementations deliver events serially (one delegate queue) and call the handler for
/// `finished` synchronously, inside the OS callback, so the file can be moved before it is gone.
public protocol BackgroundTransport: AnyObject, Sendable {
    /// Sets the receiver of every event (nil: none). The transport may start delivering events
    /// held for the app as soon as a handler is set, so set it once, before anything else.
    func setEventHandler(_ handler: BackgroundTransportHandler?)
    /// Creates and starts one OS download task per request: `taskDescription` = `osTag`, every
    /// header of the request sent as given.
    func startTasks(_ requests: [OsRangeRequest])
    /// The OS's tasks that have not ended (their events may still be on their way), with their
    /// tags and the bytes they received.
    func liveTasks() async -> [OsTaskInfo]
    /// Cancels every task with one of these tags; unknown tags are ignored.
    func cancelTasks(tagged tags: [String])
    /// For each tag carried by more than one live task, keeps the task that received the most and
    /// cancels the others. Returns how many were cancelled per tag (their completions follow).
    func cancelDuplicates(tagged tags: [String]) async -> [String: Int]
}
