//! One error type for the whole engine, with a stable numeric code per case.
//!
//! Callers decide what to do from the [`ErrorCode`] (and [`Error::is_retryable`]), never from the
//! message. Codes are grouped in bands by what went wrong: 1xxx bad input, 2xxx network / HTTP /
//! Range protocol, 3xxx storage, 4xxx integrity, 5xxx task lifecycle, 9xxx internal. They are
//! append-only: a code is never renumbered or reused (`tests/error_codes.rs` pins every number).
//!
//! Messages never contain a URL's query string or credentials (see [`redact_url`]): signed download
//! URLs carry secrets there.

use std::fmt;
use std::time::Duration;

/// Stable numeric error codes. Append-only; see the module docs for the bands.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ErrorCode {
    // 1xxx: the request or call was invalid.
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
    // 2xxx: network, HTTP and the Range protocol.
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
    /// The server broke HTTP/1.1 itself: a malformed or self-contradicting head, a transfer coding
    /// it was not asked for, broken chunked framing. Retried once on a fresh connection, then final.
    ProtocolError = 2016,
    /// The host's credential refresh (called after a 401 or 403) threw, gave up or did not
    /// answer in time. Final.
    CredentialsRefreshFailed = 2017,
    // 3xxx: local storage.
    DiskFull = 3001,
    StorageIo = 3002,
    PermissionDenied = 3003,
    StateDirLocked = 3004,
    Database = 3005,
    LocksUnavailable = 3006,
    // 4xxx: integrity of the downloaded bytes.
    ChecksumMismatch = 4001,
    SizeMismatch = 4002,
    MemoryLimitExceeded = 4003,
    // 5xxx: task lifecycle.
    Cancelled = 5001,
    Interrupted = 5002,
    ShutDown = 5003,
    SinkRejected = 5004,
    // 9xxx: bugs; report them.
    Internal = 9001,
}

impl ErrorCode {
    /// Every code, in declaration order (used by tests and by the bindings' code tables).
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidUrl,
        Self::UnsupportedScheme,
        Self::RelativeDestination,
        Self::DestinationDirMissing,
        Self::DestinationExists,
        Self::DestinationNotWritable,
        Self::InvalidConnections,
        Self::InvalidHeader,
        Self::ConflictingOutputs,
        Self::InvalidChecksum,
        Self::TaskIdConflict,
        Self::DestinationBusy,
        Self::TaskNotFound,
        Self::InvalidState,
        Self::InvalidTaskId,
        Self::InvalidConfig,
        Self::MissingOutput,
        Self::UnknownLease,
        Self::RootUnknown,
        Self::ConnectFailed,
        Self::Timeout,
        Self::HttpClientError,
        Self::NotFound,
        Self::ServerError,
        Self::TooManyRequests,
        Self::TooManyRedirects,
        Self::RedirectLoop,
        Self::RangeMismatch,
        Self::ContentChanged,
        Self::TruncatedBody,
        Self::Tls,
        Self::Network,
        Self::UnsupportedEncoding,
        Self::AccessDenied,
        Self::ProtocolError,
        Self::CredentialsRefreshFailed,
        Self::DiskFull,
        Self::StorageIo,
        Self::PermissionDenied,
        Self::StateDirLocked,
        Self::Database,
        Self::LocksUnavailable,
        Self::ChecksumMismatch,
        Self::SizeMismatch,
        Self::MemoryLimitExceeded,
        Self::Cancelled,
        Self::Interrupted,
        Self::ShutDown,
        Self::SinkRejected,
        Self::Internal,
    ];

    /// The numeric value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a numeric value, if it is one.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == value)
    }

    /// A short stable name, e.g. `disk_full`, used in persisted rows and CLI output.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidUrl => "invalid_url",
            UnsupportedScheme => "unsupported_scheme",
            RelativeDestination => "relative_destination",
            DestinationDirMissing => "destination_dir_missing",
            DestinationExists => "destination_exists",
            DestinationNotWritable => "destination_not_writable",
            InvalidConnections => "invalid_connections",
            InvalidHeader => "invalid_header",
            ConflictingOutputs => "conflicting_outputs",
            InvalidChecksum => "invalid_checksum",
            TaskIdConflict => "task_id_conflict",
            DestinationBusy => "destination_busy",
            TaskNotFound => "task_not_found",
            InvalidState => "invalid_state",
            InvalidTaskId => "invalid_task_id",
            InvalidConfig => "invalid_config",
            MissingOutput => "missing_output",
            UnknownLease => "unknown_lease",
            RootUnknown => "root_unknown",
            ConnectFailed => "connect_failed",
            Timeout => "timeout",
            HttpClientError => "http_client_error",
            NotFound => "not_found",
            ServerError => "server_error",
            TooManyRequests => "too_many_requests",
            TooManyRedirects => "too_many_redirects",
            RedirectLoop => "redirect_loop",
            RangeMismatch => "range_mismatch",
            ContentChanged => "content_changed",
            TruncatedBody => "truncated_body",
            Tls => "tls",
            Network => "network",
            UnsupportedEncoding => "unsupported_encoding",
            AccessDenied => "access_denied",
            ProtocolError => "protocol_error",
            CredentialsRefreshFailed => "credentials_refresh_failed",
            DiskFull => "disk_full",
            StorageIo => "storage_io",
            PermissionDenied => "permission_denied",
            StateDirLocked => "state_dir_locked",
            Database => "database",
            LocksUnavailable => "locks_unavailable",
            ChecksumMismatch => "checksum_mismatch",
            SizeMismatch => "size_mismatch",
            MemoryLimitExceeded => "memory_limit_exceeded",
            Cancelled => "cancelled",
            Interrupted => "interrupted",
            ShutDown => "shut_down",
            SinkRejected => "sink_rejected",
            Internal => "internal",
        }
    }

    /// True for the codes a later attempt may cure on its own (network trouble, busy servers).
    pub fn is_transient(self) -> bool {
        use ErrorCode::*;
        matches!(self, ConnectFailed | Timeout | ServerError | TooManyRequests | TruncatedBody | Network)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// An engine error: a stable code, a human message, and what the server said when it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    http_status: Option<u16>,
    retry_after: Option<Duration>,
    /// For a `too_slow` timeout: whether an earlier window of the same answer met the minimum.
    too_slow: Option<bool>,
}

/// Engine result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into(), http_status: None, retry_after: None, too_slow: None }
    }

    /// An error with a code, a message and the HTTP status involved.
    pub fn with_status(code: ErrorCode, message: impl Into<String>, http_status: Option<u16>) -> Self {
        Error { code, message: message.into(), http_status, retry_after: None, too_slow: None }
    }

    /// An error for an HTTP status the engine does not accept.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> Self {
        let code = match status {
            404 | 410 => ErrorCode::NotFound,
            401 | 403 => ErrorCode::AccessDenied,
            408 => ErrorCode::Timeout,
            429 => ErrorCode::TooManyRequests,
            500..=599 => ErrorCode::ServerError,
            _ => ErrorCode::HttpClientError,
        };
        Error { code, message: format!("server answered HTTP {status}"), http_status: Some(status), retry_after, too_slow: None }
    }

    /// A `timeout`: the server sent slower than the minimum speed over a whole window;
    /// `fast_before` when an earlier window of the same answer met the minimum (a stall, not a
    /// trickle).
    pub fn too_slow(message: impl Into<String>, fast_before: bool) -> Self {
        Error { too_slow: Some(fast_before), ..Self::new(ErrorCode::Timeout, message) }
    }

    /// Whether this is a [`Error::too_slow`] timeout of an answer that was slow all along.
    pub fn is_a_trickle(&self) -> bool {
        self.too_slow == Some(false)
    }

    /// An internal error (a bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Maps an I/O error on local storage, naming what was being done.
    pub fn io(what: &str, err: &std::io::Error) -> Self {
        let code = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => ErrorCode::DiskFull,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => ErrorCode::PermissionDenied,
            _ => ErrorCode::StorageIo,
        };
        let detail = match code {
            ErrorCode::DiskFull => "no space left (disk full or file size limit)".to_string(),
            _ => err.to_string(),
        };
        Self::new(code, format!("{what}: {detail}"))
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message (free of URL secrets).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status involved, if any.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// How long the server asked us to wait, if it did (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code.is_transient()
    }

    /// Returns the error with extra context in front of the message.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, _) = &err {
            if e.code == rusqlite::ErrorCode::DiskFull {
                return Error::new(ErrorCode::DiskFull, "task table: disk full");
            }
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) {
                return Error::new(ErrorCode::StateDirLocked, "task table is locked by another process");
            }
        }
        Error::new(ErrorCode::Database, format!("task table: {err}"))
    }
}

/// A URL for messages and logs: scheme, host, port and path only (no credentials, query or fragment).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => redact(&u),
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            url[..cut].to_string()
        }
    }
}

/// [`redact_url`] of a parsed URL.
pub fn redact(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() && url.query().is_none() && url.fragment().is_none() {
        return url.as_str().to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("…"));
    }
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_u16()), "duplicate {code}");
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(*code));
        }
    }

    #[test]
    fn redaction_drops_query_and_credentials() {
        let r = redact_url("https://user:pw@example.com/a/b.bin?sig=SECRET#frag");
        assert!(!r.contains("SECRET") && !r.contains("pw") && !r.contains("user"), "{r}");
        assert!(r.starts_with("https://example.com/a/b.bin"), "{r}");
        assert_eq!(redact_url("not a url?token=x"), "not a url");
        for raw in ["http://h:8080/x%20y", "https://u@h/x?", "https://h/x#", "https://:pw@h/", "http://h/?a=b#c"] {
            let parsed = url::Url::parse(raw).unwrap();
            let r = redact(&parsed);
            assert_eq!(r, redact_url(raw));
            assert!(!r.contains("pw") && !r.contains("a=b") && !r.contains('#') && !r.contains("u@"), "{r}");
        }
        assert_eq!(redact(&url::Url::parse("http://h:8080/x%20y").unwrap()), "http://h:8080/x%20y");
    }

    #[test]
    fn statuses_map_to_codes() {
        assert_eq!(Error::from_status(404, None).code(), ErrorCode::NotFound);
        assert_eq!(Error::from_status(410, None).code(), ErrorCode::NotFound);
        assert_eq!(Error::from_status(503, None).code(), ErrorCode::ServerError);
        assert!(Error::from_status(503, None).is_retryable());
        assert!(Error::from_status(429, None).is_retryable());
        assert!(Error::from_status(408, None).is_retryable());
        assert!(!Error::from_status(400, None).is_retryable());
        assert!(!Error::from_status(403, None).is_retryable());
    }
}
