// Why this file: iOS 26's continued processing task (`BGContinuedProcessingTask`) lets an app that
// the user asked to do something go on running after it leaves the foreground, under the system's
// progress UI. Every decision about it (`ContinuedDownloads`) is written against these protocols,
// not against `BGTaskScheduler`, so that Linux tests drive the decisions with a scripted scheduler.
// The BackgroundTasks implementation is in BGTaskContinuedProcessing.swift (iOS 26 only).

import Foundation

/// What a submission does when the system cannot start the task at once
/// (`BGContinuedProcessingTaskRequest.SubmissionStrategy`).
public enum ContinuedProcessingStrategy: Sendable, Equatable {
    /// The submission fails (`.fail`).
    case fail
    /// The request waits and starts as soon as the system can (`.queue`, the system's default).
    case queue
}

/// A request for a continued processing task, as the user sees it before it starts.
public struct ContinuedProcessingRequest: Sendable, Equatable {
    /// The system UI's title (localized).
    public var title: String
    /// The system UI's subtitle (localized).
    public var subtitle: String
    /// What happens when the system cannot start the task at once.
    public var strategy: ContinuedProcessingStrategy

    public init(title: String, subtitle: String, strategy: ContinuedProcessingStrategy = .queue) {
        self.title = title
        self.subtitle = subtitle
        self.strategy = strategy
    }
}

/// A continued processing task the system started (`BGContinuedProcessingTask`). Used on the main
/// actor only.
@MainActor
public protocol ContinuedProcessingTask: AnyObject {
    /// The identifier its request was submitted under.
    var identifier: String { get }
    /// Reports progress (`progress.totalUnitCount` and `completedUnitCount`). The system ends
    /// first the tasks that show little or no progress: report often (about once a second or more).
    func update(completed: Int64, total: Int64)
    /// Changes what the system UI shows (`updateTitle(_:subtitle:)`).
    func updateTitle(_ title: String, subtitle: String)
    /// Sets what runs, on the main actor, when the system ends the task early or the user cancels
    /// it from the system UI (`expirationHandler`); the task must then be completed. Nil removes it.
    func setExpirationHandler(_ handler: (@MainActor @Sendable () -> Void)?)
    /// Tells the system the work is over (`setTaskCompleted(success:)`). Called once.
    func complete(success: Bool)
}

/// The scheduler of continued processing tasks (`BGTaskScheduler`). Used on the main actor only.
@MainActor
public protocol ContinuedProcessing: AnyObject {
    /// Submits a request (from the foreground, in answer to the user's action). `launchHandler` is
    /// called on the main actor with the task when the system starts it: soon after, later for a
    /// queued request, or never.
    /// - Returns: the identifier the request was submitted under (for `cancel(identifier:)`).
    /// - Throws: the system's refusal (before iOS 26, not permitted, `.fail` and no room now...).
    func submit(
        _ request: ContinuedProcessingRequest,
        launchHandler: @escaping @MainActor (any ContinuedProcessingTask) -> Void
    ) throws -> String
    /// Withdraws a request the system has not started (`cancel(taskRequestWithIdentifier:)`); its
    /// launch handler is not called.
    func cancel(identifier: String)
}

/// Why a continued processing task could not be asked for.
public enum ContinuedProcessingError: Error, Sendable, Equatable {
    /// No scheduler: before iOS 26, or none was given to `BackgroundHooks`.
    case unavailable
    /// The launch handler could not be registered for this identifier (it is not covered by
    /// `BGTaskSchedulerPermittedIdentifiers`, or was registered too late).
    case notRegistered(identifier: String)
    /// No task ids were given.
    case noDownloads
}
