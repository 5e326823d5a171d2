// Where errors cross from the bindings into `FerryError`: the conversions from what the generated
// code throws or records, and `ferry` / `ferryAsync`, which every call into the bindings goes
// through so that callers only ever see `FerryError`.

import FerryBindings

extension FerryError {
    /// Converts the generated error.
    public init(_ error: DownloadError) {
        switch error {
        case let .InvalidInput(code, message), let .Storage(code, message), let .Integrity(code, message),
             let .Stopped(code, message), let .Internal(code, message):
            self.init(code: code, message: message)
        case let .Network(code, message, httpStatus, retryable):
            self.init(code: code, message: message, httpStatus: httpStatus, isRetryable: retryable)
        }
    }

    /// The error recorded on a failed task.
    public init(_ info: TaskErrorInfo) {
        self.init(code: info.code, message: info.message)
    }

    /// Any error thrown below the facade: generated errors keep their code, anything else is internal.
    init(converting error: Error) {
        switch error {
        case let error as FerryError: self = error
        case let error as DownloadError: self.init(error)
        default: self.init(code: .internal, message: String(describing: error))
        }
    }

    /// The error for a task that ended in `state` without completing, if it did not complete.
    init?(finished status: TaskStatus) {
        switch status.state {
        case .completed, .queued, .running:
            return nil
        case .failed:
            self = status.error.map(FerryError.init) ?? FerryError(code: .internal, message: "the task failed without an error")
        case .cancelled:
            self.init(code: .cancelled, message: "the task was cancelled")
        case .paused:
            self.init(code: .interrupted, message: "the task was paused")
        }
    }
}

/// Runs a throwing call into the bindings, converting what it throws to `FerryError`.
@inline(__always)
func ferry<T>(_ call: () throws -> T) throws -> T {
    do {
        return try call()
    } catch {
        throw FerryError(converting: error)
    }
}

/// `ferry(_:)` for async calls.
func ferryAsync<T>(_ call: () async throws -> T) async throws -> T {
    do {
        return try await call()
    } catch {
        throw FerryError(converting: error)
    }
}
