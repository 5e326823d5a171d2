// Why this file: the app's side of the hand-off is a handful of lifecycle moments, each of which
// should be one line in the app. The decisions stay in `BackgroundDownloads`; this type only maps
// moments to calls, keeps them in order (a quick background-foreground flip must not reconcile in
// the middle of a hand-off), and holds a background-time assertion around the hand-off that is
// always ended. The UIKit implementation of that assertion is in UIKitGlue.swift.

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
///
/// Each returns the `Task` doing the work (apps ignore it; tests await it). Work runs in call order.
@MainActor
public final class BackgroundHooks {
    /// The coordinator.
    public let downloads: BackgroundDownloads
    /// The background session's identifier (events for other sessions are not ours).
    public let sessionIdentifier: String
    private let execution: any BackgroundExecution
    private var last: Task<Void, Never>?

    public init(downloads: BackgroundDownloads, sessionIdentifier: String, execution: any BackgroundExecution = NoBackgroundExecution()) {
        self.downloads = downloads
        self.sessionIdentifier = sessionIdentifier
        self.execution = execution
    }

    /// Launch: reconcile against the OS's tasks (in the background, after the OS's events).
    @discardableResult
    public func didFinishLaunching(inForeground foreground: Bool) -> Task<Void, Never> {
        let downloads = self.downloads
        return inOrder { await downloads.launched(inForeground: foreground) }
    }

    /// Entering the background: with background time held, hand every running download to the
    /// OS; the time is given back when the hand-off ends or expires, whichever comes first.
    @discardableResult
    public func didEnterBackground() -> Task<Void, Never> {
        let assertion = BackgroundAssertion(execution: execution, name: "Ferry hand-off")
        let downloads = self.downloads
        return inOrder {
            await downloads.attempt("hand-off") { try await downloads.handOff() }
            await assertion.end()
        }
    }

    /// Returning to the foreground: reconcile and take back stalled ranges.
    @discardableResult
    public func willEnterForeground() -> Task<Void, Never> {
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
