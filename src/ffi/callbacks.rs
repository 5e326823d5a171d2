//! Foreign callbacks: event listeners and stream sinks, plus a pull-style event stream.
//!
//! Each listener gets its own delivery thread and its own engine subscription, so a listener that
//! is slow only delays itself (progress is coalesced while it catches up, state changes queue), and
//! a listener that throws is logged and kept. Dropping or cancelling the registration stops it.
//!
//! Every call into foreign code passes [`CallbackGate`]: once the host says it is exiting
//! ([`stop_callbacks`]), no Ferry thread enters foreign code again. An interpreter that is
//! finalizing kills a thread that tries to enter it (CPython before 3.14 calls `pthread_exit`), and
//! that forced unwind through Rust frames aborts the whole process.

use super::error::CallbackError;
use super::gate::{gated, Foreign};
use super::types::DownloadEvent;
use crate::engine;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts calls into foreign code in progress, and refuses new ones once stopped.
struct CallbackGate {
    /// (stopped, calls in progress)
    state: Mutex<(bool, usize)>,
    idle: Condvar,
}

static GATE: CallbackGate = CallbackGate { state: Mutex::new((false, 0)), idle: Condvar::new() };

/// One call into foreign code; leaving it lets [`stop_callbacks`] know.
struct InCallback;

impl CallbackGate {
    fn enter(&'static self) -> Option<InCallback> {
        let mut g = self.state.lock();
        if g.0 {
            return None;
        }
        g.1 += 1;
        Some(InCallback)
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        let mut g = GATE.state.lock();
        g.1 -= 1;
        if g.1 == 0 {
            GATE.idle.notify_all();
        }
    }
}

/// Enters foreign code through the gate; `None` once the host is exiting.
pub(super) fn enter_foreign() -> Option<impl Sized> {
    GATE.enter()
}

/// Stops every call from Ferry into foreign code (event listeners, chunk sinks) for the rest of the
/// process, then waits up to `timeout_ms` for the calls in progress to return; true when none is
/// left. For hosts that are exiting: the Python package calls it at interpreter exit, because a
/// Ferry thread entering a finalizing interpreter would abort the process. Listeners get no more
/// events afterwards and stream downloads fail with `sink_rejected`. Do not call it from a
/// callback: it would wait for itself.
#[uniffi::export]
pub fn stop_callbacks(timeout_ms: u64) -> bool {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut g = GATE.state.lock();
    g.0 = true;
    while g.1 > 0 {
        if GATE.idle.wait_until(&mut g, deadline).timed_out() {
            return g.1 == 0;
        }
    }
    true
}

/// Receives engine events (implemented in Swift, Kotlin or Python).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    /// Called on a Ferry thread, in order. Throwing is allowed and only logged.
    fn on_event(&self, event: DownloadEvent) -> Result<(), CallbackError>;
}

/// Receives the bytes of a stream-output task (implemented in Swift, Kotlin or Python).
#[uniffi::export(with_foreign)]
pub trait ChunkSink: Send + Sync {
    /// Called with consecutive chunks. An offset going back to 0 means the resource changed and the
    /// download started over. Throwing stops the task with `SinkRejected`.
    fn on_chunk(&self, offset: u64, data: Vec<u8>) -> Result<(), CallbackError>;
}

pub(crate) struct SinkAdapter(pub Foreign<dyn ChunkSink>);

impl engine::ChunkSink for SinkAdapter {
    fn on_chunk(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let Some(_call) = GATE.enter() else { return Err("the host process is exiting".into()) };
        self.0.get().on_chunk(offset, data.to_vec()).map_err(|e| e.to_string())
    }
}

/// A live listener; delivery stops when it is cancelled or dropped, or when the manager shuts down.
#[derive(uniffi::Object)]
pub struct ListenerRegistration {
    stop: Arc<AtomicBool>,
    /// Becomes true when the delivery thread has ended.
    ended: tokio::sync::watch::Sender<bool>,
}

/// Marks delivery as ended however the delivery thread leaves (return or unwind).
struct Ended(tokio::sync::watch::Sender<bool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl ListenerRegistration {
    pub(crate) fn start(sub: engine::Subscription, listener: Arc<dyn EventListener>) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ended = tokio::sync::watch::Sender::new(false);
        let marker = Ended(ended.clone());
        let listener = Foreign::new(listener);
        let spawned = std::thread::Builder::new().name("ferry-listener".into()).spawn(move || {
            let _ended = marker;
            while !flag.load(Ordering::Acquire) {
                let Some(ev) = sub.recv_timeout(Duration::from_millis(200)) else {
                    if sub.is_closed() {
                        return;
                    }
                    continue;
                };
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Some(_call) = GATE.enter() else { return };
                let l = &listener;
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || l.get().on_event(ev.into()))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("event listener failed: {e}"),
                    Err(_) => tracing::warn!("event listener panicked"),
                }
            }
        });
        if let Err(e) = spawned {
            // The closure (and its end marker) was dropped: delivery has ended already.
            tracing::warn!("could not start a listener thread: {e}");
        }
        Arc::new(ListenerRegistration { stop, ended })
    }
}

#[uniffi::export]
impl ListenerRegistration {
    /// Stops delivery (events already being delivered finish).
    pub fn cancel(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether delivery was stopped.
    pub fn is_cancelled(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Returns once delivery has ended for good: after `cancel`, or once the manager shut down
    /// (by whichever handle) and every event queued before was delivered. Stream adapters await it
    /// to finish their stream. Abandoning the wait leaves nothing behind.
    pub async fn wait_ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = gated(ended.wait_for(|done| *done)).await;
    }
}

impl Drop for ListenerRegistration {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// A pull-style event subscription (for `AsyncStream` / `Flow` adapters that prefer polling).
#[derive(uniffi::Object)]
pub struct EventStream {
    sub: Arc<engine::Subscription>,
}

impl EventStream {
    pub(crate) fn new(sub: engine::Subscription) -> Arc<Self> {
        Arc::new(EventStream { sub: Arc::new(sub) })
    }
}

#[uniffi::export]
impl EventStream {
    /// The next event; `None` once the manager shut down. Cancelling the wait loses no event: an
    /// event is taken from the queue only when this call returns it.
    pub async fn next(&self) -> Option<DownloadEvent> {
        gated(self.sub.next()).await.map(Into::into)
    }

    /// The next event if one is waiting.
    pub fn try_next(&self) -> Option<DownloadEvent> {
        self.sub.try_recv().map(Into::into)
    }

    /// Waits up to `timeout_ms` for the next event (blocking; not for a UI thread). `None` on
    /// timeout, and at once when the stream is closed (see `is_closed`).
    pub fn next_blocking(&self, timeout_ms: u64) -> Option<DownloadEvent> {
        self.sub.recv_timeout(Duration::from_millis(timeout_ms)).map(Into::into)
    }

    /// Whether the manager shut down: no event is added any more, and once `try_next` returns
    /// `None` the stream is over (blocking pollers stop on this instead of spinning).
    pub fn is_closed(&self) -> bool {
        self.sub.is_closed()
    }
}
