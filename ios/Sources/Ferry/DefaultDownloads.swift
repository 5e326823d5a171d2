// The seed-style API of the iOS `background_download` module, on a process-wide default downloader.

import Foundation
import FerryBindings

/// The seed-style API on a process-wide default downloader: `download(url:destination:)`,
/// `status(of:)`, `cancel(_:)`, as in the iOS `background_download` module.
///
/// The default state directory is, in order: the one given to `setStateDirectory(_:)`,
/// `$FERRY_STATE_DIR`, the platform's data directory for "ferry". Apps should set it to a directory
/// in their container before the first call.
public enum DefaultDownloads {
    /// Chooses the default state directory; call it before the first download.
    /// - Throws: `FerryError` `.invalidState` once the default downloader is open on another directory.
    public static func setStateDirectory(_ path: String) throws {
        try ferry { try setDefaultStateDir(stateDir: path) }
    }

    /// The default downloader (opened on first use), for the full API. Always the same instance.
    public static func downloader() throws -> Downloader {
        try shared.get()
    }

    private static let shared = SharedDownloader()

    /// Starts downloading `url` to the absolute path `destination`; returns the task id. With a
    /// `taskId` already known, returns it without downloading again.
    @discardableResult
    public static func download(url: String, destination: String, taskId: String? = nil) throws -> String {
        try ferry { try FerryBindings.download(url: url, destination: destination, taskId: taskId) }
    }

    /// A task's status.
    public static func status(of taskId: String) throws -> TaskStatus {
        try ferry { try FerryBindings.status(taskId: taskId) }
    }

    /// Cancels a task and deletes its partial file.
    public static func cancel(_ taskId: String) throws {
        try ferry { try FerryBindings.cancel(taskId: taskId) }
    }
}

/// The one `Downloader` over the default manager, made on first use.
private final class SharedDownloader: @unchecked Sendable {
    private let lock = NSLock()
    private var downloader: Downloader?

    func get() throws -> Downloader {
        lock.lock()
        defer { lock.unlock() }
        if let downloader { return downloader }
        let made = Downloader(manager: try ferry { try defaultManager() })
        downloader = made
        return made
    }
}
