//! The one error type that crosses the FFI, with its stable numeric code.
//!
//! Variants are grouped by what the caller does about them; every variant carries the [`ErrorCode`]
//! (append-only numbers, pinned by tests in Rust, Swift, Kotlin and Python). `From<engine::Error>`
//! is the only mapping point.

use crate::engine;

/// Stable error codes (see `engine::error` for the bands). Append-only.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, uniffi::Enum)]
#[allow(missing_docs)]
pub enum ErrorCode {
    InvalidUrl = 1001,
    UnsupportedScheme = 1002,
    RelativeDestination = 1003,
    DestinationDirMissing = 1004,
    DestinationExists = 1005,
    DestinationNotWritable = 1006,
    InvalidConnections = 1007,
    InvalidHeader = 1008,
    ConflictingOutputs = 1009,
    InvalidChecksum = 1010,
    TaskIdConflict = 1011,
    DestinationBusy = 1012,
    TaskNotFound = 1013,
    InvalidState = 1014,
    InvalidTaskId = 1015,
    InvalidConfig = 1016,
    MissingOutput = 1017,
    UnknownLease = 1018,
    RootUnknown = 1019,
    ConnectFailed = 2001,
    Timeout = 2002,
    HttpClientError = 2003,
    NotFound = 2004,
    ServerError = 2005,
    TooManyRequests = 2006,
    TooManyRedirects = 2007,
    RedirectLoop = 2008,
    RangeMismatch = 2009,
    ContentChanged = 2010,
    TruncatedBody = 2011,
    Tls = 2012,
    Network = 2013,
    UnsupportedEncoding = 2014,
    AccessDenied = 2015,
    ProtocolError = 2016,
    CredentialsRefreshFailed = 2017,
    DiskFull = 3001,
    StorageIo = 3002,
    PermissionDenied = 3003,
    StateDirLocked = 3004,
    Database = 3005,
    LocksUnavailable = 3006,
    ChecksumMismatch = 4001,
    SizeMismatch = 4002,
    MemoryLimitExceeded = 4003,
    Cancelled = 5001,
    Interrupted = 5002,
    ShutDown = 5003,
    SinkRejected = 5004,
    Internal = 9001,
}

impl From<engine::ErrorCode> for ErrorCode {
    fn from(c: engine::ErrorCode) -> Self {
        use engine::ErrorCode as E;
        match c {
            E::InvalidUrl => Self::InvalidUrl,
            E::UnsupportedScheme => Self::UnsupportedScheme,
            E::RelativeDestination => Self::RelativeDestination,
            E::DestinationDirMissing => Self::DestinationDirMissing,
            E::DestinationExists => Self::DestinationExists,
            E::DestinationNotWritable => Self::DestinationNotWritable,
            E::InvalidConnections => Self::InvalidConnections,
            E::InvalidHeader => Self::InvalidHeader,
            E::ConflictingOutputs => Self::ConflictingOutputs,
            E::InvalidChecksum => Self::InvalidChecksum,
            E::TaskIdConflict => Self::TaskIdConflict,
            E::DestinationBusy => Self::DestinationBusy,
            E::TaskNotFound => Self::TaskNotFound,
            E::InvalidState => Self::InvalidState,
            E::InvalidTaskId => Self::InvalidTaskId,
            E::InvalidConfig => Self::InvalidConfig,
            E::MissingOutput => Self::MissingOutput,
            E::UnknownLease => Self::UnknownLease,
            E::RootUnknown => Self::RootUnknown,
            E::ConnectFailed => Self::ConnectFailed,
            E::Timeout => Self::Timeout,
            E::HttpClientError => Self::HttpClientError,
            E::NotFound => Self::NotFound,
            E::ServerError => Self::ServerError,
            E::TooManyRequests => Self::TooManyRequests,
            E::TooManyRedirects => Self::TooManyRedirects,
            E::RedirectLoop => Self::RedirectLoop,
            E::RangeMismatch => Self::RangeMismatch,
            E::ContentChanged => Self::ContentChanged,
            E::TruncatedBody => Self::TruncatedBody,
            E::Tls => Self::Tls,
            E::Network => Self::Network,
            E::UnsupportedEncoding => Self::UnsupportedEncoding,
            E::AccessDenied => Self::AccessDenied,
            E::ProtocolError => Self::ProtocolError,
            E::CredentialsRefreshFailed => Self::CredentialsRefreshFailed,
            E::DiskFull => Self::DiskFull,
            E::StorageIo => Self::StorageIo,
            E::PermissionDenied => Self::PermissionDenied,
            E::StateDirLocked => Self::StateDirLocked,
            E::Database => Self::Database,
            E::LocksUnavailable => Self::LocksUnavailable,
            E::ChecksumMismatch => Self::ChecksumMismatch,
            E::SizeMismatch => Self::SizeMismatch,
            E::MemoryLimitExceeded => Self::MemoryLimitExceeded,
            E::Cancelled => Self::Cancelled,
            E::Interrupted => Self::Interrupted,
            E::ShutDown => Self::ShutDown,
            E::SinkRejected => Self::SinkRejected,
            E::Internal => Self::Internal,
        }
    }
}

/// The error thrown by every fallible call. Each variant says what kind of trouble it is; `code`
/// says exactly which.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum DownloadError {
    /// The call or request was invalid: fix the input (1xxx).
    #[error("{message}")]
    InvalidInput {
        /// Stable code.
        code: ErrorCode,
        /// What to fix.
        message: String,
    },
    /// Network, HTTP or Range protocol trouble (2xxx). `retryable` says whether trying later may help.
    #[error("{message}")]
    Network {
        /// Stable code.
        code: ErrorCode,
        /// What happened (no URL query strings).
        message: String,
        /// HTTP status, when the server answered.
        http_status: Option<u16>,
        /// Whether a later attempt may succeed.
        retryable: bool,
    },
    /// Local storage trouble: space, permissions, the task table (3xxx).
    #[error("{message}")]
    Storage {
        /// Stable code.
        code: ErrorCode,
        /// What happened.
        message: String,
    },
    /// The bytes did not verify (4xxx).
    #[error("{message}")]
    Integrity {
        /// Stable code.
        code: ErrorCode,
        /// What did not match.
        message: String,
    },
    /// The task or manager was stopped (5xxx).
    #[error("{message}")]
    Stopped {
        /// Stable code.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// A bug in Ferry (9xxx); please report it.
    #[error("{message}")]
    Internal {
        /// Stable code.
        code: ErrorCode,
        /// Details.
        message: String,
    },
}

impl DownloadError {
    /// The stable code of any variant.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidInput { code, .. }
            | Self::Network { code, .. }
            | Self::Storage { code, .. }
            | Self::Integrity { code, .. }
            | Self::Stopped { code, .. }
            | Self::Internal { code, .. } => *code,
        }
    }
}

impl From<engine::Error> for DownloadError {
    fn from(e: engine::Error) -> Self {
        let code = ErrorCode::from(e.code());
        let message = e.message().to_string();
        match e.code().as_u16() {
            1000..=1999 => Self::InvalidInput { code, message },
            2000..=2999 => Self::Network { code, message, http_status: e.http_status(), retryable: e.is_retryable() },
            3000..=3999 => Self::Storage { code, message },
            4000..=4999 => Self::Integrity { code, message },
            5000..=5999 => Self::Stopped { code, message },
            _ => Self::Internal { code, message },
        }
    }
}

/// What a foreign callback may throw. Anything it throws is reported to the engine as this.
#[derive(Debug, Clone, thiserror::Error, uniffi::Error)]
pub enum CallbackError {
    /// The callback failed.
    #[error("{message}")]
    Failed {
        /// Why.
        message: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CallbackError::Failed { message: e.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_code_keeps_its_number_across_the_ffi() {
        for c in engine::ErrorCode::ALL {
            assert_eq!(ErrorCode::from(*c) as u16, c.as_u16(), "{c}");
        }
    }
}
