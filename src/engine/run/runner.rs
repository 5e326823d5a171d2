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
use super::scheduler::{HostSlots, Slot};
use super::sink::{FileSink, MemorySink, Sink, StreamSink};
use super::table::{FlushSignal, Resource, StopReason, TaskEntry, UNKNOWN};
use crate::engine::http::transport::{Get, Response, Transport};
use crate::engine::http::verdict::{judge_probe, Identity, Probe, Validator};
use crate::engine::model::config::Config;
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
}

enum Step {
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
                    _ => {
                        if !journal.is_empty() {
                            // The journal describes bytes this part file does not hold (gone,
                            // shorter, longer, or another file): forget it before anything is
                            // written, so that no later open trusts it either.
                            task.forget_resource(&env.store)?;
                        }
                        let stale_possible = !task.no_part_yet.swap(false, Ordering::Relaxed);
                        PartFile::create_fresh(&path, stale_possible).map_err(|e| missing_dir(e, dest))?
                    }
                };
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
        loop {
            let step = match self.resume.take() {
                Some(r) => Box::pin(self.transfer_ranged(r, None)).await,
                None => Box::pin(self.fresh()).await,
            };
            let err = match step {
                Ok(done) => return self.finish(done).await,
                Err(Step::Stopped) => return Outcome::Stopped,
                Err(Step::Fail(e)) => return self.fail(e),
                Err(Step::Retry(e)) => match self.backoff(e).await {
                    Ok(()) => None,
                    Err(Step::Stopped) => return Outcome::Stopped,
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
        self.task.forget_resource(&self.env.store)
    }

    async fn backoff(&mut self, e: Error) -> Result<(), Step> {
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

    /// Refuses a download the destination's file system could never hold: `needed` more bytes.
    fn ensure_room(&self, needed: u64) -> Result<(), Step> {
        match &self.part {
            Some(part) => part.ensure_room(needed).map_err(Step::Fail),
            None => Ok(()),
        }
    }

    /// Probes the resource and transfers it from zero.
    async fn fresh(&mut self) -> Result<Done, Step> {
        loop {
            let asked_range = !self.plain_only;
            let get =
                Get { url: &self.task.spec.url, headers: &self.task.spec.headers, range: asked_range.then_some((0, None)), if_range: None };
            let asked_at = Instant::now();
            let resp = match self.get(get).await {
                Ok(r) => r,
                Err(Step::Retry(e)) => {
                    self.backoff(e).await?;
                    continue;
                }
                Err(other) => return Err(other),
            };
            self.probe_latency = Some(asked_at.elapsed());
            let probe = match judge_probe(&resp.head, asked_range) {
                Ok(p) => p,
                Err(e) if e.is_retryable() => {
                    self.backoff(e).await?;
                    continue;
                }
                Err(e) => return Err(Step::Fail(e)),
            };
            match probe {
                Probe::RetryWithoutRange => {
                    self.plain_only = true;
                    continue;
                }
                Probe::Empty => {
                    self.task.live.total.store(0, Ordering::Relaxed);
                    return Ok(Done { total: 0, hashed: None });
                }
                Probe::Ranged { total, body_end, validator } => {
                    self.check_memory_limit(Some(total))?;
                    let pieces = if body_end < total {
                        vec![(0, body_end), (body_end, total)]
                    } else {
                        match self.connection_mode() {
                            ConnectionMode::Fixed(n) => plan(total, n, self.config.min_split_bytes),
                            ConnectionMode::Auto(_) => plan(total, 1, 1),
                        }
                    };
                    let map = RangeMap::from_plan(total, &pieces);
                    self.record_resource(Some(total), validator.clone(), Some(&map));
                    let served_by = Some(resp.url.clone());
                    let seen = Identity::of(&resp.head);
                    return Box::pin(self.transfer_ranged(Ranged { total, validator, map, saved: false, served_by, seen }, Some(resp)))
                        .await;
                }
                Probe::Whole { total, .. } => {
                    self.check_memory_limit(total)?;
                    self.record_resource(total, None, None);
                    return Box::pin(self.transfer_whole(resp, total)).await;
                }
            }
        }
    }

    /// Remembers what the probe learned (in memory; the journal writes it with the first progress).
    fn record_resource(&self, total: Option<u64>, validator: Option<Validator>, map: Option<&RangeMap>) {
        self.task.live.total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        let rows = map.map(RangeMap::rows).unwrap_or_default();
        let mut g = self.task.inner.lock();
        g.resource = Resource { total, validator };
        g.journal = rows;
    }

    fn hasher(&self, from_zero: bool) -> Option<(Sha256, u64)> {
        (self.task.spec.sha256.is_some() && from_zero).then(|| (Sha256::new(), 0))
    }

    /// One plain stream from offset zero (no range support, or unknown length).
    async fn transfer_whole(&mut self, mut resp: Response, total: Option<u64>) -> Result<Done, Step> {
        self.ensure_room(total.unwrap_or(0))?;
        let mut hashed = self.hasher(true);
        let mut at = 0u64;
        let mut bufs = Vec::new();
        let mut pending = 0u64;
        let task = self.task.clone();
        let _streaming = task.live.gauge();
        loop {
            let next = tokio::select! {
                c = resp.chunk() => c,
                _ = self.stop.cancelled() => return Err(Step::Stopped),
                // A plain stream cannot resume, so there is nothing worth syncing.
                _ = self.flush.request.notified() => { self.flush.completed(); continue; }
            };
            let (chunk, end) = match next {
                Ok(Some(c)) => (Some(c), false),
                Ok(None) => (None, true),
                Err(e) => {
                    self.write_plain(&mut at, &mut bufs, &mut pending, &mut hashed)?;
                    return Err(Step::Retry(e));
                }
            };
            if let Some(c) = chunk {
                pending += c.len() as u64;
                bufs.push(c);
            }
            if pending >= connection::FLUSH_BYTES || end {
                self.write_plain(&mut at, &mut bufs, &mut pending, &mut hashed)?;
            }
            if end {
                if let Some(t) = total {
                    if at != t {
                        return Err(Step::Retry(Error::new(ErrorCode::TruncatedBody, format!("body ended after {at} of {t} bytes"))));
                    }
                }
                self.task.live.total.store(at, Ordering::Relaxed);
                return Ok(Done { total: at, hashed });
            }
        }
    }

    fn write_plain(
        &mut self,
        at: &mut u64,
        bufs: &mut Vec<bytes::Bytes>,
        pending: &mut u64,
        hashed: &mut Option<(Sha256, u64)>,
    ) -> Result<(), Step> {
        if *pending == 0 {
            return Ok(());
        }
        self.sink.write(*at, bufs)?;
        if let Some((h, upto)) = hashed.as_mut() {
            bufs.iter().for_each(|b| h.update(b));
            *upto += *pending;
        }
        *at += *pending;
        self.task.live.bytes.store(*at, Ordering::Relaxed);
        if *at > self.plain_high_water {
            // Bytes no earlier attempt delivered: real progress. Refetching the same prefix is not,
            // or a server that always breaks off at the same offset would be retried forever.
            self.plain_high_water = *at;
            self.budget.refill();
            self.attempt = 0;
        }
        bufs.clear();
        *pending = 0;
        Ok(())
    }

    /// Drives the connections of a ranged download until the map is complete.
    async fn transfer_ranged(&mut self, r: Ranged, probe: Option<Response>) -> Result<Done, Step> {
        let Ranged { total, validator, mut map, saved, served_by, seen } = r;
        self.task.live.total.store(total, Ordering::Relaxed);
        if total == 0 || map.is_complete() {
            return Ok(Done { total, hashed: None });
        }
        self.ensure_room(total - map.written_bytes())?;
        let first = probe.inspect(|_| {
            map.claim(0);
        });
        let from_zero = map.written_bytes() == 0;
        let (etag, lm) = Validator::to_columns(&validator);
        let shared = Arc::new(RunShared {
            id: self.task.spec.id.as_str().to_string(),
            persisted: self.task.persisted,
            resource: (total, etag, lm),
            part_file: self.part_identity.clone(),
            layout_saved: AtomicBool::new(saved),
            closed: AtomicBool::new(false),
            map: parking_lot::Mutex::new(map),
            pending: AtomicBool::new(false),
            hasher: parking_lot::Mutex::new(self.hasher(from_zero)),
            fetched: AtomicU64::new(0),
            started: Instant::now(),
        });
        let ctx = Arc::new(ConnContext {
            transport: self.env.transport.clone(),
            task: self.task.clone(),
            shared: shared.clone(),
            sink: self.sink.clone(),
            journal: self.task.persisted.then(|| self.env.journal.clone()),
            total,
            validator,
            served_by,
            seen,
            policy: self.config.retry,
            budget: self.budget.clone(),
            stop: self.stop.clone(),
        });
        let mut sync_tick = tokio::time::interval_at(tokio::time::Instant::now() + self.config.sync_interval, self.config.sync_interval);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.run_started = Instant::now();
        // One segment that no split could ever share (see `split`): the probe's connection does all
        // of it, on this task. Spawning it and watching it from a control loop would cost small
        // files a task, two timers and a wake-up each.
        let alone = shared.map.lock().segments().len() == 1 && total < 2 * self.config.min_split_bytes;
        let mut first = first;
        if alone {
            if let Some(resp) = first.take() {
                // `None`: the segment ended short of the map; the usual loop takes over.
                if let Some(result) = Box::pin(self.transfer_alone(&ctx, &shared, resp, &mut sync_tick)).await {
                    return self.end_transfer(&shared, result).await;
                }
            }
        }
        let mut workers: JoinSet<WorkerExit> = JoinSet::new();
        if let Some(resp) = first {
            let slot = self.slots.pop().expect("a run always holds its base slot");
            workers.spawn(Box::pin(connection::run(ctx.clone(), 0, Some(resp), slot)));
        }
        // Measure growth over a few round trips: long enough to see new connections at speed, short
        // enough not to waste the start of a transfer on a fast, local link.
        let tuning = ControllerTuning {
            window: (self.probe_latency.unwrap_or(Duration::from_millis(50)) * 3).clamp(Duration::from_millis(100), Duration::from_secs(1)),
            ..ControllerTuning::default()
        };
        let mut controller = Controller::new(self.connection_mode(), tuning, self.run_started, 0);
        self.spawn_more(&ctx, &mut workers, controller.target())?;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result: Result<(), Step> = loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => break Err(Step::Stopped),
                joined = workers.join_next(), if !workers.is_empty() => {
                    let exit = match joined {
                        Some(Ok(exit)) => exit,
                        Some(Err(e)) if e.is_panic() => break Err(Step::Fail(Error::internal("a connection panicked"))),
                        _ => continue,
                    };
                    let WorkerExit { segment, slot, result } = exit;
                    shared.map.lock().release(segment);
                    self.slots.push(slot);
                    self.slots.truncate(1);
                    match result {
                        WorkerResult::Done => {}
                        WorkerResult::Surplus => {
                            if controller.turned_away() {
                                tracing::debug!(task = %self.task.spec.id, "the server allows {} connections", controller.target());
                            }
                        }
                        WorkerResult::Restart { code, reason } => break Err(Step::Restart { code, reason }),
                        WorkerResult::Fail(e) => break Err(Step::Fail(e)),
                    }
                    if shared.map.lock().is_complete() {
                        if workers.is_empty() {
                            break Ok(());
                        }
                        continue;
                    }
                    if let Err(e) = self.spawn_more(&ctx, &mut workers, controller.target()) {
                        break Err(e);
                    }
                    if workers.is_empty() {
                        break Err(Step::Fail(Error::internal("no connection could be started")));
                    }
                }
                _ = tick.tick() => {
                    let remaining = total - shared.map.lock().written_bytes();
                    let streaming = self.task.live.connections.load(Ordering::Relaxed);
                    let before = controller.target();
                    let target = controller.sample(Instant::now(), shared.fetched.load(Ordering::Relaxed), remaining, streaming);
                    if target != before {
                        tracing::debug!(task = %self.task.spec.id, "connections: {before} -> {target} after {:?}", self.run_started.elapsed());
                        if std::env::var_os("FERRY_TRACE").is_some() {
                            eprintln!("[{:>6} ms] connections {before} -> {target}, fetched {} MB", self.run_started.elapsed().as_millis(), shared.fetched.load(Ordering::Relaxed) >> 20);
                        }
                    }
                    if (workers.len() as u32) < target {
                        if let Err(e) = self.spawn_more(&ctx, &mut workers, target) {
                            break Err(e);
                        }
                    } else if target < before {
                        self.shed(&ctx, workers.len(), target);
                    }
                }
                _ = sync_tick.tick(), if self.part.is_some() => {
                    if let Err(e) = self.sync_durable(&shared).await {
                        break Err(Step::Fail(e));
                    }
                }
                _ = self.flush.request.notified() => {
                    if let Err(e) = self.sync_durable(&shared).await {
                        break Err(Step::Fail(e));
                    }
                    self.flush.completed();
                }
            }
        };
        workers.abort_all();
        while let Some(joined) = workers.join_next().await {
            if let Ok(exit) = joined {
                shared.map.lock().release(exit.segment);
            }
        }
        self.end_transfer(&shared, result).await
    }

    /// Streams the probe's answer on this task until the segment is done, the run stops or fails.
    /// `None` when the connection ended cleanly with part of the map still to do.
    async fn transfer_alone(
        &mut self,
        ctx: &Arc<ConnContext>,
        shared: &Arc<RunShared>,
        resp: Response,
        sync_tick: &mut tokio::time::Interval,
    ) -> Option<Result<(), Step>> {
        let slot = self.slots.pop().expect("a run always holds its base slot");
        let conn = connection::run(ctx.clone(), 0, Some(resp), slot);
        tokio::pin!(conn);
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Some(Err(Step::Stopped)),
                exit = &mut conn => {
                    let WorkerExit { segment, slot, result } = exit;
                    shared.map.lock().release(segment);
                    self.slots.push(slot);
                    self.slots.truncate(1);
                    return match result {
                        WorkerResult::Done if shared.map.lock().is_complete() => Some(Ok(())),
                        WorkerResult::Done | WorkerResult::Surplus => None,
                        WorkerResult::Restart { code, reason } => Some(Err(Step::Restart { code, reason })),
                        WorkerResult::Fail(e) => Some(Err(Step::Fail(e))),
                    };
                }
                _ = sync_tick.tick(), if self.part.is_some() => {
                    if let Err(e) = self.sync_durable(shared).await {
                        return Some(Err(Step::Fail(e)));
                    }
                }
                _ = self.flush.request.notified() => {
                    if let Err(e) = self.sync_durable(shared).await {
                        return Some(Err(Step::Fail(e)));
                    }
                    self.flush.completed();
                }
            }
        }
    }

    /// What every transfer does once its connections are gone: keep the journal in memory, settle
    /// it in the table, and close the run to late journal commits.
    async fn end_transfer(&mut self, shared: &Arc<RunShared>, result: Result<(), Step>) -> Result<Done, Step> {
        self.slots.truncate(1);
        let rows = shared.map.lock().rows();
        self.task.inner.lock().journal = rows;
        let result = self.settle_journal(shared, result).await;
        shared.closed.store(true, Ordering::Release);
        result
    }

    /// Final journal writes of a run: sync and record everything on a stop, record on a failure.
    async fn settle_journal(&self, shared: &Arc<RunShared>, result: Result<(), Step>) -> Result<Done, Step> {
        let total = shared.resource.0;
        match result {
            Ok(()) => {
                let hashed = shared.hasher.lock().take();
                Ok(Done { total, hashed })
            }
            Err(Step::Stopped) => {
                let cancelled = self.task.inner.lock().run.as_ref().and_then(|r| r.reason) == Some(StopReason::Cancel);
                if !cancelled {
                    self.sync_durable(shared).await?;
                }
                Err(Step::Stopped)
            }
            Err(Step::Fail(e)) => {
                self.save_journal(shared)?;
                Err(Step::Fail(e))
            }
            Err(other) => Err(other),
        }
    }

    /// Starts connections until `target` run, claiming idle segments or splitting the largest.
    fn spawn_more(&mut self, ctx: &Arc<ConnContext>, workers: &mut JoinSet<WorkerExit>, target: u32) -> Result<(), Step> {
        while (workers.len() as u32) < target {
            let slot = match self.slots.pop() {
                Some(s) => s,
                None => match self.env.hosts.try_acquire(&self.host) {
                    Some(s) => s,
                    None => break,
                },
            };
            let claimed = ctx.shared.map.lock().claim_idle();
            let segment = match claimed {
                Some(s) => Some(s),
                None => self.split(ctx)?,
            };
            let Some(segment) = segment else {
                self.slots.push(slot);
                break;
            };
            workers.spawn(Box::pin(connection::run(ctx.clone(), segment, None, slot)));
        }
        Ok(())
    }

    /// Splits the largest remaining range for a new connection, if that can pay: the remainder must
    /// hold at least two minimum splits and take a connection at least [`SPLIT_MIN_TIME`] at the
    /// current per-connection rate (splitting a fast tail only wastes the bytes in flight).
    fn split(&self, ctx: &ConnContext) -> Result<Option<u64>> {
        let elapsed = self.run_started.elapsed().as_secs_f64();
        let streaming = f64::from(self.task.live.connections.load(Ordering::Relaxed).max(1));
        let fetched = ctx.shared.fetched.load(Ordering::Relaxed);
        let per_connection = fetched as f64 / elapsed.max(1e-3) / streaming;
        let worth = (per_connection * SPLIT_MIN_TIME.as_secs_f64()) as u64;
        let min_split = self.config.min_split_bytes.max(worth / 2);
        if !self.task.persisted {
            return Ok(ctx.shared.map.lock().split_largest(min_split));
        }
        let mut conn = self.env.store.lock();
        let (upper, lower_start) = {
            let mut m = ctx.shared.map.lock();
            let Some(upper) = m.split_largest(min_split) else { return Ok(None) };
            let lower = m.segments().iter().rev().find(|s| s.start < upper).map(|s| s.start).unwrap_or(0);
            let row = m.segment(upper).map(|s| SegmentRow { start: s.start, end: s.end, written: s.written, durable: s.durable });
            (row, lower)
        };
        let Some(upper) = upper else { return Ok(None) };
        if !ctx.shared.layout_saved.load(Ordering::Acquire) {
            // Not in the table yet: the first journal commit writes the whole layout.
            return Ok(Some(upper.start));
        }
        let t = conn.transaction()?;
        tx::split(&t, self.task.spec.id.as_str(), lower_start, &upper)?;
        t.commit()?;
        Ok(Some(upper.start))
    }

    /// Ends connections until at most `keep` remain: each one asked to end writes nothing more, and
    /// its range waits, idle, for a connection that stays.
    fn shed(&self, ctx: &ConnContext, running: usize, keep: u32) {
        let mut map = ctx.shared.map.lock();
        for _ in (keep as usize)..running {
            if map.retire_largest().is_none() {
                break;
            }
        }
    }

    /// Writes the whole journal now (layout included if it was never written).
    fn save_journal(&self, shared: &RunShared) -> Result<()> {
        if !self.task.persisted {
            return Ok(());
        }
        if let Some(part) = &self.part {
            part.ensure_named()?;
        }
        let mut conn = self.env.store.lock();
        let t = conn.transaction()?;
        shared.persist(&t, true, None)?;
        t.commit()?;
        Ok(())
    }

    /// Syncs the part file, then records the offsets written before the sync as durable.
    async fn sync_durable(&self, shared: &Arc<RunShared>) -> Result<()> {
        let Some(part) = self.part.clone() else { return Ok(()) };
        part.ensure_named()?;
        let snapshot = shared.map.lock().rows();
        tokio::task::spawn_blocking(move || part.sync_durably()).await.map_err(|_| Error::internal("sync task failed"))??;
        shared.map.lock().mark_durable(&snapshot);
        if self.task.persisted {
            let durable: Vec<SegmentRow> = snapshot.iter().map(|r| SegmentRow { durable: r.written, ..*r }).collect();
            let mut conn = self.env.store.lock();
            let t = conn.transaction()?;
            shared.persist(&t, true, Some(&durable))?;
            t.commit()?;
        }
        let rows = shared.map.lock().rows();
        self.task.inner.lock().journal = rows;
        Ok(())
    }

    async fn finish(&mut self, done: Done) -> Outcome {
        // The network part is over: give the connection slots back and let the next task start.
        self.slots.clear();
        if let Some(f) = self.transferred.take() {
            f();
        }
        match &self.task.spec.output {
            Output::File(dest) => {
                let part = self.part.take().expect("file runs have a part file");
                let dest = dest.clone();
                let expecting = self.expecting.take();
                match self.publish(part, dest, done, expecting).await {
                    Ok((bytes, recorded)) => {
                        self.task.inner.lock().journal.clear();
                        Outcome::Completed { bytes, recorded }
                    }
                    Err(e) => self.fail(e),
                }
            }
            Output::Memory { .. } => {
                let bytes = self.memory.as_ref().map(|m| m.take()).unwrap_or_default();
                let n = bytes.len() as u64;
                self.task.inner.lock().memory = Some(bytes);
                Outcome::Completed { bytes: n, recorded: false }
            }
            Output::Stream(_) => Outcome::Completed { bytes: done.total, recorded: false },
        }
    }

    /// Verifies and publishes the part file. Small files go through the group commit of
    /// [`publisher`]; large ones (and checksum work) run on a blocking thread of their own.
    /// Returns the size and whether the completion is already recorded in the task table.
    async fn publish(
        &self,
        part: Arc<PartFile>,
        dest: std::path::PathBuf,
        done: Done,
        expecting: Option<publisher::Expecting>,
    ) -> Result<(u64, bool)> {
        let sha = self.task.spec.sha256.clone();
        let overwrite = self.task.spec.overwrite;
        let Done { total, hashed } = done;
        let small = total <= publisher::SMALL_FILE;
        let check = {
            let part = part.clone();
            move || {
                part_file::verify(
                    &part,
                    &Publish { destination: &dest, expected_size: Some(total), sha256: sha.as_deref(), hashed, overwrite },
                )
            }
        };
        let dest = self.task.spec.output.path().cloned().expect("file output");
        if small {
            let identity = check()?;
            let len = identity.len;
            let record = self.task.persisted.then(|| publisher::Record {
                store: self.env.store.clone(),
                id: self.task.spec.id.as_str().to_string(),
                bytes: len,
                mark: identity.publish_mark(),
            });
            let recorded = publisher::global().publish(part, dest, overwrite, record, expecting).await?;
            return Ok((len, recorded));
        }
        drop(expecting);
        let mark = self.task.persisted.then(|| (self.env.store.clone(), self.task.spec.id.as_str().to_string()));
        tokio::task::spawn_blocking(move || {
            let identity = check()?;
            part_file::commit(&part, &dest, overwrite, || match &mark {
                Some((store, id)) => {
                    store.mark_publishing(&[(id, &identity.publish_mark())])?;
                    store.sync_wal()
                }
                None => Ok(()),
            })?;
            Ok((identity.len, false))
        })
        .await
        .map_err(|_| Error::internal("publishing failed"))?
    }

    /// Fails the run; a part file with nothing resumable in it is removed.
    fn fail(&mut self, e: Error) -> Outcome {
        if let (Output::File(dest), Some(part)) = (&self.task.spec.output, self.part.take()) {
            let resumable = self.task.inner.lock().journal.iter().any(|r| r.written > r.start);
            // A kept partial needs its name; one that cannot get it is lost like a removed one.
            let kept = resumable && part.ensure_named().is_ok();
            drop(part);
            if !kept {
                let _ = std::fs::remove_file(part_file::part_path(dest));
            }
        }
        Outcome::Failed(e)
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

fn max_written(journal: &[SegmentRow]) -> u64 {
    journal.iter().filter(|r| r.written > r.start).map(|r| r.written).max().unwrap_or(0)
}
