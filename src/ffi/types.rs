//! Records and enums that cross the FFI, mirroring engine types, with their conversions.

use super::error::ErrorCode;
use super::network::{NetworkPolicy, NetworkState, WaitReason};
use crate::engine;
use std::path::PathBuf;

/// One HTTP header.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A download request. Exactly one output: `destination` (a file) or `memory_limit` (bytes in memory);
/// stream outputs go through `enqueue_stream`.
#[derive(Clone, Debug, uniffi::Record)]
pub struct DownloadRequest {
    /// http or https URL.
    pub url: String,
    /// Absolute destination path.
    #[uniffi(default)]
    pub destination: Option<String>,
    /// Your task id; a UUID is generated when absent. Enqueueing the same id twice downloads once.
    #[uniffi(default)]
    pub task_id: Option<String>,
    /// Extra request headers.
    #[uniffi(default)]
    pub headers: Vec<HttpHeader>,
    /// Connections; absent = automatic.
    #[uniffi(default)]
    pub connections: Option<u32>,
    /// Expected SHA-256 (hex); the file appears only if it matches.
    #[uniffi(default)]
    pub sha256: Option<String>,
    /// Higher runs first.
    #[uniffi(default)]
    pub priority: i32,
    /// Replace an existing destination file.
    #[uniffi(default)]
    pub overwrite: bool,
    /// Keep the body in memory, up to this many bytes (instead of a file).
    #[uniffi(default)]
    pub memory_limit: Option<u64>,
    /// Cap on this task's bytes per second over all its connections; absent or 0 = none. Stored
    /// with a file task (it holds after a reopen); change it with `set_task_rate_limit`.
    #[uniffi(default)]
    pub rate_limit: Option<u64>,
    /// Which networks the task may use; absent = any.
    #[uniffi(default)]
    pub network_policy: Option<NetworkPolicy>,
}

impl DownloadRequest {
    pub(crate) fn into_engine(self, stream: Option<std::sync::Arc<dyn engine::ChunkSink>>) -> engine::Request {
        engine::Request {
            url: self.url,
            destination: self.destination.map(PathBuf::from),
            task_id: self.task_id,
            headers: self.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            connections: self.connections,
            sha256: self.sha256,
            priority: self.priority,
            overwrite: self.overwrite,
            memory_limit: self.memory_limit,
            stream,
            rate_limit: self.rate_limit,
            network_policy: self.network_policy.map(Into::into).unwrap_or_default(),
        }
    }
}

/// Task states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum TaskState {
    /// Waiting for a slot.
    Queued,
    /// Transferring.
    Running,
    /// Paused by the caller; resumable.
    Paused,
    /// Done and verified.
    Completed,
    /// Stopped by an error (see `error`); resumable.
    Failed,
    /// Cancelled; the partial file is gone.
    Cancelled,
}

impl From<engine::TaskState> for TaskState {
    fn from(s: engine::TaskState) -> Self {
        match s {
            engine::TaskState::Queued => Self::Queued,
            engine::TaskState::Running => Self::Running,
            engine::TaskState::Paused => Self::Paused,
            engine::TaskState::Completed => Self::Completed,
            engine::TaskState::Failed => Self::Failed,
            engine::TaskState::Cancelled => Self::Cancelled,
        }
    }
}

/// The error recorded on a task.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TaskErrorInfo {
    /// Stable code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
    /// HTTP status, when the server's answer was the failure.
    pub http_status: Option<u16>,
}

impl From<engine::TaskError> for TaskErrorInfo {
    fn from(e: engine::TaskError) -> Self {
        TaskErrorInfo { code: e.code.into(), message: e.message, http_status: e.http_status }
    }
}

/// A task's status.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct TaskStatus {
    /// Id.
    pub task_id: String,
    /// URL.
    pub url: String,
    /// Destination file, for file outputs: the absolute path, resolved against the manager's roots
    /// when it is stored relative to one (a completed task reports where its file is now). A task
    /// stored under a root this manager does not declare shows the stored text (`@name/...`) and
    /// the error `RootUnknown`.
    pub destination: Option<String>,
    /// "file", "memory" or "stream".
    pub output: String,
    /// State.
    pub state: TaskState,
    /// 0..=1 (0 while the length is unknown).
    pub progress: f64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Length, when known.
    pub total: Option<u64>,
    /// Bytes per second.
    pub speed: f64,
    /// Seconds left, when known.
    pub eta_seconds: Option<f64>,
    /// Connections streaming now.
    pub connections: u32,
    /// Error of a failed task (or the last retried error of a running one).
    pub error: Option<TaskErrorInfo>,
    /// Priority.
    pub priority: i32,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// The OS fetches some of its ranges (handed off); `bytes` includes what the OS reports.
    pub handed_off: bool,
    /// Which networks it may use.
    pub network_policy: NetworkPolicy,
    /// Why a queued task waits instead of running (no network, or one its policy refuses); absent
    /// when it runs or only waits its turn.
    pub waiting: Option<WaitReason>,
}

impl From<engine::TaskInfo> for TaskStatus {
    fn from(t: engine::TaskInfo) -> Self {
        TaskStatus {
            progress: t.progress(),
            task_id: t.id.as_str().to_string(),
            url: t.url,
            destination: t.destination.map(|p| p.to_string_lossy().into_owned()),
            output: t.output_kind.to_string(),
            state: t.state.into(),
            bytes: t.bytes,
            total: t.total,
            speed: t.speed,
            eta_seconds: t.eta_seconds,
            connections: t.connections,
            error: t.error.map(Into::into),
            priority: t.priority,
            created_ms: t.created_ms,
            updated_ms: t.updated_ms,
            handed_off: t.handed_off,
            network_policy: t.network_policy.into(),
            waiting: t.waiting.map(Into::into),
        }
    }
}

/// An event from the engine.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum DownloadEvent {
    /// Progress, coalesced at the configured cadence.
    Progress {
        /// Task.
        task_id: String,
        /// Bytes.
        bytes: u64,
        /// Length, when known.
        total: Option<u64>,
        /// 0..=1.
        progress: f64,
        /// Bytes per second.
        speed: f64,
        /// Seconds left, when known.
        eta_seconds: Option<f64>,
    },
    /// A state change; never dropped.
    StateChanged {
        /// Task.
        task_id: String,
        /// Previous state (absent for a new task).
        from: Option<TaskState>,
        /// New state.
        to: TaskState,
        /// The error, for failed tasks.
        error: Option<TaskErrorInfo>,
    },
}

impl From<engine::Event> for DownloadEvent {
    fn from(e: engine::Event) -> Self {
        match e {
            engine::Event::Progress(p) => DownloadEvent::Progress {
                progress: match p.total {
                    Some(t) if t > 0 => (p.bytes as f64 / t as f64).clamp(0.0, 1.0),
                    Some(_) => 1.0,
                    None => 0.0,
                },
                task_id: p.id.as_str().to_string(),
                bytes: p.bytes,
                total: p.total,
                speed: p.speed,
                eta_seconds: p.eta_seconds,
            },
            engine::Event::State(s) => DownloadEvent::StateChanged {
                task_id: s.id.as_str().to_string(),
                from: s.from.map(Into::into),
                to: s.to.into(),
                error: s.error.map(Into::into),
            },
        }
    }
}

/// Concurrency limits; changeable at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Limits {
    /// Tasks transferring at once (a task only finishing its file does not count).
    #[uniffi(default = 4)]
    pub max_running_tasks: u32,
    /// Connections to one host across all tasks.
    #[uniffi(default = 16)]
    pub max_connections_per_host: u32,
    /// Upper bound of a task's automatic connection count.
    #[uniffi(default = 16)]
    pub max_connections_per_task: u32,
}

impl From<engine::Limits> for Limits {
    fn from(l: engine::Limits) -> Self {
        Limits {
            max_running_tasks: l.max_running_tasks,
            max_connections_per_host: l.max_connections_per_host,
            max_connections_per_task: l.max_connections_per_task,
        }
    }
}

impl From<Limits> for engine::Limits {
    fn from(l: Limits) -> Self {
        engine::Limits {
            max_running_tasks: l.max_running_tasks,
            max_connections_per_host: l.max_connections_per_host,
            max_connections_per_task: l.max_connections_per_task,
        }
    }
}

/// A named directory that destinations are stored relative to (see `ManagerConfig.roots`).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PathRoot {
    /// A short name: 1–64 ASCII letters, digits, `_`, `-` or `.`. Stored in the task table, so it
    /// must mean the same directory at every open (`documents`, `caches`, `group`).
    pub name: String,
    /// Absolute path of an existing directory, as it is at this open.
    pub path: String,
}

/// Manager configuration. Every field has a default.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct ManagerConfig {
    /// Limits.
    #[uniffi(default)]
    pub limits: Option<Limits>,
    /// Connect timeout, milliseconds (default 15000).
    #[uniffi(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Longest silence on a connection before it is retried, milliseconds (default 30000).
    #[uniffi(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Progress event cadence, milliseconds (default 250).
    #[uniffi(default)]
    pub progress_interval_ms: Option<u64>,
    /// Fruitless attempts in a row per connection (and for a task's first request) before the task
    /// fails (default 8).
    #[uniffi(default)]
    pub retry_budget: Option<u32>,
    /// First retry delay, milliseconds (default 250).
    #[uniffi(default)]
    pub retry_base_delay_ms: Option<u64>,
    /// Resume queued tasks when the manager opens (default true).
    #[uniffi(default)]
    pub resume_on_open: Option<bool>,
    /// User-Agent header.
    #[uniffi(default)]
    pub user_agent: Option<String>,
    /// Extra trusted root certificates, PEM.
    #[uniffi(default)]
    pub extra_root_certificates_pem: Vec<String>,
    /// Trust Mozilla's bundled roots instead of the platform verifier (default: on for Android only).
    #[uniffi(default)]
    pub bundled_tls_roots: Option<bool>,
    /// The proxy for every request: an `http://` URL (credentials in it are sent to the proxy), or
    /// `none` / `direct` for none. Unset, the engine reads `https_proxy`, `http_proxy` and
    /// `all_proxy` from the environment; the Swift and Kotlin facades fill it from the platform's
    /// proxy settings first.
    #[uniffi(default)]
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy, in `no_proxy` syntax (comma-separated domains, IP addresses
    /// and networks, optional `:port`, `*`). Unset: `no_proxy` from the environment when the proxy
    /// comes from there too.
    #[uniffi(default)]
    pub no_proxy: Option<String>,
    /// Directories whose path may change between launches (on iOS the app's container moves after
    /// an update or a restore): a destination under one is stored relative to it (the deepest one
    /// when they nest) and resolved against the roots of each open, part file included, so tasks
    /// resume and completed ones report where their files are now. Destinations outside every root
    /// are stored as absolute paths. A task stored under a root that an open does not declare is
    /// listed (its destination as stored, `@name/...`, and the error `RootUnknown`), never run
    /// nor taken over, and can only be removed (its files stay). Every process sharing a state
    /// directory should declare the same roots. Invalid names, duplicate names, relative paths and
    /// missing directories are `InvalidConfig`. Default: none.
    #[uniffi(default)]
    pub roots: Vec<PathRoot>,
    /// Cap on the bytes per second of all downloads together; absent or 0 = none. Change it while
    /// downloads run with `set_rate_limit`.
    #[uniffi(default)]
    pub rate_limit: Option<u64>,
    /// How long the credential refresher may take before the task fails with
    /// `CredentialsRefreshFailed`, milliseconds (default 30000).
    #[uniffi(default)]
    pub refresh_timeout_ms: Option<u64>,
    /// Ask the credential refresher before every run that resumes a task with bytes (status 0),
    /// not only after a 401 or 403 (default false).
    #[uniffi(default)]
    pub refresh_before_resume: Option<bool>,
    /// While no network is reported (`set_network`), a task that could not connect at all through
    /// its retries, while no other task had a connection, waits (`NetworkUnreachable`) and tries
    /// again after a growing backoff instead of failing (default false: a dead server looks the
    /// same).
    #[uniffi(default)]
    pub wait_when_unreachable: Option<bool>,
    /// The network at open, as the host knows it then (`NWPathMonitor.currentPath`, the
    /// `ConnectivityManager`'s default network): the tasks the open resumes are judged against it
    /// before any starts, so a `NotExpensive` task does not begin on cellular before the first
    /// `set_network`. Absent: unknown until then, counted as available and unrestricted.
    #[uniffi(default)]
    pub network: Option<NetworkState>,
    /// The slowest a server may feed the downloads, bytes per second (default 1024; 0: no
    /// minimum), judged over `min_speed_window_ms` of waiting for it and shared by the connections
    /// open at once. A slower connection fails its attempt as `Timeout` and is retried; a trickle
    /// spends the retry budget, so the task fails instead of lasting for ever.
    #[uniffi(default)]
    pub min_speed_bytes_per_second: Option<u64>,
    /// The stretch of waiting over which the minimum speed is judged, milliseconds (default 30000).
    #[uniffi(default)]
    pub min_speed_window_ms: Option<u64>,
}

impl From<ManagerConfig> for engine::Config {
    fn from(c: ManagerConfig) -> Self {
        use std::time::Duration;
        let d = engine::Config::default();
        let ms = |v: Option<u64>, dflt: Duration| v.map(Duration::from_millis).unwrap_or(dflt);
        engine::Config {
            limits: c.limits.map(Into::into).unwrap_or(d.limits),
            connect_timeout: ms(c.connect_timeout_ms, d.connect_timeout),
            idle_timeout: ms(c.idle_timeout_ms, d.idle_timeout),
            progress_interval: ms(c.progress_interval_ms, d.progress_interval),
            retry: engine::RetryPolicy {
                budget: c.retry_budget.unwrap_or(d.retry.budget),
                base_delay: ms(c.retry_base_delay_ms, d.retry.base_delay),
                max_delay: d.retry.max_delay,
            },
            resume_on_open: c.resume_on_open.unwrap_or(d.resume_on_open),
            user_agent: c.user_agent.unwrap_or(d.user_agent),
            extra_root_certificates_pem: c.extra_root_certificates_pem,
            bundled_tls_roots: c.bundled_tls_roots.unwrap_or(d.bundled_tls_roots),
            proxy: c.proxy,
            no_proxy: c.no_proxy,
            roots: c.roots.into_iter().map(|r| (r.name, PathBuf::from(r.path))).collect(),
            rate_limit: c.rate_limit,
            refresh_timeout: ms(c.refresh_timeout_ms, d.refresh_timeout),
            refresh_before_resume: c.refresh_before_resume.unwrap_or(d.refresh_before_resume),
            wait_when_unreachable: c.wait_when_unreachable.unwrap_or(d.wait_when_unreachable),
            network: c.network.map(Into::into),
            min_speed: c.min_speed_bytes_per_second.unwrap_or(d.min_speed),
            min_speed_window: ms(c.min_speed_window_ms, d.min_speed_window),
            ..d
        }
    }
}

/// The result of one request in a batch.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum BatchItem {
    /// Enqueued (or already known under this id).
    Enqueued {
        /// Task id.
        task_id: String,
    },
    /// Refused.
    Rejected {
        /// Why.
        error: TaskErrorInfo,
    },
}
