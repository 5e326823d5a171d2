// `FerryError`, the one error every Ferry call throws: its stable code, its kind, and how it shows
// as an `NSError` and in descriptions. How errors from the bindings become one: FerryError+Bindings.swift.

import Foundation
import FerryBindings

/// The error thrown by every Ferry call. `code` says exactly what happened and never changes
/// meaning; `kind` says what a caller usually does about it.
///
/// As an `NSError` it has the domain `"dev.ferry"` and `code.rawValue` as its code:
///
/// ```swift
/// do { _ = try await downloader.enqueue(request) }
/// catch let error as FerryError where error.code == .destinationExists { ... }
/// ```
public struct FerryError: Error, Sendable, Hashable {
    /// What kind of trouble this is, following the code bands.
    public enum Kind: Sendable, Hashable {
        /// The call or request was invalid: fix the input (1xxx).
        case invalidInput
        /// Network, HTTP or Range protocol trouble (2xxx).
        case network
        /// Local storage: space, permissions, the task table (3xxx).
        case storage
        /// The bytes did not verify (4xxx).
        case integrity
        /// The task or manager was stopped (5xxx).
        case stopped
        /// A bug in Ferry (9xxx).
        case `internal`
    }

    /// What kind of trouble this is.
    public let kind: Kind
    /// The stable code.
    public let code: ErrorCode
    /// A human-readable description (never contains URL query strings).
    public let message: String
    /// The HTTP status, when a server answered.
    public let httpStatus: UInt16?
    /// Whether trying again later may succeed.
    public let isRetryable: Bool

    /// Makes an error; `kind` follows the code's band.
    public init(code: ErrorCode, message: String, httpStatus: UInt16? = nil, isRetryable: Bool = false) {
        self.kind = Kind(band: code)
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.isRetryable = isRetryable
    }
}

extension FerryError.Kind {
    /// The kind of a code, from its band.
    init(band code: ErrorCode) {
        switch code.rawValue {
        case 1000..<2000: self = .invalidInput
        case 2000..<3000: self = .network
        case 3000..<4000: self = .storage
        case 4000..<5000: self = .integrity
        case 5000..<6000: self = .stopped
        default: self = .internal
        }
    }
}

extension FerryError: CustomNSError {
    /// `"dev.ferry"`.
    public static var errorDomain: String { "dev.ferry" }
    /// The code's number, e.g. 1003 for `relativeDestination`.
    public var errorCode: Int { Int(code.rawValue) }
    /// The message as the localized description.
    public var errorUserInfo: [String: Any] { [NSLocalizedDescriptionKey: message] }
}

extension FerryError: LocalizedError {
    /// The message.
    public var errorDescription: String? { message }
}

extension FerryError: CustomStringConvertible {
    /// `"FerryError(1003 relativeDestination): <message>"`.
    public var description: String { "FerryError(\(code.rawValue) \(code)): \(message)" }
}
