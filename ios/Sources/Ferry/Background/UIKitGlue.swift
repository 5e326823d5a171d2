// Why this file: the few lines that need UIKit, kept apart and free of decisions (those are in
// BackgroundDownloads and BackgroundHooks, compiled and tested everywhere). None of this file is
// compiled on Linux, where it was written: it is checked on Apple hardware only (see ios/README.md).

#if canImport(UIKit) && !os(watchOS)
import UIKit

/// `UIApplication.beginBackgroundTask(withName:expirationHandler:)` and `endBackgroundTask(_:)`.
public struct UIApplicationBackgroundExecution: BackgroundExecution {
    public init() {}

    public func beginTask(named name: String, expirationHandler: @escaping @MainActor @Sendable () -> Void) -> Int {
        UIApplication.shared.beginBackgroundTask(withName: name) {
            MainActor.assumeIsolated { expirationHandler() }  // UIKit calls it on the main thread
        }.rawValue
    }

    public func endTask(_ token: Int) {
        UIApplication.shared.endBackgroundTask(UIBackgroundTaskIdentifier(rawValue: token))
    }
}

extension BackgroundHooks {
    /// From `application(_:didFinishLaunchingWithOptions:)`.
    @discardableResult
    public func didFinishLaunching(_ application: UIApplication) -> Task<Void, Never> {
        didFinishLaunching(inForeground: application.applicationState != .background)
    }

    /// From `application(_:handleEventsForBackgroundURLSession:completionHandler:)`.
    @discardableResult
    public func application(
        _ application: UIApplication, handleEventsForBackgroundURLSession identifier: String,
        completionHandler: @escaping () -> Void
    ) -> Bool {
        let handler = UncheckedSendable(completionHandler)  // called on the main queue only
        return handleEvents(forBackgroundURLSession: identifier) { handler.value() }
    }
}
#endif
