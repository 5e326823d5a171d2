//! Handing tasks to the OS: their runners stop at a write boundary with the journal synced, and
//! every byte still to fetch is leased, in chunks, in the same transaction that gives each lease
//! its own segment of the journal.

use super::*;
use crate::engine::handoff::plan::{plan, remainders, share};
use crate::engine::handoff::request::{headers_for, os_tag, OsRequest};
use crate::engine::ranges::map::{RangeMap, SegmentRow};
use crate::engine::storage::store::{lease_tx, tx, LeaseRow};
use std::time::Duration;

/// How a hand-off cuts and bounds its leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffOptions {
    /// Largest lease (32 MiB: a killed app loses at most the chunks in flight).
    pub chunk_bytes: u64,
    /// Most live leases per task.
    pub max_leases_per_task: u32,
    /// Most live leases in all (tasks past it are not handed off).
    pub max_leases: u32,
    /// How long running transfers may take to stop.
    pub stop_timeout: Duration,
}

impl Default for HandoffOptions {
    fn default() -> Self {
        HandoffOptions { chunk_bytes: 32 << 20, max_leases_per_task: 64, max_leases: 512, stop_timeout: Duration::from_secs(5) }
    }
}

impl HandoffOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_bytes == 0 || self.max_leases_per_task == 0 || self.max_leases == 0 {
            return Err(Error::new(ErrorCode::InvalidConfig, "chunk size and lease caps must be positive"));
        }
        Ok(())
    }
}

/// What a hand-off did.
#[derive(Debug, Default)]
pub struct HandoffReport {
    /// Every new lease, for the platform to give to the OS (all at once: iOS rate-limits tasks
    /// created later, on wakes).
    pub requests: Vec<OsRequest>,
    /// Tasks not handed off, and why (not found, not a file, not running or queued, did not stop
    /// in time, over the lease budget).
    pub skipped: Vec<(String, Error)>,
}

impl Manager {
    /// Hands the given tasks (`None`: every queued or running file task) to the OS: stops their
    /// transfers, syncs and journals them, and leases every byte still to fetch. The tasks stay
    /// `running`; the OS's chunks come back through [`Manager::ingest`].
    pub async fn hand_off(&self, ids: Option<Vec<String>>, options: HandoffOptions) -> Result<HandoffReport> {
        options.validate()?;
        self.inner.hand_off(ids, options).await
    }

    /// The live leases, as requests (to give the OS again what it lost track of).
    pub fn live_leases(&self) -> Vec<OsRequest> {
        let tasks: Vec<Arc<TaskEntry>> = self.inner.tasks.read().values().cloned().collect();
        let mut out = Vec::new();
        for e in tasks {
            let g = e.inner.lock();
            for l in &g.leases {
                out.push(request_for(&e, &g, l.id.clone(), l.start, l.end, l.whole));
            }
        }
        out
    }
}

/// The request for one lease of a task.
pub(super) fn request_for(e: &TaskEntry, g: &EntryInner, lease_id: String, start: u64, end: u64, whole: bool) -> OsRequest {
    let resource = &g.resource;
    let (url, own) = e.target(&g.access);
    let headers = if whole { headers_for(own, None, None) } else { headers_for(own, Some((start, end)), resource.validator.as_ref()) };
    OsRequest {
        os_tag: os_tag(&lease_id),
        lease_id,
        task_id: e.spec.id.as_str().to_string(),
        url: url.to_string(),
        headers,
        start,
        end,
        total: resource.total,
        whole,
    }
}

/// A task ready to lease: its facts, taken once its runner is gone.
pub(super) struct Candidate {
    entry: Arc<TaskEntry>,
    /// The length and the ranges no live lease holds, for a download that can be ranged (a known
    /// length, a strong validator, a journal); `None` for one whole-file lease.
    ranged: Option<(u64, Vec<(u64, u64)>)>,
    /// Bytes left to lease (0: nothing to lease).
    pub(super) weight: u64,
}

impl Inner {
    async fn hand_off(self: &Arc<Self>, ids: Option<Vec<String>>, options: HandoffOptions) -> Result<HandoffReport> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(Self::shutting_down_error());
        }
        let mut report = HandoffReport::default();
        let mut chosen: Vec<Arc<TaskEntry>> = Vec::new();
        {
            let mut s = self.sched.lock();
            let wanted: Vec<Result<Arc<TaskEntry>>> = match ids {
                Some(ids) => ids.iter().map(|id| self.entry(id)).collect(),
                None => {
                    let tasks = self.tasks.read();
                    let mut all: Vec<Arc<TaskEntry>> = tasks.values().filter(|e| e.persisted && e.state().is_active()).cloned().collect();
                    all.sort_by_key(|e| (std::cmp::Reverse(e.inner.lock().priority), e.seq));
                    all.into_iter().map(Ok).collect()
                }
            };
            for w in wanted {
                let e = match w {
                    Ok(e) => e,
                    Err(err) => {
                        report.skipped.push((String::new(), err));
                        continue;
                    }
                };
                let state = e.state();
                if !e.persisted {
                    report
                        .skipped
                        .push((e.spec.id.to_string(), Error::new(ErrorCode::InvalidState, "only file downloads can be handed off")));
                    continue;
                }
                if !state.is_active() {
                    report.skipped.push((e.spec.id.to_string(), Error::new(ErrorCode::InvalidState, format!("the task is {state}"))));
                    continue;
                }
                if let Some(stored) = e.spec.output.unresolved() {
                    report.skipped.push((e.spec.id.to_string(), unknown_root(stored)));
                    continue;
                }
                s.ready.remove(&e.spec.id);
                let mut g = e.inner.lock();
                g.handing_off = true;
                if let Some(run) = g.run.as_mut() {
                    if run.reason.is_none() {
                        run.reason = Some(StopReason::Handoff);
                    }
                    run.stop.cancel();
                }
                drop(g);
                chosen.push(e);
            }
        }
        let stopped = self.wait_stopped(chosen, options.stop_timeout, &mut report).await;
        let candidates: Vec<Candidate> = stopped.into_iter().map(|e| self.candidate(e)).collect();
        let live: usize = self.tasks.read().values().map(|e| e.inner.lock().leases.len()).sum();
        let budget = (options.max_leases as usize).saturating_sub(live);
        let needy: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].weight > 0).collect();
        let shares = share(budget, options.max_leases_per_task as usize, &needy.iter().map(|&i| candidates[i].weight).collect::<Vec<_>>());
        let mut allowed = vec![0usize; candidates.len()];
        for (k, &i) in needy.iter().enumerate() {
            allowed[i] = shares[k];
        }
        for (c, max) in candidates.into_iter().zip(allowed) {
            let id = c.entry.spec.id.to_string();
            let result = if c.weight == 0 {
                Ok(Vec::new())
            } else if max == 0 {
                Err(Error::new(ErrorCode::InvalidState, "over the hand-off's lease budget"))
            } else {
                self.lease(&c, options.chunk_bytes, max)
            };
            c.entry.inner.lock().handing_off = false;
            match result {
                Ok(requests) => report.requests.extend(requests),
                Err(e) => {
                    report.skipped.push((id, e));
                    self.requeue_if_idle(&c.entry);
                }
            }
        }
        self.dispatch();
        Ok(report)
    }

    /// Waits until the runners of `chosen` are gone; the ones still running at the deadline are
    /// reported and left to requeue themselves when they do stop.
    async fn wait_stopped(&self, chosen: Vec<Arc<TaskEntry>>, timeout: Duration, report: &mut HandoffReport) -> Vec<Arc<TaskEntry>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let running = chosen.iter().filter(|e| e.inner.lock().run.is_some()).count();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut stopped = Vec::with_capacity(chosen.len());
        for e in chosen {
            let mut g = e.inner.lock();
            if g.run.is_none() {
                drop(g);
                stopped.push(e);
            } else {
                // Its runner requeues the task when it exits (see `on_exit`).
                g.handing_off = false;
                drop(g);
                report.skipped.push((e.spec.id.to_string(), Error::new(ErrorCode::Timeout, "the transfer did not stop in time")));
            }
        }
        stopped
    }

    /// What a task without a runner has left to lease.
    pub(super) fn candidate(&self, e: Arc<TaskEntry>) -> Candidate {
        let g = e.inner.lock();
        let leased = |start: u64| g.leases.iter().any(|l| l.start == start);
        let ranged = match (g.resource.total, &g.resource.validator) {
            (Some(total), Some(_)) if !g.journal.is_empty() => Some((total, remainders(&g.journal, leased))),
            _ => None,
        };
        let weight = match &ranged {
            Some((_, rest)) => rest.iter().map(|(a, b)| b - a).sum(),
            None if g.leases.is_empty() => g.resource.total.unwrap_or(1).max(1),
            None => 0,
        };
        drop(g);
        Candidate { entry: e, ranged, weight }
    }

    /// Leases what `c` has left, at most `max` leases; persists them with the journal layout that
    /// gives each its segment, and marks the task running.
    pub(super) fn lease(&self, c: &Candidate, chunk: u64, max: usize) -> Result<Vec<OsRequest>> {
        let e = &c.entry;
        let id = e.spec.id.as_str();
        let mut g = e.inner.lock();
        let mut conn = self.env.store.lock();
        if !g.state.is_active() {
            return Err(Error::new(ErrorCode::InvalidState, format!("the task is {}", g.state)));
        }
        let now = now_ms();
        let t = conn.transaction()?;
        let (pieces, rows, whole) = match &c.ranged {
            Some((total, rest)) => {
                let pieces = plan(rest, chunk, max);
                let mut map =
                    RangeMap::from_rows(*total, &g.journal).ok_or_else(|| Error::internal("the journal does not tile the resource"))?;
                for l in &g.leases {
                    map.set_external(l.start, l.end, &l.id);
                }
                let ids = lease_tx::new_ids(&t, pieces.len())?;
                for (&(a, b), lease) in pieces.iter().zip(&ids) {
                    if !map.lease(a, b, lease) {
                        return Err(Error::internal(format!("could not lease bytes {a}-{b}")));
                    }
                }
                let rows: Vec<SegmentRow> = map.rows();
                (pieces.into_iter().zip(ids).collect::<Vec<_>>(), rows, false)
            }
            None => {
                let end = g.resource.total.unwrap_or(u64::MAX);
                let ids = lease_tx::new_ids(&t, 1)?;
                (vec![((0, end), ids[0].clone())], Vec::new(), true)
            }
        };
        let (etag, lm) = Validator::to_columns(&g.resource.validator);
        tx::set_resource(&t, id, g.resource.total, etag.as_deref(), lm.as_deref(), &rows)?;
        tx::set_part_file(&t, id, g.part_file.as_deref())?;
        for ((a, b), lease) in &pieces {
            lease_tx::insert(
                &t,
                &LeaseRow {
                    id: lease.clone(),
                    task_id: id.to_string(),
                    start: *a,
                    end: *b,
                    whole,
                    state: LeaseState::Live,
                    created_ms: now,
                },
            )?;
        }
        t.execute("UPDATE tasks SET state = ?2, updated_ms = ?3 WHERE id = ?1", rusqlite::params![id, TaskState::Running.as_i64(), now])?;
        t.commit()?;
        drop(conn);
        let written: u64 = rows.iter().map(|r| r.written - r.start).sum();
        g.journal = rows;
        let at = Instant::now();
        for ((a, b), lease) in &pieces {
            g.leases.push(LiveLease { id: lease.clone(), start: *a, end: *b, whole, os_bytes: 0, last_progress: at });
        }
        e.live.bytes.store(written, Ordering::Relaxed);
        self.leased.store(true, Ordering::Release);
        let requests = pieces.into_iter().map(|((a, b), lease)| request_for(e, &g, lease, a, b, whole)).collect();
        let queued = g.state == TaskState::Queued;
        g.dormant = false;
        drop(g);
        if queued {
            let _ = self.transition_with(e, Transition::Start, None, false);
        }
        Ok(requests)
    }

    /// A task with bytes nobody fetches goes back to the queue: a running one with no runner and
    /// ranges no live lease holds, or a queued one a hand-off took out of the queue and then did
    /// not lease. The runner fetches what is not leased, and leaves the rest to the OS.
    pub(super) fn requeue_if_idle(&self, e: &TaskEntry) {
        if e.spec.output.unresolved().is_some() {
            return;
        }
        let (state, idle) = {
            let g = e.inner.lock();
            (g.state, g.run.is_none() && engine_work(&g) && !g.handing_off && !g.dormant)
        };
        if !idle {
            return;
        }
        let requeue = match state {
            TaskState::Running => self.transition(e, Transition::Recover, None).is_ok(),
            TaskState::Queued => true,
            _ => false,
        };
        if requeue && !self.shutting_down.load(Ordering::Acquire) {
            let priority = e.inner.lock().priority;
            let mut s = self.sched.lock();
            if !s.ready.contains(&e.spec.id) {
                s.ready.push(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
            }
        }
    }
}

/// Whether the engine has something to fetch for a task: no lease at all, or a range no live
/// lease holds (a whole-file lease holds everything).
pub(super) fn engine_work(g: &EntryInner) -> bool {
    if g.leases.is_empty() {
        return true;
    }
    if g.leases.iter().any(|l| l.whole) {
        return false;
    }
    !remainders(&g.journal, |start| g.leases.iter().any(|l| l.start == start)).is_empty()
}
