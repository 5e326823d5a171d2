// Why this file: the background coordinator's state is touched from the transport's delegate
// queue, the ingest queue and callers' tasks at once; these two small types make that explicit
// (a lock around a value, and a completion handler that runs exactly once).

import Foundation

/// A value behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    /// Runs `body` on the value under the lock.
    @discardableResult
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// A completion handler called at most once, whichever of its callers comes first (the end of the
/// ingests or the safety timeout).
final class CallOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var handler: (@Sendable () -> Void)?

    init(_ handler: @escaping @Sendable () -> Void) { self.handler = handler }

    func call() {
        lock.lock()
        let handler = self.handler
        self.handler = nil
        lock.unlock()
        handler?()
    }
}

/// Carries a value the compiler cannot prove `Sendable` (a UIKit completion handler) across a
/// concurrency boundary that is known to be safe.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
