// Letting a Swift caller stop waiting on a Rust call when its task is cancelled: the futures of the
// bindings ignore Swift cancellation, so `wait`, `download` and `fetchBytes` await through this.

import Foundation

/// Awaits `operation` (a call into Rust, whose futures ignore Swift cancellation) so that the
/// caller stops waiting, with `CancellationError`, as soon as its task is cancelled. The Rust call
/// itself runs on to its natural end in the background; its result is then dropped.
func cancellable<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            guard once.attach(continuation) else { return }  // cancelled before it started
            Task {
                do { once.resume(with: .success(try await operation())) }
                catch { once.resume(with: .failure(error)) }
            }
        }
    } onCancel: {
        once.resume(with: .failure(CancellationError()))
    }
}

/// Resumes a continuation exactly once, whichever of the result and the cancellation comes first,
/// even when one arrives before the continuation is attached.
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?
    private var early: Result<T, Error>?
    private var done = false

    /// Attaches the continuation; false if a result (a cancellation) already resumed it.
    func attach(_ continuation: CheckedContinuation<T, Error>) -> Bool {
        lock.lock()
        if let early {
            done = true
            self.early = nil
            lock.unlock()
            continuation.resume(with: early)
            return false
        }
        self.continuation = continuation
        lock.unlock()
        return true
    }

    func resume(with result: Result<T, Error>) {
        lock.lock()
        guard !done else { lock.unlock(); return }
        guard let continuation else {
            if early == nil { early = result }
            lock.unlock()
            return
        }
        done = true
        self.continuation = nil
        lock.unlock()
        continuation.resume(with: result)
    }
}
