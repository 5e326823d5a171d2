// The registry of a downloader's open event streams: `Downloader.events()` adds each stream it
// makes and `Downloader.shutdown()` finishes them all, so it sits apart from both.

import Foundation
import FerryBindings

/// The open event streams of a downloader, so that `shutdown()` can finish them.
final class EventStreams: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [UInt64: AsyncStream<DownloadEvent>.Continuation] = [:]
    private var nextId: UInt64 = 0
    private var closed = false

    /// A fresh stream id.
    func newId() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        nextId += 1
        return nextId
    }

    /// Registers a stream; false once shut down.
    func add(_ continuation: AsyncStream<DownloadEvent>.Continuation, as id: UInt64) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return false }
        open[id] = continuation
        return true
    }

    func remove(_ id: UInt64) {
        lock.lock()
        open[id] = nil
        lock.unlock()
    }

    /// Finishes every stream; later ones start finished.
    func finishAll() {
        lock.lock()
        closed = true
        let all = open.values
        open = [:]
        lock.unlock()
        for continuation in all { continuation.finish() }
    }
}
