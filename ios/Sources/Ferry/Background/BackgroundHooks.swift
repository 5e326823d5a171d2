// Why this file: the app's side of the hand-off is a handful of lifecycle moments, each of which
// should be one line in the app. The decisions stay in `BackgroundDownloads`; this type only maps
// moments to calls, keeps them in order (a quick background-foreground flip must not reconcile in
// the middle of a hand-off), and holds a background-time assertion around the hand-off that is
// always ended. The UIKit implementation of that assertion is in UIKitGlue.swift. Continued
// downloads (iOS 26) hang off the same moments: the hand-off leaves out the downloads a continued
// processing task keeps in the engine (ContinuedDownloads.swift).

import Foundation

/// Extra time to run after the app leaves the foreground (`UIApplication.beginBackgroundTask`).
@MainActor
public protocol BackgroundExecution: Sendable {
    /// Asks for time; returns a token for `endTask`. `expirationHandler` runs (on the main actor)
    /// if the time runs out first, and must end the task.
    func beginTask(named name: String, expirationHandler: @escaping @MainActor @Sendable () -> Void) -> Int
    /// Ends what `beginTask` began.
    func endTask(_ token: Int)
}

/// No extra time (platforms without the notion, and tests).
public struct NoBackgroundExecution: BackgroundExecution {
    public init() {}
    public func beginTask(named name: String, expirationHandler: @escaping @MainActor @Sendable () -> Void) -> Int { 0 }
    public func endTask(_ token: Int) {}
}

/// The app's lifecycle hooks, one line each:
///
/// | moment | call |
/// |---|---|
/// | launch (`didFinishLaunching`) | `hooks.didFinishLaunching(inForeground:)` |
/// | `handleEventsForBackgroundURLSession` | `hooks.handleEvents(forBackgroundURLSession:completionHandler:)` |
/// | SwiftUI `.backgroundTask(.urlSession(id))` | `await hooks.urlSessionEvents()` |
/// | entering the background | `hooks.didEnterBackground()` |
/// | returning to the foreground | `hooks.willEnterForeground()` |
/// | the user's tap, iOS 26 (optional) | `try hooks.continueInBackground(taskIds:title:)` |
///
/// Each returns the `Task` doing the work (apps ignore it; tests await it). Work runs in call order.
@MainActor
public final class BackgroundHooks {
    /// The coordinator.
    public let downloads: BackgroundDownloads
    /// The background session's identifier (events for other sessions are not ours).
    public let sessionIdentifier: String
    /// Continued downloads (iOS 26's continued processing tasks), when a scheduler was given.
    public private(set) var continued: ContinuedDownloads?
    private let execution: any BackgroundExecution
    private var last: Task<Void, Never>?

    /// - Parameters:
    ///   - continuedProcessing: the scheduler of continued processing tasks
    ///     (`BGTaskContinuedProcessing` on iOS 26; nil: no continued downloads).
    ///   - continuedOptions: how continued downloads report and end.
    public init(
        downloads: BackgroundDownloads, sessionIdentifier: String, execution: any BackgroundExecution = NoBackgroundExecution(),
        continuedProcessing: (any ContinuedProcessing)? = nil, continuedOptions: ContinuedDownloads.Options = ContinuedDownloads.Options()
    ) {
        self.downloads = downloads
        self.sessionIdentifier = sessionIdentifier
        self.execution = execution
        if let continuedProcessing {
            continued = ContinuedDownloads(
                downloads: downloads, scheduler: continuedProcessing, options: continuedOptions, execution: execution,
                inOrder: { [weak self] work in self?.inOrder(work) ?? Task { await work() } })
        }
    }

    /// Launch: reconcile against the OS's tasks (in the background, after the OS's events).
    @discardableResult
    public func didFinishLaunching(inForeground foreground: Bool) -> Task<Void, Never> {
        continued?.inForeground = foreground
        let downloads = self.downloads
        return inOrder { await downloads.launched(inForeground: foreground) }
    }

    /// The user's tap (iOS 26): asks the system for a continued processing task that keeps these
    /// downloads in Ferry's engine after the app leaves the foreground, under the system's
    /// progress UI. When it expires (or the user cancels it) the downloads still running are
    /// handed off; if the system refuses it, they are handed off at background entry like the rest.
    /// - Returns: the identifier the request was submitted under.
    /// - Throws: `ContinuedProcessingError.unavailable` without a scheduler, or the system's refusal.
    @discardableResult
    public func continueInBackground(taskIds: [String], title: String, subtitle: String? = nil) throws -> String {
        guard let continued else { throw ContinuedProcessingError.unavailable }
        return try continued.continueInBackground(taskIds: taskIds, title: title, subtitle: subtitle)
    }

    /// Entering the background: with background time held, hand every running download to the
    /// OS, except those a running continued processing task keeps in the engine; the time is given
    /// back when the hand-off ends or expires, whichever comes first.
    @discardableResult
    public func didEnterBackground() -> Task<Void, Never> {
        let kept = continued?.enteredBackground() ?? []
        let assertion = BackgroundAssertion(execution: execution, name: "Ferry hand-off")
        let downloads = self.downloads
        return inOrder {
            await downloads.attempt("hand-off") { try await downloads.handOff(excluding: kept) }
            await assertion.end()
        }
    }

    /// Returning to the foreground: reconcile and take back stalled ranges (continued processing
    /// tasks still running go on; so does the engine).
    @discardableResult
    public func willEnterForeground() -> Task<Void, Never> {
        continued?.enteredForeground()
        let downloads = self.downloads
        return inOrder { await downloads.attempt("take back") { try await downloads.returnToForeground() } }
    }

    /// `application(_:handleEventsForBackgroundURLSession:completionHandler:)`: keeps the handler
    /// until the session's events are ingested. False (and the handler untouched) for another
    /// session's identifier.
    @discardableResult
    public func handleEvents(forBackgroundURLSession identifier: String, completionHandler: @escaping @Sendable () -> Void) -> Bool {
        guard identifier == sessionIdentifier else { return false }
        downloads.handleEventsForBackgroundSession(completionHandler: completionHandler)
        return true
    }

    /// SwiftUI's `.backgroundTask(.urlSession(identifier))`: returns once the session's events are
    /// ingested (or the safety timeout passed).
    public func urlSessionEvents() async {
        let downloads = self.downloads
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            downloads.handleEventsForBackgroundSession { continuation.resume() }
        }
    }

    /// Runs `work` after everything queued before it.
    private func inOrder(_ work: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        let previous = last
        let task = Task {
            await previous?.value
            await work()
        }
        last = task
        return task
    }
}

/// Background time held from creation until `end()` or expiration, ended exactly once.
@MainActor
final class BackgroundAssertion {
    private let execution: any BackgroundExecution
    private var token: Int?
    private var ended = false

    init(execution: any BackgroundExecution, name: String) {
        self.execution = execution
        let token = execution.beginTask(named: name) { [weak self] in self?.end() }
        if ended {
            execution.endTask(token)  // expired while beginning
        } else {
            self.token = token
        }
    }

    func end() {
        guard !ended else { return }
        ended = true
        if let token {
            self.token = nil
            execution.endTask(token)
        }
    }
}
