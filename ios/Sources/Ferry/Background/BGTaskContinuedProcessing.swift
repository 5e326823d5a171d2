// Why this file: the few lines of continued downloads that need the BackgroundTasks framework
// (`BGTaskScheduler`, `BGContinuedProcessingTask`, iOS 26), kept apart and free of decisions (those
// are in ContinuedDownloads, compiled and tested everywhere against `ContinuedProcessing`). None of
// this file is compiled on Linux, where it was written: it is checked on Apple hardware only (see
// "Continued downloads" in ios/README.md).

#if canImport(BackgroundTasks) && os(iOS)
import BackgroundTasks
import Foundation

/// `BGTaskScheduler` for continued processing tasks. Requests are submitted as
/// `<identifierPrefix>.<UUID>`; each launch goes to the launch handler of its request. Make one per
/// process, before the app finishes launching (with `.wildcard`, `init` registers the handler).
///
/// Info.plist: `BGTaskSchedulerPermittedIdentifiers` lists `<identifierPrefix>.*`, and the prefix
/// starts with the app's bundle identifier.
@available(iOS 26.0, *)
@MainActor
public final class BGTaskContinuedProcessing: ContinuedProcessing {
    /// How the launch handler is registered.
    public enum Registration: Sendable, Equatable {
        /// Once, for `<identifierPrefix>.*`, by `init` (as Apple documents for wildcard identifiers).
        case wildcard
        /// For each request's own identifier, just before it is submitted (continued processing
        /// tasks may be registered after launch). For a system that does not route a request to
        /// the wildcard's handler.
        case perRequest
    }

    /// The identifiers' common prefix (`com.example.app.ferry.continued`).
    public let identifierPrefix: String
    /// How the launch handler is registered.
    public let registration: Registration
    /// False when the wildcard's handler could not be registered (every submission then throws).
    public private(set) var registered = false

    /// The launch handlers of requests not started yet, by identifier, and their order.
    private var launchHandlers: [String: @MainActor (any ContinuedProcessingTask) -> Void] = [:]
    private var pending: [String] = []

    public init(identifierPrefix: String, registration: Registration = .wildcard) {
        self.identifierPrefix = identifierPrefix
        self.registration = registration
        if registration == .wildcard {
            registered = register(identifierPrefix + ".*")
        }
    }

    public func submit(
        _ request: ContinuedProcessingRequest,
        launchHandler: @escaping @MainActor (any ContinuedProcessingTask) -> Void
    ) throws -> String {
        let identifier = "\(identifierPrefix).\(UUID().uuidString)"
        switch registration {
        case .wildcard:
            guard registered else { throw ContinuedProcessingError.notRegistered(identifier: identifierPrefix + ".*") }
        case .perRequest:
            guard register(identifier) else { throw ContinuedProcessingError.notRegistered(identifier: identifier) }
        }
        let bgRequest = BGContinuedProcessingTaskRequest(identifier: identifier, title: request.title, subtitle: request.subtitle)
        switch request.strategy {
        case .fail: bgRequest.strategy = .fail
        case .queue: bgRequest.strategy = .queue
        }
        launchHandlers[identifier] = launchHandler
        pending.append(identifier)
        do {
            try BGTaskScheduler.shared.submit(bgRequest)
        } catch {
            forget(identifier)
            throw error
        }
        return identifier
    }

    public func cancel(identifier: String) {
        forget(identifier)
        BGTaskScheduler.shared.cancel(taskRequestWithIdentifier: identifier)
    }

    /// Registers the launch handler, run on the main queue.
    private func register(_ identifier: String) -> Bool {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: .main) { [weak self] task in
            MainActor.assumeIsolated {
                guard let self else {
                    task.setTaskCompleted(success: false)
                    return
                }
                self.launched(task)
            }
        }
    }

    /// Gives the task to its request's launch handler; a task nobody waits for (withdrawn) is
    /// completed at once.
    private func launched(_ task: BGTask) {
        var identifier = task.identifier
        if launchHandlers[identifier] == nil, identifier == identifierPrefix + ".*", let oldest = pending.first {
            identifier = oldest  // should the system name the task by its pattern: requests start in order
        }
        guard let task = task as? BGContinuedProcessingTask, let handler = launchHandlers[identifier] else {
            task.setTaskCompleted(success: false)
            return
        }
        forget(identifier)
        handler(BGContinuedTask(task))
    }

    private func forget(_ identifier: String) {
        launchHandlers[identifier] = nil
        pending.removeAll { $0 == identifier }
    }
}

/// A started `BGContinuedProcessingTask`, used on the main actor.
@available(iOS 26.0, *)
@MainActor
final class BGContinuedTask: ContinuedProcessingTask {
    private let task: BGContinuedProcessingTask

    init(_ task: BGContinuedProcessingTask) {
        self.task = task
    }

    var identifier: String { task.identifier }

    func update(completed: Int64, total: Int64) {
        task.progress.totalUnitCount = total
        task.progress.completedUnitCount = completed
    }

    func updateTitle(_ title: String, subtitle: String) {
        task.updateTitle(title, subtitle: subtitle)
    }

    func setExpirationHandler(_ handler: (@MainActor @Sendable () -> Void)?) {
        guard let handler else {
            task.expirationHandler = nil
            return
        }
        // The system does not say which thread calls it: run it on the main actor either way.
        task.expirationHandler = {
            if Thread.isMainThread {
                MainActor.assumeIsolated { handler() }
            } else {
                DispatchQueue.main.async { MainActor.assumeIsolated { handler() } }
            }
        }
    }

    func complete(success: Bool) {
        task.setTaskCompleted(success: success)
    }
}
#endif
