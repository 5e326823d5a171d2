//! Runs one task from start (or resume) to a verified file: probe, plan, drive the connections,
//! keep the journal and durable offsets, restart cleanly when the server's answers demand it,
//! and publish.
//!
//! The loop of a run:
//! 1. With a usable journal (range map, validator, part file), resume: every connection asks for its
//!    remaining range with `If-Range`. Otherwise probe with `Range: bytes=0-`.
//! 2. A 206 probe gives a ranged download: the probe's own body feeds the first segment, more
//!    connections join as the controller asks, each freed connection splits the largest remainder.
//!    A 200 probe gives one plain stream, which can only restart from zero after a failure.
//! 3. Any answer that breaks the range contract restarts from zero; after `restart_budget` restarts
//!    the run falls back to one plain stream without `Range`, and fails if that breaks too.
//! 4. Stop (pause, cancel, shutdown): connections are dropped, the journal is written in full, the
//!    part file synced and the durable offsets advanced.

use super::connection::{self, ConnContext, RunShared, WorkerExit, WorkerResult};
use super::rate::{RateLimit, Throttle};
use super::scheduler::{HostSlots, Slot};
use super::sink::{FileSink, MemorySink, Sink, StreamSink};
use super::table::{FlushSignal, LiveLease, Resource, StopReason, TaskEntry, UNKNOWN};
use crate::engine::http::transport::{Get, Response, Transport};
use crate::engine::http::verdict::{judge_probe, Identity, Probe, Validator};
use crate::engine::model::config::Config;
use crate::engine::model::credentials::CredentialSource;
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::retry::RetryBudget;
use crate::engine::model::task::Output;
use crate::engine::ranges::controller::{ConnectionMode, Controller, ControllerTuning};
use crate::engine::ranges::map::{plan, RangeMap, SegmentRow};
use crate::engine::storage::journal::Journal;
use crate::engine::storage::part_file::{self, PartFile, Publish};
use crate::engine::storage::publisher;
use crate::engine::storage::store::{tx, Store};
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod finish;
mod probe;
mod ranged;
mod refresh;

pub use refresh::apply_credentials;

/// Engine services a runner uses.
pub struct Env {
    /// HTTP client.
    pub transport: Transport,
    /// Task table.
    pub store: Arc<Store>,
    /// Journal writer.
    pub journal: Arc<Journal>,
    /// Per-host connection slots.
    pub hosts: Arc<HostSlots>,
    /// Live configuration.
    pub config: RwLock<Config>,
    /// Leases ended by the engine (pause, cancel, a restart) whose OS tasks the platform must
    /// cancel: drained by `Manager::revoked`.
    pub revoked: parking_lot::Mutex<Vec<String>>,
    /// The cap over all tasks.
    pub rate: Arc<RateLimit>,
    /// The host's source of fresh credentials (see `model::credentials`), if it gave one.
    pub credentials: RwLock<Option<Arc<dyn CredentialSource>>>,
}

impl Env {
    /// The caps a connection of `task` answers to.
    pub fn throttle(&self, task: &TaskEntry) -> Throttle {
        Throttle { task: task.rate.clone(), global: self.rate.clone() }
    }

    /// Queues ended leases for the platform to cancel their OS tasks.
    pub fn revoke(&self, lease_ids: Vec<String>) {
        if !lease_ids.is_empty() {
            self.revoked.lock().extend(lease_ids);
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Verified and in place (or delivered, for memory and stream outputs).
    Completed {
        /// Size.
        bytes: u64,
        /// The task table already records the completion.
        recorded: bool,
    },
    /// Stopped by an error.
    Failed(Error),
    /// Stopped on request.
    Stopped,
    /// Only ranges leased to the OS are left: the task stays running, fetched by the OS, with no
    /// runner until a chunk comes back or a lease is released.
    HandedOff,
}

enum Step {
    HandedOff,
    Restart { code: ErrorCode, reason: String },
    Retry(Error),
    Fail(Error),
    Stopped,
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Step::Fail(e)
    }
}

/// A split must leave the split range at least this much work at the current per-connection rate.
const SPLIT_MIN_TIME: Duration = Duration::from_secs(1);

struct Done {
    total: u64,
    hashed: Option<(Sha256, u64)>,
}

struct Ranged {
    total: u64,
    validator: Option<Validator>,
    map: RangeMap,
    /// The task table already holds this layout (a resumed journal).
    saved: bool,
    /// The URL that served the probe, after redirects.
    served_by: Option<url::Url>,
    /// The identity the probe claimed.
    seen: Identity,
}

/// Called once the transfer is over and only publishing is left, so the scheduler can start the next
/// task while this one's file is made durable.
pub type Transferred = Box<dyn FnOnce() + Send + Sync>;

/// Runs a task until it completes, fails or is stopped. `flush` asks for a sync of the part file and
/// journal at any time (an app going to the background).
pub async fn run(
    env: Arc<Env>,
    task: Arc<TaskEntry>,
    stop: CancellationToken,
    slot: Slot,
    flush: FlushSignal,
    transferred: Transferred,
) -> Outcome {
    if task.inner.lock().leases.iter().any(|l| l.whole) {
        // The OS fetches the whole file; nothing here can share the work.
        return Outcome::HandedOff;
    }
    let config = env.config.read().clone();
    let mut run = match Run::open(env, task, stop, slot, config, flush, transferred) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e),
    };
    run.drive().await
}

struct Run {
    env: Arc<Env>,
    task: Arc<TaskEntry>,
    stop: CancellationToken,
    config: Config,
    sink: Arc<dyn Sink>,
    part: Option<Arc<PartFile>>,
    memory: Option<Arc<MemorySink>>,
    slots: Vec<Slot>,
    budget: Arc<RetryBudget>,
    attempt: u32,
    restarts: u32,
    plain_only: bool,
    /// A protocol violation was retried already (once per run, on a new connection).
    protocol_retried: bool,
    /// Credential refreshes since the run last made progress (see `refresh`).
    refreshes: u32,
    /// The task's bytes at the last refresh.
    refresh_mark: u64,
    /// The next request opens a new connection.
    fresh_next: bool,
    /// Most bytes any plain stream of this run delivered. A plain stream restarts from zero, so
    /// only bytes beyond this mark are progress (the retry budget refills on progress only).
    plain_high_water: u64,
    resume: Option<Ranged>,
    host: String,
    /// Identity of the part file (see `part_file::Identity`), journaled with the layout.
    part_identity: Option<String>,
    run_started: Instant,
    /// How long the probe took to answer (about one round trip plus the server's latency).
    probe_latency: Option<Duration>,
    flush: FlushSignal,
    transferred: Option<Transferred>,
    /// A file output counts as under way for the publisher until it hands its file over.
    expecting: Option<publisher::Expecting>,
}

impl Run {
    fn open(
        env: Arc<Env>,
        task: Arc<TaskEntry>,
        stop: CancellationToken,
        slot: Slot,
        config: Config,
        flush: FlushSignal,
        transferred: Transferred,
    ) -> Result<Run> {
        let (resource, journal, known_part) = {
            let g = task.inner.lock();
            (g.resource.clone(), g.journal.clone(), g.part_file.clone())
        };
        let mut part = None;
        let mut part_identity = None;
        let mut memory = None;
        let mut resume = None;
        let sink: Arc<dyn Sink> = match &task.spec.output {
            Output::File(dest) => {
                let path = part_file::part_path(dest);
                let usable = usable_journal(&resource, &journal);
                let existing = if usable.is_some() { PartFile::open_existing(&path)? } else { None };
                let file = match (existing, usable) {
                    (Some(f), Some(r)) if part_matches_journal(&f, &r, &journal, known_part.as_deref())? => {
                        resume = Some(r);
                        f
                    }
                    (None, Some(r)) if max_written(&journal) == 0 && known_part.is_none() => {
                        // Handed off before anything was written: the journal holds only leases.
                        resume = Some(r);
                        PartFile::create(&path).map_err(|e| missing_dir(e, dest))?
                    }
                    _ => {
                        if !journal.is_empty() {
                            // The journal describes bytes this part file does not hold (gone,
                            // shorter, longer, or another file): forget it before anything is
                            // written, so that no later open trusts it either.
                            let ended = task.forget_resource(&env.store)?;
                            env.revoke(ended);
                        }
                        let stale_possible = !task.no_part_yet.swap(false, Ordering::Relaxed);
                        PartFile::create_fresh(&path, stale_possible).map_err(|e| missing_dir(e, dest))?
                    }
                };
                let leased = !task.inner.lock().leases.is_empty();
                if leased {
                    // Chunks the OS fetched are written into the part file by its name.
                    file.ensure_named()?;
                    if let Some(r) = resume.as_mut() {
                        let stale = place_leases(&mut r.map, &task.inner.lock().leases);
                        if !stale.is_empty() {
                            tracing::warn!(task = %task.spec.id, "{} leases had no segment of their own; released", stale.len());
                            env.revoke(task.release_leases(&env.store, Some(&stale))?);
                        }
                    }
                }
                let identity = file.identity()?.file;
                task.inner.lock().part_file = Some(identity.clone());
                part_identity = Some(identity);
                let file = Arc::new(file);
                part = Some(file.clone());
                Arc::new(FileSink { file, keep_cached: task.spec.sha256.is_some() })
            }
            Output::Memory { limit } => {
                let m = Arc::new(MemorySink::new(*limit));
                memory = Some(m.clone());
                m
            }
            Output::Stream(s) => Arc::new(StreamSink::new(s.clone())),
            // The manager never queues such a task; a path that cannot be resolved is never written.
            Output::Unresolved(stored) => return Err(crate::engine::model::roots::unknown_root(stored)),
        };
        let bytes = resume.as_ref().map(|r| r.map.written_bytes()).unwrap_or(0);
        task.live.bytes.store(bytes, Ordering::Relaxed);
        if resume.is_none() {
            task.live.total.store(UNKNOWN, Ordering::Relaxed);
        }
        let budget = Arc::new(RetryBudget::new(config.retry.budget));
        let host = task.spec.host_key();
        let expecting = part.is_some().then(|| publisher::global().expect());
        Ok(Run {
            env,
            task,
            stop,
            config,
            sink,
            part,
            memory,
            slots: vec![slot],
            budget,
            attempt: 0,
            restarts: 0,
            plain_only: false,
            protocol_retried: false,
            refreshes: 0,
            refresh_mark: 0,
            fresh_next: false,
            plain_high_water: 0,
            resume,
            host,
            part_identity,
            run_started: Instant::now(),
            probe_latency: None,
            flush,
            transferred: Some(transferred),
            expecting,
        })
    }

    async fn drive(&mut self) -> Outcome {
        // The transfer futures are boxed where they are awaited: nested in place, they made this
        // future 23 KB, and each level of nesting copied it again when it started (memcpy was 5 %
        // of the instructions of a batch of small files).
        match self.refresh_before_resume().await {
            Ok(()) => {}
            Err(Step::Fail(e)) => return self.fail(e),
            Err(_) => return Outcome::Stopped,
        }
        loop {
            let step = match self.resume.take() {
                Some(r) => Box::pin(self.transfer_ranged(r, None)).await,
                None => Box::pin(self.fresh()).await,
            };
            let err = match step {
                Ok(done) => return self.finish(done).await,
                Err(Step::Stopped) => return Outcome::Stopped,
                Err(Step::HandedOff) => return Outcome::HandedOff,
                Err(Step::Fail(e)) if e.code() == ErrorCode::AccessDenied => match self.refresh_after(e).await {
                    Ok(()) if self.resume_after_refresh() => continue,
                    Ok(()) => None,
                    Err(Step::Fail(e)) => return self.fail(e),
                    Err(_) => return Outcome::Stopped,
                },
                Err(Step::Fail(e)) => return self.fail(e),
                Err(Step::Retry(e)) => match self.backoff(e).await {
                    Ok(()) => None,
                    Err(Step::Stopped) => return Outcome::Stopped,
                    Err(Step::HandedOff) => return Outcome::HandedOff,
                    Err(Step::Fail(e)) | Err(Step::Retry(e)) => return self.fail(e),
                    Err(Step::Restart { code, reason }) => return self.fail(Error::new(code, reason)),
                },
                Err(Step::Restart { code, reason }) => Some((code, reason)),
            };
            if let Some((code, reason)) = err {
                self.restarts += 1;
                tracing::info!(task = %self.task.spec.id, "restarting from zero: {reason}");
                if self.restarts > self.config.restart_budget {
                    if self.plain_only {
                        return self.fail(Error::new(code, format!("gave up after {} restarts: {reason}", self.restarts - 1)));
                    }
                    self.plain_only = true;
                }
            }
            if let Err(e) = self.reset() {
                return self.fail(e);
            }
        }
    }

    /// Forgets all progress: empty sink, empty journal.
    fn reset(&mut self) -> Result<()> {
        self.sink.restart()?;
        self.task.live.bytes.store(0, Ordering::Relaxed);
        self.task.live.total.store(UNKNOWN, Ordering::Relaxed);
        let ended = self.task.forget_resource(&self.env.store)?;
        self.env.revoke(ended);
        Ok(())
    }

    /// Waits before the run's next request after `e`, or ends the run. A protocol violation gets
    /// one retry, on a new connection (see `connection::retry_wait`).
    async fn backoff(&mut self, e: Error) -> Result<(), Step> {
        let delay = if e.code() == ErrorCode::ProtocolError {
            if std::mem::replace(&mut self.protocol_retried, true) {
                return Err(Step::Fail(e.context("again after a retry on a new connection")));
            }
            self.fresh_next = true;
            self.config.retry.base_delay
        } else {
            if !e.is_retryable() {
                return Err(Step::Fail(e));
            }
            if !self.budget.spend() {
                return Err(Step::Fail(e.context("giving up after repeated failures without progress")));
            }
            self.attempt += 1;
            let Some(delay) = self.config.retry.delay(self.attempt, &e) else {
                return Err(Step::Fail(e.context("server asked to wait longer than the retry ceiling")));
            };
            delay
        };
        tracing::debug!(task = %self.task.spec.id, "retrying in {delay:?}: {e}");
        self.task.inner.lock().error = Some((&e).into());
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.stop.cancelled() => Err(Step::Stopped),
        }
    }

    async fn get(&self, get: Get<'_>) -> Result<Response, Step> {
        tokio::select! {
            r = self.env.transport.get(get) => r.map_err(Step::Retry),
            _ = self.stop.cancelled() => Err(Step::Stopped),
        }
    }

    fn connection_mode(&self) -> ConnectionMode {
        match &self.task.spec.output {
            Output::File(_) => match self.task.spec.connections {
                Some(n) => ConnectionMode::Fixed(n),
                None => ConnectionMode::Auto(self.env.config.read().limits.max_connections_per_task),
            },
            _ => ConnectionMode::Fixed(1),
        }
    }

    fn check_memory_limit(&self, total: Option<u64>) -> Result<(), Step> {
        if let (Output::Memory { limit }, Some(t)) = (&self.task.spec.output, total) {
            if t > *limit {
                return Err(Step::Fail(Error::new(
                    ErrorCode::MemoryLimitExceeded,
                    format!("body of {t} bytes is larger than the memory limit of {limit}"),
                )));
            }
        }
        Ok(())
    }

    /// Makes room for `needed` more bytes of a `total`-byte download, or fails at once with
    /// `disk_full` (see `PartFile::reserve`).
    fn ensure_room(&self, total: u64, needed: u64) -> Result<(), Step> {
        match &self.part {
            Some(part) => part.reserve(total, needed).map_err(Step::Fail),
            None => Ok(()),
        }
    }
}

/// Whether an existing part file holds what the journal says was written: it is the file the
/// journal was written for (when the table knows which), and its length is between the furthest
/// written offset and the total (a longer file is not one the engine wrote).
fn part_matches_journal(f: &PartFile, r: &Ranged, journal: &[SegmentRow], known: Option<&str>) -> Result<bool> {
    let found = f.identity()?;
    if known.is_some_and(|k| k != found.file) {
        tracing::info!(path = %f.path().display(), "the part file was replaced; starting over");
        return Ok(false);
    }
    Ok(found.len >= max_written(journal) && found.len <= r.total)
}

/// Creating the part file failed because its directory is gone: say that, with the input code a
/// caller would have got at enqueue.
fn missing_dir(e: Error, dest: &std::path::Path) -> Error {
    let dir = dest.parent().unwrap_or(std::path::Path::new("/"));
    if e.code() == ErrorCode::StorageIo && !dir.is_dir() {
        return Error::new(ErrorCode::DestinationDirMissing, format!("directory '{}' does not exist any more", dir.display()));
    }
    e
}

/// A journal is usable for resuming when it tiles a known length and a validator guards it.
fn usable_journal(resource: &Resource, journal: &[SegmentRow]) -> Option<Ranged> {
    let total = resource.total?;
    resource.validator.as_ref()?;
    if journal.is_empty() {
        return None;
    }
    let map = RangeMap::from_rows(total, journal)?;
    let seen = Identity::of_validator(resource.validator.as_ref());
    Some(Ranged { total, validator: resource.validator.clone(), map, saved: true, served_by: None, seen })
}

/// Marks each lease's segment as fetched by the OS; returns the ids of the leases that match no
/// segment of their own (stale: the caller releases them).
fn place_leases(map: &mut RangeMap, leases: &[LiveLease]) -> Vec<String> {
    leases.iter().filter(|l| !map.set_external(l.start, l.end, &l.id)).map(|l| l.id.clone()).collect()
}

fn max_written(journal: &[SegmentRow]) -> u64 {
    journal.iter().filter(|r| r.written > r.start).map(|r| r.written).max().unwrap_or(0)
}
