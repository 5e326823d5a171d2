//! Foreign callbacks: event listeners and stream sinks, plus a pull-style event stream.
//!
//! Each listener gets its own delivery thread and its own engine subscription, so a listener that
//! is slow only delays itself (progress is coalesced while it catches up, state changes queue), and
//! a listener that throws is logged and kept. Dropping or cancelling the registration stops it.

use super::error::CallbackError;
use super::types::DownloadEvent;
use crate::engine;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

pub(crate) struct SinkAdapter(pub Arc<dyn ChunkSink>);

impl engine::ChunkSink for SinkAdapter {
    fn on_chunk(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.0.on_chunk(offset, data.to_vec()).map_err(|e| e.to_string())
    }
}

/// A live listener; delivery stops when it is cancelled or dropped.
#[derive(uniffi::Object)]
pub struct ListenerRegistration {
    stop: Arc<AtomicBool>,
}

impl ListenerRegistration {
    pub(crate) fn start(sub: engine::Subscription, listener: Arc<dyn EventListener>) -> Arc<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new().name("ferry-listener".into()).spawn(move || {
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
                let l = listener.clone();
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || l.on_event(ev.into()))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("event listener failed: {e}"),
                    Err(_) => tracing::warn!("event listener panicked"),
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("could not start a listener thread: {e}");
        }
        Arc::new(ListenerRegistration { stop })
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
        self.sub.next().await.map(Into::into)
    }

    /// The next event if one is waiting.
    pub fn try_next(&self) -> Option<DownloadEvent> {
        self.sub.try_recv().map(Into::into)
    }

    /// Waits up to `timeout_ms` for the next event (blocking; not for a UI thread).
    pub fn next_blocking(&self, timeout_ms: u64) -> Option<DownloadEvent> {
        self.sub.recv_timeout(Duration::from_millis(timeout_ms)).map(Into::into)
    }
}
