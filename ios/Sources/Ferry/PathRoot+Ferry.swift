// Named roots: the directories whose paths change between launches (an iOS app's container moves
// after an update or a restore), the conveniences for the app's own ones and an App Group
// container, and the `Downloader` initialiser that declares them.

import Foundation
import FerryBindings

/// A named directory that destinations are stored relative to. A task whose destination is under
/// a root is recorded as `@name/<path inside it>` and resolved against the roots of each open, so
/// it resumes from its bytes, and reports where its file is now, after the container moved.
/// Declare the same names, for the same directories, at every launch (and in every process that
/// shares the state directory); a task under a name that is not declared is listed with
/// `.rootUnknown` and is not run.
public typealias PathRoot = FerryBindings.PathRoot

extension PathRoot {
    /// A root named `name` (1–64 ASCII letters, digits, `_`, `-`, `.`) at the directory `url`.
    public init(_ name: String, url: URL) {
        self.init(name: name, path: url.path)
    }

    /// The app's Documents directory, named "documents" unless you say otherwise.
    public static func documents(named name: String = "documents") throws -> PathRoot {
        try standard(.documentDirectory, name)
    }

    /// The app's Caches directory, named "caches" unless you say otherwise. The system may empty
    /// it when space runs low: a task whose part file went is fetched again.
    public static func caches(named name: String = "caches") throws -> PathRoot {
        try standard(.cachesDirectory, name)
    }

    /// The app's Application Support directory (created if missing), named "application_support"
    /// unless you say otherwise.
    public static func applicationSupport(named name: String = "application_support") throws -> PathRoot {
        try standard(.applicationSupportDirectory, name)
    }

    /// Documents, Caches and Application Support, under their default names.
    public static func appDirectories() throws -> [PathRoot] {
        [try documents(), try caches(), try applicationSupport()]
    }

    #if canImport(Darwin)
    /// The container of the App Group `identifier` (shared with the app's extensions and widgets),
    /// named "group" unless you say otherwise.
    /// - Throws: `FerryError` `.invalidConfig` when the app is not entitled to the group.
    public static func appGroup(_ identifier: String, named name: String = "group") throws -> PathRoot {
        guard let url = FileManager.default.containerURL(forSecurityApplicationGroupIdentifier: identifier) else {
            throw FerryError(code: .invalidConfig, message: "no App Group container for '\(identifier)': is the app entitled to it?")
        }
        return PathRoot(name, url: url)
    }
    #endif

    private static func standard(_ directory: FileManager.SearchPathDirectory, _ name: String) throws -> PathRoot {
        do {
            let url = try FileManager.default.url(for: directory, in: .userDomainMask, appropriateFor: nil, create: true)
            return PathRoot(name, url: url)
        } catch {
            throw FerryError(code: .invalidConfig, message: "the directory for root '\(name)' is unavailable: \(error)")
        }
    }
}

extension Downloader {
    /// Opens (creating it if needed) the task table in `stateDirectory`, with `roots`: the
    /// directories whose paths may change between launches. Tasks under them follow them.
    ///
    /// ```swift
    /// let downloader = try Downloader(stateDirectory: stateDir, roots: try PathRoot.appDirectories())
    /// ```
    /// - Throws: `FerryError` `.invalidConfig` for a bad root (a name declared twice, a path that
    ///   is not an existing directory), and what `init(stateDirectory:config:)` throws.
    public convenience init(stateDirectory: String, roots: [PathRoot], config: ManagerConfig? = nil) throws {
        let config = config ?? ManagerConfig()
        try self.init(stateDirectory: stateDirectory, config: config.copy(proxy: config.proxy, noProxy: config.noProxy, roots: config.roots + roots))
    }
}
