//! The hand-off to the OS, exported: leases for an iOS background `URLSession` or an Android job,
//! and the chunks they fetched ingested back. Conversions only; the rules are the engine's
//! (`engine::handoff`, `engine::run::manager`).

use super::error::{DownloadError, ErrorCode};
use super::gate::gated;
use super::manager::DownloadManager;
use super::types::HttpHeader;
use crate::engine::{self, runtime};
use std::path::Path;
use std::time::Duration;

type R<T> = Result<T, DownloadError>;

/// How a hand-off cuts and bounds its leases.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HandoffConfig {
    /// Largest lease in bytes (32 MiB: a killed app loses at most the chunks in flight).
    #[uniffi(default = 33554432)]
    pub chunk_bytes: u64,
    /// Most live leases per task.
    #[uniffi(default = 64)]
    pub max_leases_per_task: u32,
    /// Most live leases in all; tasks past it are not handed off.
    #[uniffi(default = 512)]
    pub max_leases: u32,
    /// How long running transfers may take to stop, in milliseconds.
    #[uniffi(default = 5000)]
    pub stop_timeout_ms: u32,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        engine::HandoffOptions::default().into()
    }
}

impl From<engine::HandoffOptions> for HandoffConfig {
    fn from(o: engine::HandoffOptions) -> Self {
        HandoffConfig {
            chunk_bytes: o.chunk_bytes,
            max_leases_per_task: o.max_leases_per_task,
            max_leases: o.max_leases,
            stop_timeout_ms: o.stop_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
        }
    }
}

impl From<HandoffConfig> for engine::HandoffOptions {
    fn from(c: HandoffConfig) -> Self {
        engine::HandoffOptions {
            chunk_bytes: c.chunk_bytes,
            max_leases_per_task: c.max_leases_per_task,
            max_leases: c.max_leases,
            stop_timeout: Duration::from_millis(u64::from(c.stop_timeout_ms)),
        }
    }
}

/// One range for the OS to fetch: give it to a download task whose description is `os_tag`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OsRangeRequest {
    /// The lease (unique, never reused).
    pub lease_id: String,
    /// The task it fetches for.
    pub task_id: String,
    /// The OS task's tag: `taskDescription` on iOS, the job's extras on Android. Versioned; no
    /// secrets in it.
    pub os_tag: String,
    /// URL to fetch.
    pub url: String,
    /// Every header to send (the caller's, `Accept-Encoding: identity`, and for a ranged lease
    /// `Range` and `If-Range`).
    pub headers: Vec<HttpHeader>,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `None` for a whole-file lease of unknown length.
    pub end_inclusive: Option<u64>,
    /// The resource's length, when known.
    pub expected_total: Option<u64>,
    /// The whole resource in one plain GET (no ranges or no strong validator): adopted only as a
    /// complete 200 of the expected length.
    pub whole_file: bool,
}

impl From<engine::OsRequest> for OsRangeRequest {
    fn from(r: engine::OsRequest) -> Self {
        OsRangeRequest {
            lease_id: r.lease_id,
            task_id: r.task_id,
            os_tag: r.os_tag,
            url: r.url,
            headers: r.headers.into_iter().map(|(name, value)| HttpHeader { name, value }).collect(),
            start: r.start,
            end_inclusive: (r.end != u64::MAX).then(|| r.end - 1),
            expected_total: r.total,
            whole_file: r.whole,
        }
    }
}

/// A task a hand-off left alone, and why.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SkippedTask {
    /// The task (empty when the id was not found).
    pub task_id: String,
    /// Stable code.
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

/// What a hand-off did.
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct HandoffResult {
    /// Every new lease: create all their OS tasks now (iOS rate-limits tasks created on wakes).
    pub requests: Vec<OsRangeRequest>,
    /// Tasks not handed off.
    pub skipped: Vec<SkippedTask>,
}

/// The status and headers of the OS's answer for a chunk.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChunkResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, as the OS reports them.
    pub headers: Vec<HttpHeader>,
}

impl From<ChunkResponse> for engine::ChunkMeta {
    fn from(r: ChunkResponse) -> Self {
        engine::ChunkMeta { status: r.status, headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect() }
    }
}

/// What became of a chunk.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum IngestOutcome {
    /// Written, synced and journaled; `task_complete` when the file is now in place.
    Committed {
        /// The task.
        task_id: String,
        /// The file was published.
        task_complete: bool,
    },
    /// Ingested before; nothing written.
    AlreadyCommitted,
    /// The resource changed: the download starts over in the engine. Cancel the listed OS tasks.
    Restart {
        /// The task.
        task_id: String,
        /// Why.
        reason: String,
        /// OS tasks to cancel.
        cancel_os_tags: Vec<String>,
    },
    /// Not written; the lease ended and its range went back to the engine (or, when not
    /// retryable, the task failed).
    Rejected {
        /// The task, when the lease was known.
        task_id: Option<String>,
        /// Stable code.
        code: ErrorCode,
        /// Why.
        message: String,
        /// HTTP status, when the server's answer was the reason.
        http_status: Option<u16>,
        /// Another try may succeed.
        retryable: bool,
        /// 401 or 403: refresh the request's credentials.
        credentials: bool,
        /// OS tasks to cancel.
        cancel_os_tags: Vec<String>,
    },
    /// Nothing is staged for the lease (ingested and deleted already, or never staged); a live
    /// lease stays live.
    NothingStaged,
    /// Storage trouble while writing: the chunk stays staged and the lease live; ingest again later.
    Deferred {
        /// Stable code.
        code: ErrorCode,
        /// What went wrong.
        message: String,
    },
}

impl From<engine::IngestOutcome> for IngestOutcome {
    fn from(o: engine::IngestOutcome) -> Self {
        use engine::IngestOutcome as E;
        match o {
            E::Committed { task_id, task_complete } => Self::Committed { task_id, task_complete },
            E::AlreadyCommitted => Self::AlreadyCommitted,
            E::Restart { task_id, reason, cancel_os_tags } => Self::Restart { task_id, reason, cancel_os_tags },
            E::Rejected { task_id, error, retryable, credentials, cancel_os_tags } => Self::Rejected {
                task_id,
                code: error.code().into(),
                message: error.message().to_string(),
                http_status: error.http_status(),
                retryable,
                credentials,
                cancel_os_tags,
            },
            E::NothingStaged => Self::NothingStaged,
            E::Deferred { error } => Self::Deferred { code: error.code().into(), message: error.message().to_string() },
        }
    }
}

/// An OS task the platform found.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OsTaskInfo {
    /// Its tag.
    pub os_tag: String,
    /// Bytes received so far.
    pub bytes_received: u64,
}

/// What to do to bring the OS in line with the task table.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ReconcilePlan {
    /// OS tasks to cancel.
    pub cancel_os_tags: Vec<String>,
    /// Tags carried by more than one OS task: keep one task of each, cancel the others.
    pub duplicate_os_tags: Vec<String>,
    /// Leases whose staged chunk waits: call `ingest_staged` for each.
    pub ingest_lease_ids: Vec<String>,
    /// New leases to give the OS.
    pub export: Vec<OsRangeRequest>,
    /// Tasks the engine now fetches itself.
    pub run_in_process: Vec<String>,
}

#[uniffi::export]
impl DownloadManager {
    /// Hands the given tasks (`None`: every queued or running file task) to the OS: their
    /// transfers stop with everything synced, and every byte left is leased. Create one OS task
    /// per request right away. The tasks stay `running` (`handed_off` in their status).
    #[uniffi::method(default(task_ids = None, config = None))]
    pub async fn hand_off(&self, task_ids: Option<Vec<String>>, config: Option<HandoffConfig>) -> R<HandoffResult> {
        let m = self.inner.clone();
        let options: engine::HandoffOptions = config.unwrap_or_default().into();
        let report = gated(runtime::handle().spawn(async move { m.hand_off(task_ids, options).await }))
            .await
            .map_err(|_| engine::Error::internal("the hand-off stopped"))??;
        Ok(HandoffResult {
            requests: report.requests.into_iter().map(Into::into).collect(),
            skipped: report
                .skipped
                .into_iter()
                .map(|(task_id, e)| SkippedTask { task_id, code: e.code().into(), message: e.message().to_string() })
                .collect(),
        })
    }

    /// Moves the file the OS fetched for a lease into the state directory's staging folder, with
    /// the answer's status and headers. Call it inside `didFinishDownloadingTo` (iOS deletes the
    /// file when it returns); then `ingest_staged`, off that thread. Returns false when a chunk
    /// was already staged for the lease: this body, a duplicate, is dropped.
    pub fn stage_chunk(&self, lease_id: String, file_path: String, response: ChunkResponse) -> R<bool> {
        Ok(self.inner.stage_chunk(&lease_id, Path::new(&file_path), response.into())?)
    }

    /// Ingests the staged chunk of a lease. Idempotent; blocking (it copies and syncs).
    pub fn ingest_staged(&self, lease_id: String) -> IngestOutcome {
        self.inner.ingest_staged(&lease_id).into()
    }

    /// Ingests `file_path`, the body the OS fetched for a lease, with its answer. The file is
    /// deleted once its fate is decided (kept when the outcome is `Deferred`).
    pub fn ingest_chunk(&self, lease_id: String, file_path: String, response: ChunkResponse) -> IngestOutcome {
        self.inner.ingest(&lease_id, Path::new(&file_path), response.into()).into()
    }

    /// The OS task of a lease failed or vanished: its range goes back to the engine.
    pub fn release_lease(&self, lease_id: String) -> R<()> {
        Ok(self.inner.release_lease(&lease_id)?)
    }

    /// Progress the OS reports for a lease's task: shown in the task's status, never journaled.
    pub fn note_os_progress(&self, os_tag: String, bytes_received: u64) {
        self.inner.note_os_progress(&os_tag, bytes_received)
    }

    /// After a launch or wake: what to cancel, ingest, give the OS again (cut by `config`), or
    /// fetch in process.
    #[uniffi::method(default(config = None))]
    pub fn reconcile(&self, live: Vec<OsTaskInfo>, foreground: bool, config: Option<HandoffConfig>) -> R<ReconcilePlan> {
        let live = live.into_iter().map(|t| engine::OsTask { os_tag: t.os_tag, bytes: t.bytes_received }).collect();
        let plan = self.inner.reconcile(live, foreground, config.unwrap_or_default().into())?;
        Ok(ReconcilePlan {
            cancel_os_tags: plan.cancel_os_tags,
            duplicate_os_tags: plan.duplicate_os_tags,
            ingest_lease_ids: plan.ingest,
            export: plan.export.into_iter().map(Into::into).collect(),
            run_in_process: plan.run_in_process,
        })
    }

    /// Back in the foreground: leases with no OS progress for `stale_after_ms` go back to the
    /// engine. Returns the OS tasks to cancel.
    #[uniffi::method(default(stale_after_ms = 20000))]
    pub fn take_back(&self, stale_after_ms: u64) -> R<Vec<String>> {
        Ok(self.inner.take_back(Duration::from_millis(stale_after_ms))?)
    }

    /// OS tasks whose leases the engine ended (a pause, cancel, remove, restart or failure) since
    /// the last call: cancel them.
    pub fn revoked_os_tags(&self) -> Vec<String> {
        self.inner.revoked()
    }

    /// The live leases, as requests.
    pub fn live_leases(&self) -> Vec<OsRangeRequest> {
        self.inner.live_leases().into_iter().map(Into::into).collect()
    }
}
