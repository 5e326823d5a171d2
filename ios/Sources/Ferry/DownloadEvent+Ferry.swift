// Conveniences on the generated `DownloadEvent`: its task, new state, bytes, fraction and error
// without matching on the enum's cases.

import FerryBindings

extension DownloadEvent {
    /// The task the event is about.
    public var taskId: String {
        switch self {
        case let .progress(taskId, _, _, _, _, _): return taskId
        case let .stateChanged(taskId, _, _, _): return taskId
        }
    }

    /// The new state, for a state change; nil for progress.
    public var newState: TaskState? {
        if case let .stateChanged(_, _, to, _) = self { return to }
        return nil
    }

    /// Bytes transferred so far, for progress; nil for a state change.
    public var bytes: UInt64? {
        if case let .progress(_, bytes, _, _, _, _) = self { return bytes }
        return nil
    }

    /// 0...1 (0 while the length is unknown), for progress; nil for a state change.
    public var fractionCompleted: Double? {
        if case let .progress(_, _, _, progress, _, _) = self { return progress }
        return nil
    }

    /// The error, for a change to `.failed`.
    public var error: FerryError? {
        if case let .stateChanged(_, _, _, error?) = self { return FerryError(error) }
        return nil
    }
}
