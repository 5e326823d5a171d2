import Foundation
import Ferry

/// A stand-in for `BGTaskScheduler`'s continued processing tasks that does, on the test's command,
/// what only iOS 26 does: start a request soon after it is submitted (or hold it, as a queued
/// request waits, or refuse it), and end a running task early (expiration, or the user's cancel
/// from the system UI). It records every request, withdrawal, progress report and completion.
@MainActor
final class ScriptedContinuedProcessing: ContinuedProcessing {
    enum Mode {
        /// Start each request right after `submit` returns, as the system does with room to run it.
        case start
        /// Keep requests waiting until `startHeld()` (a queued request).
        case hold
        /// Throw from `submit` (before iOS 26, not permitted, `.fail` with no room).
        case refuse
    }

    struct Refused: Error {}

    var mode: Mode
    private(set) var requests: [(identifier: String, request: ContinuedProcessingRequest)] = []
    private(set) var cancelled: [String] = []
    private(set) var tasks: [ScriptedContinuedTask] = []
    /// Requests not started, withdrawn ones included (the system may start one in a race).
    private var held: [(identifier: String, handler: @MainActor (any ContinuedProcessingTask) -> Void)] = []
    private var next = 0

    init(mode: Mode = .start) {
        self.mode = mode
    }

    func submit(
        _ request: ContinuedProcessingRequest,
        launchHandler: @escaping @MainActor (any ContinuedProcessingTask) -> Void
    ) throws -> String {
        if mode == .refuse { throw Refused() }
        next += 1
        let identifier = "dev.ferry.tests.continued.\(next)"
        requests.append((identifier, request))
        if mode == .start {
            Task { @MainActor in self.start(identifier, launchHandler) }
        } else {
            held.append((identifier, launchHandler))
        }
        return identifier
    }

    func cancel(identifier: String) {
        cancelled.append(identifier)
    }

    /// Starts every held request, withdrawn ones too (`includingCancelled`: the system started it
    /// before the withdrawal reached it).
    func startHeld(includingCancelled: Bool = false) {
        let ready = held.filter { includingCancelled || !cancelled.contains($0.identifier) }
        held.removeAll { r in ready.contains { $0.identifier == r.identifier } }
        for r in ready { start(r.identifier, r.handler) }
    }

    private func start(_ identifier: String, _ handler: @MainActor (any ContinuedProcessingTask) -> Void) {
        let task = ScriptedContinuedTask(identifier: identifier)
        tasks.append(task)
        handler(task)
    }
}

/// A started task: what the coordinator reported to it, and the system's early end on command.
@MainActor
final class ScriptedContinuedTask: ContinuedProcessingTask {
    let identifier: String
    private(set) var updates: [(completed: Int64, total: Int64)] = []
    private(set) var subtitles: [String] = []
    private(set) var completions: [Bool] = []
    private(set) var expirationHandler: (@MainActor @Sendable () -> Void)?

    init(identifier: String) {
        self.identifier = identifier
    }

    func update(completed: Int64, total: Int64) {
        updates.append((completed, total))
    }

    func updateTitle(_ title: String, subtitle: String) {
        subtitles.append(subtitle)
    }

    func setExpirationHandler(_ handler: (@MainActor @Sendable () -> Void)?) {
        expirationHandler = handler
    }

    func complete(success: Bool) {
        completions.append(success)
    }

    /// The system ends the task early (or the user cancels it): its expiration handler runs.
    /// Returns false when no handler was set.
    @discardableResult
    func expire() -> Bool {
        guard let expirationHandler else { return false }
        expirationHandler()
        return true
    }
}
