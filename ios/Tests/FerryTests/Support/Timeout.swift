import Foundation

/// Runs `operation`, failing with `TestFailure` if it has not finished within `seconds`. The
/// operation is cancelled on timeout, but the caller never waits for it to notice.
func within<T: Sendable>(
    _ seconds: TimeInterval, _ what: String, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = LockedBox<CheckedContinuation<T, Error>?>(nil)
    func finish(_ result: Result<T, Error>) {
        let continuation = outcome.update { slot -> CheckedContinuation<T, Error>? in
            defer { slot = nil }
            return slot
        }
        continuation?.resume(with: result)
    }
    return try await withCheckedThrowingContinuation { continuation in
        outcome.set(continuation)
        let work = Task {
            do { finish(.success(try await operation())) } catch { finish(.failure(error)) }
        }
        Task {
            try? await Task.sleep(nanoseconds: UInt64(seconds * 1_000_000_000))
            work.cancel()
            finish(.failure(TestFailure("timed out after \(seconds)s: \(what)")))
        }
    }
}

/// Polls `condition` every 20 ms until it holds, failing after `seconds`.
func eventually(
    _ seconds: TimeInterval, _ what: String, _ condition: @escaping @Sendable () async throws -> Bool
) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
    throw TestFailure("timed out after \(seconds)s waiting for: \(what)")
}
