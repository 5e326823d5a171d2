// Conveniences on the generated `TaskState`: which states the engine is still working on.

import FerryBindings

extension TaskState {
    /// Queued or running: `Downloader.wait(for:)` returns once a task is no longer active.
    public var isActive: Bool {
        switch self {
        case .queued, .running: return true
        case .paused, .completed, .failed, .cancelled: return false
        }
    }
}
