//! Events to the host: progress (coalesced) and state changes (never dropped).
//!
//! Each subscriber has its own queue, so a slow or stuck listener never stalls the engine or other
//! listeners. State changes are queued without limit (there is a bounded number of them per task).
//! Progress events are coalesced per task: if the listener has not taken the last progress event of
//! a task yet, a newer one replaces it in place. Memory per subscriber is therefore bounded by the
//! number of tasks, and a listener always sees a task's progress before that task's next state change.

use super::hash::Map;
use super::task::{TaskError, TaskId, TaskState};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Progress of one task.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressEvent {
    /// Task.
    pub id: TaskId,
    /// Bytes transferred.
    pub bytes: u64,
    /// Length, when known.
    pub total: Option<u64>,
    /// Bytes per second.
    pub speed: f64,
    /// Seconds left, when known.
    pub eta_seconds: Option<f64>,
}

/// A state change.
#[derive(Clone, Debug, PartialEq)]
pub struct StateEvent {
    /// Task.
    pub id: TaskId,
    /// Previous state (`None` when the task was just created).
    pub from: Option<TaskState>,
    /// New state.
    pub to: TaskState,
    /// The error, for failed tasks.
    pub error: Option<TaskError>,
}

/// An engine event.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Progress (coalesced at the configured cadence).
    Progress(ProgressEvent),
    /// State change (always delivered, in order per task).
    State(StateEvent),
}

enum Slot {
    Progress(TaskId, u64),
    State(StateEvent),
}

#[derive(Default)]
struct Queue {
    slots: VecDeque<Slot>,
    /// Undelivered progress that newer progress of the same task may still replace.
    open: Map<TaskId, (u64, ProgressEvent)>,
    /// Undelivered progress fixed in place because a state change of its task came after it.
    sealed: Map<u64, ProgressEvent>,
    next: u64,
    closed: bool,
}

struct Subscriber {
    queue: Mutex<Queue>,
    ready: Condvar,
    notify: tokio::sync::Notify,
}

/// Fans events out to subscribers.
#[derive(Default)]
pub struct EventHub {
    subscribers: Mutex<Vec<Weak<Subscriber>>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").field("subscribers", &self.subscribers.lock().len()).finish()
    }
}

/// A subscription; dropping it unsubscribes.
pub struct Subscription {
    sub: Arc<Subscriber>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl EventHub {
    /// Adds a subscriber.
    pub fn subscribe(&self) -> Subscription {
        let sub = Arc::new(Subscriber { queue: Mutex::new(Queue::default()), ready: Condvar::new(), notify: tokio::sync::Notify::new() });
        let mut subs = self.subscribers.lock();
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(&sub));
        Subscription { sub }
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        self.subscribers.lock().iter().any(|w| w.strong_count() > 0)
    }

    fn each(&self, mut f: impl FnMut(&mut Queue)) {
        let subs: Vec<Arc<Subscriber>> = self.subscribers.lock().iter().filter_map(Weak::upgrade).collect();
        for s in subs {
            {
                let mut q = s.queue.lock();
                if q.closed {
                    continue;
                }
                f(&mut q);
            }
            s.ready.notify_all();
            s.notify.notify_one();
        }
    }

    /// Publishes a state change.
    pub fn state(&self, ev: StateEvent) {
        self.each(|q| {
            if let Some((seq, p)) = q.open.remove(&ev.id) {
                q.sealed.insert(seq, p);
            }
            q.slots.push_back(Slot::State(ev.clone()));
        });
    }

    /// Publishes progress, coalescing with a not-yet-delivered progress event of the same task
    /// (unless a state change of that task came in between).
    pub fn progress(&self, ev: ProgressEvent) {
        self.each(|q| {
            if let Some((_, old)) = q.open.get_mut(&ev.id) {
                *old = ev.clone();
            } else {
                let seq = q.next;
                q.next += 1;
                q.open.insert(ev.id.clone(), (seq, ev.clone()));
                q.slots.push_back(Slot::Progress(ev.id.clone(), seq));
            }
        });
    }

    /// Ends every subscription (receivers get `None` once their queue is drained).
    pub fn close(&self) {
        self.each(|q| q.closed = true);
    }
}

impl Queue {
    fn pop(&mut self) -> Option<Event> {
        while let Some(slot) = self.slots.pop_front() {
            match slot {
                Slot::State(ev) => return Some(Event::State(ev)),
                Slot::Progress(id, seq) => {
                    if let Some(ev) = self.sealed.remove(&seq) {
                        return Some(Event::Progress(ev));
                    }
                    if self.open.get(&id).is_some_and(|(s, _)| *s == seq) {
                        return self.open.remove(&id).map(|(_, ev)| Event::Progress(ev));
                    }
                }
            }
        }
        None
    }
}

impl Subscription {
    /// Next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.sub.queue.lock().pop()
    }

    /// Blocks up to `timeout` for the next event. `None` on timeout or when the hub closed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.sub.queue.lock();
        loop {
            if let Some(ev) = q.pop() {
                return Some(ev);
            }
            if q.closed || self.sub.ready.wait_until(&mut q, deadline).timed_out() {
                return q.pop();
            }
        }
    }

    /// Waits for the next event; `None` once the hub closed and the queue is drained.
    pub async fn next(&self) -> Option<Event> {
        loop {
            let notified = self.sub.notify.notified();
            {
                let mut q = self.sub.queue.lock();
                if let Some(ev) = q.pop() {
                    return Some(ev);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Whether the hub closed this subscription.
    pub fn is_closed(&self) -> bool {
        self.sub.queue.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    fn progress(t: &str, bytes: u64) -> ProgressEvent {
        ProgressEvent { id: id(t), bytes, total: Some(100), speed: 0.0, eta_seconds: None }
    }

    #[test]
    fn progress_coalesces_but_state_changes_do_not() {
        let hub = EventHub::default();
        let sub = hub.subscribe();
        hub.progress(progress("a", 1));
        hub.progress(progress("b", 1));
        hub.progress(progress("a", 2));
        hub.state(StateEvent { id: id("a"), from: Some(TaskState::Running), to: TaskState::Paused, error: None });
        hub.progress(progress("a", 3));
        let got: Vec<Event> = std::iter::from_fn(|| sub.try_recv()).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Event::Progress(progress("a", 2)));
        assert_eq!(got[1], Event::Progress(progress("b", 1)));
        assert!(matches!(got[2], Event::State(_)));
        assert_eq!(got[3], Event::Progress(progress("a", 3)));
    }

    #[test]
    fn a_slow_subscriber_stays_bounded_and_does_not_block_others() {
        let hub = EventHub::default();
        let slow = hub.subscribe();
        let fast = hub.subscribe();
        for i in 0..100_000 {
            hub.progress(progress("a", i));
            if i % 1000 == 0 {
                assert!(fast.try_recv().is_some());
            }
        }
        assert_eq!(slow.sub.queue.lock().slots.len(), 1);
        assert_eq!(slow.try_recv(), Some(Event::Progress(progress("a", 99_999))));
    }

    #[test]
    fn close_ends_blocking_and_async_receivers() {
        let hub = EventHub::default();
        let sub = hub.subscribe();
        hub.state(StateEvent { id: id("a"), from: None, to: TaskState::Queued, error: None });
        hub.close();
        assert!(sub.recv_timeout(Duration::from_secs(5)).is_some());
        assert!(sub.recv_timeout(Duration::from_secs(5)).is_none());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(sub.next()), None);
        drop(sub);
        assert!(!hub.has_subscribers());
    }
}
