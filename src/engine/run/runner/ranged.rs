//! A ranged download: its connections, how many, and where each one starts.

use super::*;

impl Run {
    /// Drives the connections of a ranged download until the map is complete.
    pub(super) async fn transfer_ranged(&mut self, r: Ranged, probe: Option<Response>) -> Result<Done, Step> {
        let Ranged { total, validator, mut map, saved, served_by, seen } = r;
        self.task.live.total.store(total, Ordering::Relaxed);
        if total == 0 || map.is_complete() {
            return Ok(Done { total, hashed: None });
        }
        self.ensure_room(total, total - map.written_bytes())?;
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
        if let Some(run) = self.task.inner.lock().run.as_mut() {
            run.ranges = Some(shared.clone());
        }
        if !shared.map.lock().has_engine_work() {
            // Everything left is leased to the OS: nothing for a connection to do.
            return self.end_transfer(&shared, Err(Step::HandedOff)).await;
        }
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
            throttle: self.env.throttle(&self.task),
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
                        if !shared.map.lock().has_engine_work() {
                            break Err(Step::HandedOff);
                        }
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
    pub(super) async fn transfer_alone(
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

    /// Starts connections until `target` run, claiming idle segments or splitting the largest.
    pub(super) fn spawn_more(&mut self, ctx: &Arc<ConnContext>, workers: &mut JoinSet<WorkerExit>, target: u32) -> Result<(), Step> {
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
    pub(super) fn split(&self, ctx: &ConnContext) -> Result<Option<u64>> {
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
    pub(super) fn shed(&self, ctx: &ConnContext, running: usize, keep: u32) {
        let mut map = ctx.shared.map.lock();
        for _ in (keep as usize)..running {
            if map.retire_largest().is_none() {
                break;
            }
        }
    }
}
