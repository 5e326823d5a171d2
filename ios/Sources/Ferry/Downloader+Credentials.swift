// Credentials that expire: signed URLs and bearer tokens that run out before a large or paused
// download ends. The closure Ferry calls for fresh ones, and the call that replaces a task's URL
// or headers. The engine decides when to ask and whether the new URL serves the same bytes.

import Foundation
import FerryBindings

public typealias FreshCredentials = FerryBindings.FreshCredentials

/// Calls the app's closure; whatever it throws becomes the task's `.credentialsRefreshFailed`.
private final class ClosureRefresher: CredentialRefresher, @unchecked Sendable {
    let refresh: @Sendable (String, Int) throws -> FreshCredentials?

    init(_ refresh: @escaping @Sendable (String, Int) throws -> FreshCredentials?) {
        self.refresh = refresh
    }

    func refresh(taskId: String, status: UInt16) throws -> FreshCredentials? {
        do {
            return try refresh(taskId, Int(status))
        } catch let error as CallbackError {
            throw error
        } catch {
            throw CallbackError.Failed(message: String(describing: error))
        }
    }
}

extension FreshCredentials {
    /// A new URL for the same resource (a newly signed one), new request headers (a new token), or
    /// both; what is left `nil` stays as it is.
    public init(url: URL? = nil, headers: [String: String]? = nil) {
        self.init(url: url?.absoluteString, headers: headers.map { $0.sorted { $0.key < $1.key }.map { HttpHeader(name: $0.key, value: $0.value) } })
    }
}

extension Downloader {
    /// Sets the closure Ferry calls when a server answers 401 or 403 (`status`), and, with
    /// `ManagerConfig.refreshBeforeResume`, before a run resumes a task with bytes (`status` 0).
    /// Return fresh credentials and the download goes on from its bytes; return `nil` to give up
    /// (the task fails with `.accessDenied`); throw, or take longer than
    /// `ManagerConfig.refreshTimeoutMs`, and it fails with `.credentialsRefreshFailed`. Called on a
    /// Ferry thread, never the main one: it may block on a token request. `nil` removes it.
    ///
    /// ```swift
    /// downloader.onCredentialsExpired { taskId, status in
    ///     FreshCredentials(url: try api.signedURL(for: taskId))
    /// }
    /// ```
    public func onCredentialsExpired(_ refresh: (@Sendable (_ taskId: String, _ status: Int) throws -> FreshCredentials?)?) {
        manager.setCredentialRefresher(refresher: refresh.map { ClosureRefresher($0) })
    }

    /// Replaces a task's URL or headers (stored with the task, used from its next request on). A
    /// task that failed with `.accessDenied` is then resumed with `resume(_:)`. The server's
    /// validators still decide whether the new URL serves the same bytes: a changed resource
    /// restarts cleanly. Throws `.invalidState` for a completed or cancelled task.
    public func updateCredentials(_ taskId: String, _ credentials: FreshCredentials) throws {
        try ferry { try manager.updateCredentials(taskId: taskId, credentials: credentials) }
    }
}
