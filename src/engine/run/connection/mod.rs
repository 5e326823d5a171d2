//! One connection of a download: requests its segment, checks the answer, streams the body into
//! the sink ([`pump`]), and retries (resuming at its cursor, the last verified byte) until the
//! segment is done or a failure is final.
//!
//! Retries: transient failures (network, timeouts, 5xx, truncated bodies) on the connection's own
//! budget of fruitless attempts; a protocol violation once, on a fresh connection, then final.

use super::rate::Throttle;
use super::scheduler::Slot;
use super::sink::Sink;
use super::table::TaskEntry;
use crate::engine::http::transport::{Get, Response, Transport};
use crate::engine::http::verdict::{judge_range, Identity, RangeAnswer, Validator};
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::retry::{RetryBudget, RetryPolicy};
use crate::engine::ranges::map::{RangeMap, SegmentRow};
use crate::engine::storage::journal::JournalSource;
use crate::engine::storage::store::tx;
use bytes::Bytes;
use parking_lot::Mutex;
use pump::{pump, PumpEnd};
use rusqlite::Transaction;
use sha2::Sha256;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod pump;
pub mod verified;

pub use pump::{FLUSH_AGE, FLUSH_BYTES, MIN_FLUSH_BYTES};

/// State shared by the connections of one run of a ranged download.
pub struct RunShared {
    /// Task id.
    pub id: String,
    /// Persist the journal (file outputs).
    pub persisted: bool,
    /// Resource length and validator columns (etag, last_modified), written with the layout.
    pub resource: (u64, Option<String>, Option<String>),
    /// Identity of the part file the layout describes, written with it.
    pub part_file: Option<String>,
    /// Whether the task table holds this run's layout yet. A fresh download's layout is written by
    /// the first journal commit, so a small file that finishes within one commit interval never
    /// touches the journal. Read and written only under the store lock.
    pub layout_saved: AtomicBool,
    /// The run is over: late journal commits must not write anything (the task may be completed,
    /// restarted or removed by now).
    pub closed: AtomicBool,
    /// The range map.
    pub map: Mutex<RangeMap>,
    /// Journal already rung and not yet served.
    pub pending: AtomicBool,
    /// In-order SHA-256 of `[0, n)`, when the caller asked for a checksum.
    pub hasher: Mutex<Option<(Sha256, u64)>>,
    /// Bytes fetched in this run (for the connection controller).
    pub fetched: AtomicU64,
    /// When the run started. The journal is not rung during the first journal interval: a download
    /// that finishes that fast never needs it, and a kill loses at most that interval either way.
    pub started: Instant,
}

impl std::fmt::Debug for RunShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunShared").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RunShared {
    /// Writes the layout if the table does not hold it yet, then the given durable offsets.
    /// Call under the store lock. Returns whether anything was written.
    pub fn persist(&self, t: &Transaction<'_>, full: bool, durable: Option<&[SegmentRow]>) -> Result<()> {
        if !self.persisted {
            return Ok(());
        }
        let (rows, bytes) = {
            let mut m = self.map.lock();
            let dirty = m.take_dirty();
            let rows = if full || !self.layout_saved.load(Ordering::Acquire) { m.rows() } else { dirty };
            (rows, m.written_bytes())
        };
        if !self.layout_saved.load(Ordering::Acquire) {
            let (total, etag, lm) = &self.resource;
            tx::set_resource(t, &self.id, Some(*total), etag.as_deref(), lm.as_deref(), &rows)?;
            tx::set_part_file(t, &self.id, self.part_file.as_deref())?;
            self.layout_saved.store(true, Ordering::Release);
        } else if !rows.is_empty() {
            tx::write_progress(t, &self.id, &rows)?;
        }
        if let Some(d) = durable {
            tx::write_durable(t, &self.id, d)?;
        }
        tx::set_bytes(t, &self.id, bytes)
    }
}

impl JournalSource for RunShared {
    fn commit(&self, t: &Transaction<'_>) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.persist(t, false, None)
    }

    fn clear_pending(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// What every connection of a run needs.
pub struct ConnContext {
    /// Transport.
    pub transport: Transport,
    /// The task.
    pub task: Arc<TaskEntry>,
    /// Shared run state.
    pub shared: Arc<RunShared>,
    /// Bytes go here.
    pub sink: Arc<dyn Sink>,
    /// Journal, when the task is persisted.
    pub journal: Option<Arc<crate::engine::storage::journal::Journal>>,
    /// Resource length.
    pub total: u64,
    /// Validator for `If-Range`.
    pub validator: Option<Validator>,
    /// The URL (after redirects) that served the probe. Without a validator, it is all that ties
    /// the ranged answers to the probe's resource: an answer from another URL is not trusted.
    pub served_by: Option<url::Url>,
    /// The ETag and Last-Modified of the probe (or the stored validator, on a resume).
    pub seen: Identity,
    /// Retry tuning.
    pub policy: RetryPolicy,
    /// The run's budget for its first request, which every connection's progress refills.
    pub budget: Arc<RetryBudget>,
    /// Cancelled when the run stops.
    pub stop: CancellationToken,
    /// The bandwidth caps the connection answers to.
    pub throttle: Throttle,
}

/// How a connection ended.
#[derive(Debug)]
pub enum WorkerResult {
    /// Its segment is complete (or was taken over by a split).
    Done,
    /// The server turned this extra connection away (see `turned_away`): its segment is left for
    /// the others, and the task aims for one connection fewer.
    Surplus,
    /// The server's answer means the download must start over.
    Restart {
        /// Why.
        code: ErrorCode,
        /// Details.
        reason: String,
    },
    /// A final failure.
    Fail(Error),
}

/// A finished connection, returning its host slot.
#[derive(Debug)]
pub struct WorkerExit {
    /// Segment start.
    pub segment: u64,
    /// The host slot it used.
    pub slot: Slot,
    /// Result.
    pub result: WorkerResult,
}

/// Runs one connection on segment `segment`, starting with `first` when a response is already open.
pub async fn run(ctx: Arc<ConnContext>, segment: u64, first: Option<Response>, slot: Slot) -> WorkerExit {
    let result = work(&ctx, segment, first).await;
    WorkerExit { segment, slot, result }
}

/// Bytes an answer must deliver (or all that was left of its range) for its attempt to count as
/// progress and give the connection its retry budget back: a server that sends a byte or two per
/// answer and closes would otherwise be retried for ever.
const FRUITFUL: u64 = 16 << 10;

/// A connection's retries so far.
#[derive(Debug, Default)]
struct Attempts {
    /// Fruitless attempts in a row (the budget counts these).
    fruitless: u32,
    /// A protocol violation was retried already: the next one is final.
    protocol_retried: bool,
    /// The next request must open a new connection.
    fresh: bool,
}

async fn work(ctx: &ConnContext, segment: u64, mut first: Option<Response>) -> WorkerResult {
    let mut attempts = Attempts::default();
    let mut delivered = first.is_some();
    loop {
        let Some((cursor, end)) = ctx.shared.map.lock().cursor(segment) else { return WorkerResult::Done };
        if cursor >= end {
            return WorkerResult::Done;
        }
        let resp = match first.take() {
            Some(r) => r,
            None => {
                let access = ctx.task.access();
                let (url, headers) = ctx.task.target(&access);
                let get = Get {
                    url,
                    headers,
                    range: Some((cursor, Some(end))),
                    if_range: ctx.validator.as_ref().map(Validator::if_range),
                    fresh: std::mem::take(&mut attempts.fresh),
                };
                let live_before = ctx.task.live.bytes.load(Ordering::Relaxed);
                let answer = match ctx.transport.get(get).await {
                    Err(e) => Err(e),
                    Ok(r) => match judge_range(&r.head, cursor, end, ctx.total, ctx.validator.as_ref(), &ctx.seen) {
                        Ok(RangeAnswer::Accept) if ctx.validator.is_none() && ctx.served_by.as_ref().is_some_and(|u| *u != r.url) => {
                            // A redirect now leads elsewhere, and no validator can prove that the
                            // other server holds the same resource: never stitch the two.
                            return WorkerResult::Restart {
                                code: ErrorCode::ContentChanged,
                                reason: "redirected to another URL than the probe, and no validator proves it serves the same resource"
                                    .into(),
                            };
                        }
                        Ok(RangeAnswer::Accept) => Ok(r),
                        Ok(RangeAnswer::Restart { code, reason }) => return WorkerResult::Restart { code, reason },
                        Err(e) => Err(e),
                    },
                };
                match answer {
                    Ok(r) => r,
                    Err(e) => {
                        if !delivered && turned_away(ctx, &e, live_before) {
                            return WorkerResult::Surplus;
                        }
                        match retry_wait(ctx, e, &mut attempts).await {
                            Ok(()) => continue,
                            Err(e) => return WorkerResult::Fail(e),
                        }
                    }
                }
            }
        };
        let (end_kind, wrote) = pump(ctx, segment, cursor, resp).await;
        delivered |= wrote > 0;
        if fruitful(wrote, end - cursor, &end_kind) {
            attempts.fruitless = 0;
        }
        match end_kind {
            PumpEnd::SegmentFull => return WorkerResult::Done,
            PumpEnd::BodyEnded => {
                let (cursor, end) = ctx.shared.map.lock().cursor(segment).unwrap_or((0, 0));
                if cursor < end {
                    // A clean end of body before the range was complete.
                    let e = Error::new(ErrorCode::TruncatedBody, "server closed the range early");
                    if let Err(e) = retry_wait(ctx, e, &mut attempts).await {
                        return WorkerResult::Fail(e);
                    }
                }
            }
            PumpEnd::Failed(e) => {
                if let Err(e) = retry_wait(ctx, e, &mut attempts).await {
                    return WorkerResult::Fail(e);
                }
            }
            PumpEnd::Restart(e) => return WorkerResult::Restart { code: e.code(), reason: e.message().to_string() },
        }
    }
}

/// Whether an attempt that wrote `wrote` of the `left` bytes of its range was progress: enough
/// bytes, and, when it ended judged slower than the minimum speed, some earlier window of it met
/// the minimum (a trickle that brings 16 KiB an attempt would otherwise be reconnected for ever,
/// where a download that stalls once in a while after running fast starts its budget afresh).
fn fruitful(wrote: u64, left: u64, end: &PumpEnd) -> bool {
    let trickle = matches!(end, PumpEnd::Failed(e) if e.is_a_trickle());
    wrote >= FRUITFUL.min(left) && !trickle
}

/// Whether `e` is a server turning away one connection more than it allows a client. Retrying
/// would only ask again, with backoff, while the others are still open. A
/// refusal is any answer that is no answer: busy or too many requests, a refused connection, one
/// closed or reset before a response (the client has already replaced a pooled connection that
/// was stale, so here it was a new one), each while other connections of the task stream. A request
/// never answered (a timeout) counts when other connections delivered bytes while it waited
/// (`live_before` is the task's byte count when it was sent): the server was serving this client,
/// just not on this connection. A network that stalls stalls them all, and the connection retries.
fn turned_away(ctx: &ConnContext, e: &Error, live_before: u64) -> bool {
    let live = &ctx.task.live;
    let refused = matches!(e.http_status(), Some(429 | 503))
        || matches!(e.code(), ErrorCode::ConnectFailed | ErrorCode::Network | ErrorCode::TruncatedBody);
    if refused {
        return live.connections.load(Ordering::Relaxed) > 0;
    }
    e.code() == ErrorCode::Timeout && live.bytes.load(Ordering::Relaxed) > live_before
}

/// Waits before retrying after `e`, or returns the error when it is final or this connection has
/// spent its budget of fruitless attempts (`attempts.fruitless` counts them, and starts again at
/// zero when the connection delivers bytes).
///
/// The budget is the connection's own, not the task's: when the network goes away, every
/// connection fails at once, and one shared budget of eight was spent by the first round of a
/// twelve-connection download, which then failed after a single idle timeout where a
/// one-connection download rides out eight attempts with backoff (about a minute).
///
/// A protocol violation is not a network failure: the server (or a middlebox, a captive portal)
/// answered, wrongly. It gets one retry, on a new connection, after the base delay; a second one
/// is final, whatever the budget says.
async fn retry_wait(ctx: &ConnContext, e: Error, attempts: &mut Attempts) -> Result<()> {
    let delay = if e.code() == ErrorCode::ProtocolError {
        if std::mem::replace(&mut attempts.protocol_retried, true) {
            return Err(e.context("again after a retry on a new connection"));
        }
        attempts.fresh = true;
        ctx.policy.base_delay
    } else {
        if !e.is_retryable() {
            return Err(e);
        }
        if attempts.fruitless >= ctx.policy.budget {
            return Err(e.context("giving up after repeated failures without progress"));
        }
        attempts.fruitless += 1;
        let Some(delay) = ctx.policy.delay(attempts.fruitless, &e) else {
            return Err(e.context("server asked to wait longer than the retry ceiling"));
        };
        delay
    };
    tracing::debug!(task = %ctx.task.spec.id, "retrying in {delay:?}: {e}");
    ctx.task.inner.lock().error = Some((&e).into());
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = ctx.stop.cancelled() => Err(Error::new(ErrorCode::Cancelled, "stopped")),
    }
}
