//! What runs next: a priority queue per host, a global cap on running tasks, and a per-host cap on
//! connections shared by every task on that host.
//!
//! Picking the next task costs O(hosts), not O(queued tasks), so 10,000 queued tasks cost nothing
//! per dispatch. A task needs one connection slot of its host to start; it may borrow more slots
//! for extra connections while the host has spare ones, and gives them back as connections end.

use crate::engine::model::hash::Map;
use crate::engine::model::task::TaskId;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Arc;

type Key = (Reverse<i32>, i64, TaskId);

/// Queued tasks, ordered by priority (higher first), then enqueue order.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    by_host: Map<String, BTreeSet<Key>>,
    index: Map<TaskId, (String, Key)>,
}

impl ReadyQueue {
    /// Adds (or re-prioritises) a task.
    pub fn push(&mut self, id: TaskId, host: String, priority: i32, seq: i64) {
        self.remove(&id);
        let key = (Reverse(priority), seq, id.clone());
        self.by_host.entry(host.clone()).or_default().insert(key.clone());
        self.index.insert(id, (host, key));
    }

    /// Removes a task; true if it was queued.
    pub fn remove(&mut self, id: &TaskId) -> bool {
        let Some((host, key)) = self.index.remove(id) else { return false };
        if let Some(set) = self.by_host.get_mut(&host) {
            set.remove(&key);
            if set.is_empty() {
                self.by_host.remove(&host);
            }
        }
        true
    }

    /// Whether a task is queued.
    pub fn contains(&self, id: &TaskId) -> bool {
        self.index.contains_key(id)
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Removes and returns the best task whose host `eligible` accepts, skipping tasks `skip` rejects.
    pub fn pop_best(&mut self, eligible: impl Fn(&str) -> bool, skip: impl Fn(&TaskId) -> bool) -> Option<(TaskId, String)> {
        let mut best: Option<(&String, &Key)> = None;
        for (host, set) in &self.by_host {
            if !eligible(host) {
                continue;
            }
            if let Some(key) = set.iter().find(|k| !skip(&k.2)) {
                if best.is_none_or(|(_, b)| key < b) {
                    best = Some((host, key));
                }
            }
        }
        let (host, key) = best.map(|(h, k)| (h.clone(), k.clone()))?;
        self.remove(&key.2);
        Some((key.2, host))
    }
}

/// Per-host connection accounting.
#[derive(Debug)]
pub struct HostSlots {
    inner: Mutex<HostSlotsInner>,
}

#[derive(Debug)]
struct HostSlotsInner {
    per_host: u32,
    used: Map<String, u32>,
}

/// One connection slot of a host; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<HostSlots>,
    host: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.slots.inner.lock();
        if let Some(n) = g.used.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                g.used.remove(&self.host);
            }
        }
    }
}

impl HostSlots {
    /// Slots with a per-host cap (never above what the descriptor limit leaves, see
    /// [`crate::engine::storage::fd_table::connection_cap`]).
    pub fn new(per_host: u32) -> Arc<HostSlots> {
        let per_host = per_host.min(crate::engine::storage::fd_table::connection_cap());
        Arc::new(HostSlots { inner: Mutex::new(HostSlotsInner { per_host, used: Map::default() }) })
    }

    /// Changes the cap (slots in use above a lowered cap drain as connections end).
    pub fn set_cap(&self, per_host: u32) {
        self.inner.lock().per_host = per_host.min(crate::engine::storage::fd_table::connection_cap());
    }

    /// Whether the host has a free slot.
    pub fn has_free(&self, host: &str) -> bool {
        let g = self.inner.lock();
        g.used.get(host).copied().unwrap_or(0) < g.per_host
    }

    /// Takes a slot if the host has one free.
    pub fn try_acquire(self: &Arc<Self>, host: &str) -> Option<Slot> {
        let mut g = self.inner.lock();
        let cap = g.per_host;
        let n = g.used.entry(host.to_string()).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), host: host.to_string() })
    }

    /// Slots in use, per host.
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self.inner.lock().used.iter().map(|(h, n)| (h.clone(), *n)).collect();
        v.sort();
        v
    }

    /// Slots in use for a host.
    pub fn in_use(&self, host: &str) -> u32 {
        self.inner.lock().used.get(host).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TaskId {
        TaskId::parse(s).unwrap()
    }

    #[test]
    fn priority_then_fifo_across_hosts() {
        let mut q = ReadyQueue::default();
        q.push(id("a"), "h1".into(), 0, 1);
        q.push(id("b"), "h2".into(), 5, 2);
        q.push(id("c"), "h1".into(), 5, 3);
        q.push(id("d"), "h2".into(), 0, 0);
        let order: Vec<String> = std::iter::from_fn(|| q.pop_best(|_| true, |_| false)).map(|(t, _)| t.as_str().to_string()).collect();
        assert_eq!(order, ["b", "c", "d", "a"]);
    }

    #[test]
    fn saturated_hosts_are_skipped() {
        let mut q = ReadyQueue::default();
        q.push(id("a"), "busy".into(), 9, 1);
        q.push(id("b"), "free".into(), 0, 2);
        let (t, h) = q.pop_best(|h| h != "busy", |_| false).unwrap();
        assert_eq!((t.as_str(), h.as_str()), ("b", "free"));
        assert!(q.pop_best(|h| h != "busy", |_| false).is_none());
        assert_eq!(q.len(), 1);
        assert!(q.pop_best(|_| true, |t| t.as_str() == "a").is_none());
    }

    #[test]
    fn slots_are_capped_and_released_on_drop() {
        let s = HostSlots::new(2);
        let a = s.try_acquire("h").unwrap();
        let _b = s.try_acquire("h").unwrap();
        assert!(s.try_acquire("h").is_none());
        assert!(s.try_acquire("other").is_some());
        drop(a);
        assert_eq!(s.in_use("h"), 1);
        assert!(s.try_acquire("h").is_some());
    }
}
