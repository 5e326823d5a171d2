//! Tasks: ids, specs, states and the one function that decides every state transition.
//!
//! ```text
//!             enqueue                 runner starts
//!   (new) ───────────▶ Queued ───────────────────────▶ Running
//!                        ▲ ▲                          │ │ │ │
//!            resume      │ │ crash recovery            │ │ │ └─ finished, verified ──▶ Completed
//!   Paused ──────────────┘ └───────────────────────────┘ │ └─── fatal / out of retries ─▶ Failed
//!     ▲                                                  └───── pause ──────────────────▶ Paused
//!     │ Failed ── resume ──▶ Queued
//!  Queued / Running / Paused / Failed ── cancel ──▶ Cancelled   (partial file removed)
//! ```
//! `remove` forgets a task in any state. Completed and Cancelled are final.

use super::error::{Error, ErrorCode, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A task id: the caller's own, or a generated UUID.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// Validates a caller-supplied id: 1 to 200 bytes of UTF-8 text without control characters.
    pub fn parse(id: &str) -> Result<TaskId> {
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(Error::new(ErrorCode::InvalidTaskId, "task ids are 1 to 200 bytes of text without control characters"));
        }
        Ok(TaskId(id.to_string()))
    }

    /// An id read back from the task table (validated when it was first stored).
    pub(crate) fn from_stored(id: String) -> TaskId {
        TaskId(id)
    }

    /// A fresh random id.
    pub fn generate() -> TaskId {
        TaskId(uuid::Uuid::new_v4().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by task id are looked up with a plain `&str` (no `String` per lookup): the derived
/// `Hash` and `Eq` of the one `String` field agree with `str`'s.
impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for a slot.
    Queued,
    /// Transferring (or waiting to retry).
    Running,
    /// Stopped by the caller; partial file and journal kept.
    Paused,
    /// Done and verified; the destination holds the file.
    Completed,
    /// Stopped by an error; see the task's error.
    Failed,
    /// Stopped by the caller; partial file removed.
    Cancelled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 6] =
        [TaskState::Queued, TaskState::Running, TaskState::Paused, TaskState::Completed, TaskState::Failed, TaskState::Cancelled];

    /// The persisted number.
    pub fn as_i64(self) -> i64 {
        match self {
            TaskState::Queued => 0,
            TaskState::Running => 1,
            TaskState::Paused => 2,
            TaskState::Completed => 3,
            TaskState::Failed => 4,
            TaskState::Cancelled => 5,
        }
    }

    /// From the persisted number.
    pub fn from_i64(n: i64) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_i64() == n)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Paused => "paused",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Queued or running: the engine is (or will be) working on it.
    pub fn is_active(self) -> bool {
        matches!(self, TaskState::Queued | TaskState::Running)
    }

    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed | TaskState::Cancelled)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// A runner picked it up.
    Start,
    /// The runner finished and verified it.
    Complete,
    /// The runner stopped with an error.
    Fail,
    /// The caller paused it.
    Pause,
    /// The caller resumed it (or retries a failed one).
    Resume,
    /// The caller cancelled it.
    Cancel,
    /// Found running after a crash; goes back to the queue.
    Recover,
}

/// The state machine: the next state, or a typed error when the transition is not allowed.
pub fn next_state(from: TaskState, t: Transition) -> Result<TaskState> {
    use TaskState::*;
    use Transition::*;
    let to = match (from, t) {
        (Queued, Start) => Running,
        (Running, Complete) => Completed,
        (Running, Fail) => Failed,
        (Queued | Running, Pause) => Paused,
        (Paused | Failed, Resume) => Queued,
        (Queued | Running | Paused | Failed, Cancel) => Cancelled,
        (Running, Recover) => Queued,
        _ => return Err(Error::new(ErrorCode::InvalidState, format!("cannot {} a task that is {from}", format!("{t:?}").to_lowercase()))),
    };
    Ok(to)
}

/// Receives the bytes of a stream-output task, in order.
pub trait ChunkSink: Send + Sync {
    /// Called for each chunk with its offset in the resource. An offset that goes back to 0 means the
    /// resource changed on the server and the download started over. An error stops the task.
    fn on_chunk(&self, offset: u64, data: &[u8]) -> std::result::Result<(), String>;
}

/// Where the bytes go.
#[derive(Clone)]
pub enum Output {
    /// A file, written through `<destination>.part` and renamed when complete and verified.
    File(PathBuf),
    /// Memory, up to a limit.
    Memory {
        /// Largest body accepted.
        limit: u64,
    },
    /// A chunk callback.
    Stream(Arc<dyn ChunkSink>),
    /// A file whose stored destination is relative to a root this manager does not declare
    /// (`@name/...`, see [`super::roots`]): listed with that text and the `root_unknown` error,
    /// never read as a path, never run.
    Unresolved(String),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::File(p) => write!(f, "File({})", p.display()),
            Output::Memory { limit } => write!(f, "Memory({limit})"),
            Output::Stream(_) => f.write_str("Stream"),
            Output::Unresolved(stored) => write!(f, "Unresolved({stored})"),
        }
    }
}

impl Output {
    /// The destination file, for file outputs.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            Output::File(p) => Some(p),
            _ => None,
        }
    }

    /// The stored destination of a file whose root is not declared.
    pub fn unresolved(&self) -> Option<&str> {
        match self {
            Output::Unresolved(stored) => Some(stored),
            _ => None,
        }
    }

    /// Short kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::File(_) | Output::Unresolved(_) => "file",
            Output::Memory { .. } => "memory",
            Output::Stream(_) => "stream",
        }
    }
}

/// The part file path for a destination: `<destination>.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let bytes = dest.as_os_str().as_bytes();
    let last = bytes.rsplit(|&b| b == b'/').next().unwrap_or_default();
    if !matches!(last, b"" | b"." | b"..") {
        // The common case, without parsing the path into components twice: append the suffix.
        let mut path = std::ffi::OsString::with_capacity(bytes.len() + 5);
        path.push(dest.as_os_str());
        path.push(".part");
        return PathBuf::from(path);
    }
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

/// A validated, immutable description of a download.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// Task id.
    pub id: TaskId,
    /// Absolute http(s) URL.
    pub url: url::Url,
    /// Output.
    pub output: Output,
    /// Extra request headers (validated: no CR/LF, valid names).
    pub headers: Vec<(String, String)>,
    /// `None` = automatic; `Some(n)` = exactly n.
    pub connections: Option<u32>,
    /// Expected SHA-256 (lower-case hex), checked before the file appears.
    pub sha256: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// Replace an existing destination file.
    pub overwrite: bool,
    /// Bandwidth cap (bytes per second), as enqueued or as stored; the live one is the table entry's.
    pub rate_limit: Option<u64>,
    /// Which networks it may use, as enqueued (changeable later, like the priority).
    pub network_policy: super::network::NetworkPolicy,
}

impl TaskSpec {
    /// `host:port` used for per-host connection caps.
    pub fn host_key(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        let mut key = String::with_capacity(host.len() + 6);
        key.push_str(host);
        key.push(':');
        key.push_str(itoa::Buffer::new().format(self.url.port_or_known_default().unwrap_or(0)));
        key
    }

    /// Whether two specs ask for the same thing (idempotent enqueue).
    pub fn same_request(&self, other: &TaskSpec) -> bool {
        self.url == other.url
            && self.output.path() == other.output.path()
            && self.output.kind() == other.output.kind()
            && self.headers == other.headers
            && self.sha256 == other.sha256
    }
}

/// The error recorded on a failed task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskError {
    /// Stable code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
    /// The HTTP status, when the server's answer was the failure.
    pub http_status: Option<u16>,
}

impl From<&Error> for TaskError {
    fn from(e: &Error) -> Self {
        TaskError { code: e.code(), message: e.message().to_string(), http_status: e.http_status() }
    }
}

impl From<&TaskError> for Error {
    fn from(e: &TaskError) -> Self {
        Error::with_status(e.code, e.message.clone(), e.http_status)
    }
}

/// A snapshot of one task, as `status` reports it.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// Id.
    pub id: TaskId,
    /// URL without credentials or query string (see [`redact_url`](super::error::redact_url)): status
    /// is shown and logged, and signed URLs carry their secrets there.
    pub url: String,
    /// Destination path for file outputs.
    pub destination: Option<PathBuf>,
    /// Output kind: file, memory or stream.
    pub output_kind: &'static str,
    /// State.
    pub state: TaskState,
    /// Bytes transferred (for completed tasks: the size).
    pub bytes: u64,
    /// Resource length, when known.
    pub total: Option<u64>,
    /// Bytes per second, smoothed.
    pub speed: f64,
    /// Estimated seconds left.
    pub eta_seconds: Option<f64>,
    /// Connections streaming now.
    pub connections: u32,
    /// Last error (set for failed tasks; also the last retried error while running).
    pub error: Option<TaskError>,
    /// Priority.
    pub priority: i32,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: i64,
    /// The OS is fetching some of its ranges (handed off to an iOS background session or an
    /// Android job); `bytes` counts what the OS reports, and only what was ingested is written.
    pub handed_off: bool,
    /// Which networks it may use.
    pub network_policy: super::network::NetworkPolicy,
    /// Why a queued task waits instead of running (the network is down, or its policy refuses the
    /// network there is); `None` for a task that runs or only waits its turn.
    pub waiting: Option<super::network::WaitReason>,
}

impl TaskInfo {
    /// Progress in 0..=1 (0 while the length is unknown, 1 when completed).
    pub fn progress(&self) -> f64 {
        match (self.state, self.total) {
            (TaskState::Completed, _) => 1.0,
            (_, Some(0)) | (_, None) => 0.0,
            (_, Some(t)) => (self.bytes as f64 / t as f64).clamp(0.0, 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transition_is_decided_in_one_place() {
        use TaskState::*;
        use Transition::*;
        let allowed = [
            (Queued, Start, Running),
            (Running, Complete, Completed),
            (Running, Fail, Failed),
            (Queued, Pause, Paused),
            (Running, Pause, Paused),
            (Paused, Resume, Queued),
            (Failed, Resume, Queued),
            (Queued, Cancel, Cancelled),
            (Running, Cancel, Cancelled),
            (Paused, Cancel, Cancelled),
            (Failed, Cancel, Cancelled),
            (Running, Recover, Queued),
        ];
        for from in TaskState::ALL {
            for t in [Start, Complete, Fail, Pause, Resume, Cancel, Recover] {
                let expected = allowed.iter().find(|(f, tr, _)| *f == from && *tr == t).map(|x| x.2);
                match (next_state(from, t), expected) {
                    (Ok(to), Some(e)) => assert_eq!(to, e),
                    (Err(err), None) => assert_eq!(err.code(), ErrorCode::InvalidState),
                    (got, want) => panic!("{from:?} {t:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        for s in [Completed, Cancelled] {
            assert!(s.is_terminal());
        }
    }

    #[test]
    fn ids() {
        assert!(TaskId::parse("").is_err());
        assert!(TaskId::parse("a\nb").is_err());
        assert!(TaskId::parse(&"x".repeat(201)).is_err());
        assert_eq!(TaskId::parse("movie-1").unwrap().as_str(), "movie-1");
        assert_ne!(TaskId::generate(), TaskId::generate());
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_i64(s.as_i64()), Some(s));
        }
    }
}
