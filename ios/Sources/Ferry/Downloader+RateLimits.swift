// Bandwidth caps on a `Downloader`: one over all downloads, one per task, both changeable while
// downloads run (the engine applies a change within a read).

import FerryBindings

extension Downloader {
    /// The cap on all downloads together, in bytes per second; `nil` when there is none. Set it at
    /// open with `ManagerConfig(rateLimit:)`, change it with `setRateLimit(_:)`.
    public var rateLimit: UInt64? { manager.rateLimit() }

    /// Caps all downloads together at `bytesPerSecond` (`nil` or 0 lifts the cap), running ones
    /// included: keep a video call smooth, or spare a metered network.
    public func setRateLimit(_ bytesPerSecond: UInt64?) async {
        manager.setRateLimit(bytesPerSec: bytesPerSecond)
    }

    /// A task's own cap, in bytes per second; `nil` when there is none.
    public func rateLimit(of taskId: String) async throws -> UInt64? {
        try ferry { try manager.taskRateLimit(taskId: taskId) }
    }

    /// Caps one task over all its connections (`nil` or 0 lifts the cap), on top of the global
    /// cap. A file task's cap is stored: it holds after a reopen and reaches another process that
    /// runs the task.
    public func setRateLimit(_ bytesPerSecond: UInt64?, of taskId: String) async throws {
        try ferry { try manager.setTaskRateLimit(taskId: taskId, bytesPerSec: bytesPerSecond) }
    }
}
