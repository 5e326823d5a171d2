// The manager facade: `Downloader`, one state directory's task table with `async` calls. Its events
// are in Downloader+Events.swift, its errors in FerryError.swift and FerryError+Bindings.swift.

import Foundation
import FerryBindings

/// Downloads files (or small bodies into memory), resumably, tracked in a persistent task table
/// that lives in one state directory.
///
/// `Downloader` is `Sendable`: share one instance between tasks and actors. Opening the same
/// directory twice in one process gives the same engine. Calls are `async` and throw `FerryError`;
/// waiting calls (`wait`, `download`, `fetchBytes`) stop waiting when the calling task is cancelled.
///
/// ```swift
/// let downloader = try Downloader(stateDirectory: stateDir)
/// let status = try await downloader.download(from: url, to: "/abs/path/file.bin")
/// ```
public final class Downloader: Sendable {
    /// The generated manager this wraps.
    let manager: DownloadManager
    /// Event streams to finish at shutdown.
    let streams = EventStreams()

    /// Opens (creating it if needed) the task table in `stateDirectory`. Unless `config` names a
    /// proxy, the system's HTTP(S) proxy settings apply. Other processes (an app
    /// extension, a widget, the app itself) may have the same directory open: see "Several
    /// processes" in ios/README.md for what they share.
    /// - Throws: `FerryError`, e.g. `.locksUnavailable` on a file system without working file
    ///   locks, `.permissionDenied` for a directory that cannot be written.
    public convenience init(stateDirectory: String, config: ManagerConfig? = nil) throws {
        let config = (config ?? ManagerConfig()).withSystemProxy()
        let manager = try ferry { try DownloadManager.open(stateDir: stateDirectory, config: config) }
        self.init(manager: manager)
    }

    init(manager: DownloadManager) {
        self.manager = manager
    }

    /// The state directory (absolute).
    public var stateDirectory: String { manager.stateDir() }

    // MARK: Enqueueing

    /// Enqueues a download and returns its task id. Enqueueing a request whose `taskId` is already
    /// known returns that id without downloading again.
    public func enqueue(_ request: DownloadRequest) async throws -> String {
        try ferry { try manager.enqueue(request: request) }
    }

    /// Enqueues many downloads in one transaction: one result per request, in order.
    public func enqueue(_ requests: [DownloadRequest]) async -> [Result<String, FerryError>] {
        manager.enqueueBatch(requests: requests).map { item in
            switch item {
            case let .enqueued(taskId): return .success(taskId)
            case let .rejected(error): return .failure(FerryError(error))
            }
        }
    }

    /// Enqueues a download and waits for it to complete.
    /// - Returns: the completed task's status.
    /// - Throws: `FerryError` if the request is invalid or the task fails (the task's error), is
    ///   cancelled (`.cancelled`) or paused (`.interrupted`); `CancellationError` if the calling
    ///   task is cancelled (the download itself goes on: cancel it with `cancel(_:)`).
    public func download(_ request: DownloadRequest) async throws -> TaskStatus {
        let taskId = try await enqueue(request)
        let status = try await wait(for: taskId)
        if let error = FerryError(finished: status) { throw error }
        return status
    }

    /// Downloads `url` to the absolute file path `destination` and waits for it to complete;
    /// with `sha256` (hex), the file only appears if its digest matches.
    public func download(from url: String, to destination: String, sha256: String? = nil) async throws -> TaskStatus {
        try await download(DownloadRequest(url: url, destination: destination, sha256: sha256))
    }

    // MARK: Waiting and fetching

    /// Waits until the task is no longer queued or running (completed, failed, paused or cancelled).
    public func wait(for taskId: String) async throws -> TaskStatus {
        let manager = self.manager
        return try await cancellable {
            try await ferryAsync { try await manager.wait(taskId: taskId) }
        }
    }

    /// Fetches a small resource into memory (no task is recorded).
    /// - Throws: `FerryError`, e.g. `.memoryLimitExceeded` when the body is longer than `limit`.
    public func fetchBytes(from url: String, headers: [HttpHeader] = [], limit: UInt64 = 16 << 20) async throws -> Data {
        let manager = self.manager
        return try await cancellable {
            try await ferryAsync { try await manager.fetchBytes(url: url, headers: headers, limit: limit) }
        }
    }

    /// Takes the bytes of a completed memory task (a request with `memoryLimit`).
    public func takeBytes(of taskId: String) async throws -> Data {
        try ferry { try manager.takeBytes(taskId: taskId) }
    }

    // MARK: Status

    /// A task's status.
    public func status(of taskId: String) async throws -> TaskStatus {
        try ferry { try manager.status(taskId: taskId) }
    }

    /// Every task, in enqueue order.
    public func tasks() async -> [TaskStatus] {
        manager.list()
    }

    // MARK: Control

    /// Pauses a task; its partial file and the bytes already received are kept.
    public func pause(_ taskId: String) async throws {
        try ferry { try manager.pause(taskId: taskId) }
    }

    /// Resumes a paused or failed task from where it stopped.
    public func resume(_ taskId: String) async throws {
        try ferry { try manager.resume(taskId: taskId) }
    }

    /// Cancels a task and deletes its partial file.
    public func cancel(_ taskId: String) async throws {
        try ferry { try manager.cancel(taskId: taskId) }
    }

    /// Forgets a task; with `deletingFile`, also deletes the file of a completed task.
    public func remove(_ taskId: String, deletingFile: Bool = false) async throws {
        try ferry { try manager.remove(taskId: taskId, deleteFile: deletingFile) }
    }

    /// Changes a task's priority (higher runs first).
    public func setPriority(_ priority: Int32, of taskId: String) async throws {
        try ferry { try manager.setPriority(taskId: taskId, priority: priority) }
    }

    /// Pauses every queued or running task; returns how many.
    @discardableResult
    public func pauseAll() async -> Int {
        Int(manager.pauseAll())
    }

    /// Resumes every queued, paused or failed task; returns how many.
    @discardableResult
    public func resumeAll() async -> Int {
        Int(manager.resumeAll())
    }

    /// The current concurrency limits.
    public var limits: Limits { manager.limits() }

    /// Changes the concurrency limits.
    public func setLimits(_ limits: Limits) async throws {
        try ferry { try manager.setLimits(limits: limits) }
    }

    /// Stops every transfer (they resume when the directory is opened again), accepts no new work
    /// and finishes every event stream of this downloader.
    public func shutdown() async {
        await manager.shutdown()
        streams.finishAll()
    }
}
