//! What runs next: a priority queue per host, a global cap on running tasks, and a per-host cap on
//! connections shared by every task on that host.
//!
//! Picking the next task costs O(hosts), not O(queued tasks), so 10,000 queued tasks cost nothing
//! per dispatch. A queued task that may not run on the current network is parked: still queued
//! here (and so still this process's to run), but out of the picking until the network changes. A task needs one connection slot of its host to start; it may borrow more slots
//! for extra connections while the host has spare ones, and gives them back as connections end.
//!
//! The per-host cap counts the connections of every process of the state directory: a slot is
//! also the lock of one byte in the directory's `hosts` file (see `storage::locks`), in a region
//! of [`SLOTS_PER_HOST`] bytes picked by a hash of the host. A process takes only the first
//! `max_connections_per_host` bytes of a region, so all processes together hold at most the
//! largest cap any of them was given, and a process never more than its own; a process that dies
//! gives its slots back with its locks. Two hosts whose hashes collide share a cap (rare, and only
//! ever fewer connections).

use crate::engine::model::hash::{Map, Set};
use crate::engine::model::task::TaskId;
use crate::engine::storage::locks::LockFile;
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
    /// Queued tasks the network keeps from running: in `index`, not in `by_host`.
    parked: Set<TaskId>,
}

impl ReadyQueue {
    /// Adds (or re-prioritises) a task; a parked one is unparked.
    pub fn push(&mut self, id: TaskId, host: String, priority: i32, seq: i64) {
        self.remove(&id);
        let key = (Reverse(priority), seq, id.clone());
        self.by_host.entry(host.clone()).or_default().insert(key.clone());
        self.index.insert(id, (host, key));
    }

    /// Queues a task parked: it counts as queued, but [`ReadyQueue::pop_best`] skips it until it
    /// is unparked.
    pub fn park(&mut self, id: TaskId, host: String, priority: i32, seq: i64) {
        self.remove(&id);
        let key = (Reverse(priority), seq, id.clone());
        self.parked.insert(id.clone());
        self.index.insert(id, (host, key));
    }

    /// Makes a parked task eligible again; false when it was not parked.
    pub fn unpark(&mut self, id: &TaskId) -> bool {
        if !self.parked.remove(id) {
            return false;
        }
        if let Some((host, key)) = self.index.get(id) {
            self.by_host.entry(host.clone()).or_default().insert(key.clone());
        }
        true
    }

    /// The parked tasks.
    pub fn parked(&self) -> Vec<TaskId> {
        self.parked.iter().cloned().collect()
    }

    /// Whether some queued task is not parked.
    pub fn has_eligible(&self) -> bool {
        self.index.len() > self.parked.len()
    }

    /// Removes a task; true if it was queued.
    pub fn remove(&mut self, id: &TaskId) -> bool {
        let Some((host, key)) = self.index.remove(id) else { return false };
        if self.parked.remove(id) {
            return true;
        }
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

/// Connection slots per host in the `hosts` lock file (and the highest cap across processes).
pub const SLOTS_PER_HOST: u32 = 1024;
/// Host regions in the `hosts` lock file (offsets stay below 2^31 for 32-bit POSIX locks).
const HOST_REGIONS: u64 = 32 * 1024;

/// Per-host connection accounting.
#[derive(Debug)]
pub struct HostSlots {
    inner: Mutex<HostSlotsInner>,
    /// The state directory's `hosts` lock file, shared with the other processes.
    file: Option<LockFile>,
}

#[derive(Debug)]
struct HostSlotsInner {
    per_host: u32,
    used: Map<String, HostUse>,
}

#[derive(Debug, Default)]
struct HostUse {
    /// Slots this process holds.
    count: u32,
    /// Their indices in the host's region of the lock file.
    held: Vec<u32>,
}

/// One connection slot of a host; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<HostSlots>,
    host: String,
    index: Option<u32>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.slots.inner.lock();
        if let Some(u) = g.used.get_mut(&self.host) {
            u.count -= 1;
            if let Some(i) = self.index {
                u.held.retain(|&h| h != i);
                if let Some(f) = &self.slots.file {
                    f.unlock(region_of(&self.host) + u64::from(i));
                }
            }
            if u.count == 0 {
                g.used.remove(&self.host);
            }
        }
    }
}

/// Where a host's slots start in the lock file: FNV-1a of `host:port`, the same in every process.
fn region_of(host: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % HOST_REGIONS) * u64::from(SLOTS_PER_HOST)
}

fn clamp(per_host: u32) -> u32 {
    per_host.min(crate::engine::storage::fd_table::connection_cap()).min(SLOTS_PER_HOST)
}

impl HostSlots {
    /// Slots with a per-host cap (never above what the descriptor limit leaves, see
    /// [`crate::engine::storage::fd_table::connection_cap`]), counted in this process only.
    pub fn new(per_host: u32) -> Arc<HostSlots> {
        Self::shared(per_host, None)
    }

    /// Slots counted across every process that uses the lock file `file` (the state directory's
    /// `hosts`).
    pub fn shared(per_host: u32, file: Option<LockFile>) -> Arc<HostSlots> {
        Arc::new(HostSlots { inner: Mutex::new(HostSlotsInner { per_host: clamp(per_host), used: Map::default() }), file })
    }

    /// Changes the cap (slots in use above a lowered cap drain as connections end).
    pub fn set_cap(&self, per_host: u32) {
        self.inner.lock().per_host = clamp(per_host);
    }

    /// Whether the host has a free slot in this process (other processes may still hold the rest;
    /// [`HostSlots::try_acquire`] finds out).
    pub fn has_free(&self, host: &str) -> bool {
        let g = self.inner.lock();
        g.used.get(host).map_or(0, |u| u.count) < g.per_host
    }

    /// Takes a slot if the host has one free, here and in the other processes.
    pub fn try_acquire(self: &Arc<Self>, host: &str) -> Option<Slot> {
        let mut g = self.inner.lock();
        let cap = g.per_host;
        let u = g.used.entry(host.to_string()).or_default();
        if u.count >= cap {
            return None;
        }
        let index = match &self.file {
            None => None,
            Some(f) => {
                let base = region_of(host);
                let free = (0..cap).filter(|i| !u.held.contains(i)).find(|&i| f.try_lock(base + u64::from(i), true).unwrap_or(false));
                match free {
                    Some(i) => {
                        u.held.push(i);
                        Some(i)
                    }
                    None => {
                        if u.count == 0 {
                            g.used.remove(host);
                        }
                        return None;
                    }
                }
            }
        };
        u.count += 1;
        Some(Slot { slots: self.clone(), host: host.to_string(), index })
    }

    /// Slots in use by this process, per host.
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self.inner.lock().used.iter().map(|(h, u)| (h.clone(), u.count)).collect();
        v.sort();
        v
    }

    /// Slots in use for a host by this process.
    pub fn in_use(&self, host: &str) -> u32 {
        self.inner.lock().used.get(host).map_or(0, |u| u.count)
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
    fn parked_tasks_stay_queued_but_are_not_picked() {
        let mut q = ReadyQueue::default();
        q.park(id("big"), "h".into(), 9, 1);
        q.push(id("small"), "h".into(), 0, 2);
        assert!(q.contains(&id("big")) && q.has_eligible());
        assert_eq!(q.pop_best(|_| true, |_| false).unwrap().0.as_str(), "small");
        assert!(q.pop_best(|_| true, |_| false).is_none() && !q.has_eligible());
        assert_eq!(q.parked(), [id("big")]);
        assert!(q.unpark(&id("big")) && !q.unpark(&id("big")));
        assert_eq!(q.pop_best(|_| true, |_| false).unwrap().0.as_str(), "big");
        q.park(id("gone"), "h".into(), 0, 3);
        assert!(q.remove(&id("gone")) && q.is_empty() && q.parked().is_empty());
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

    #[test]
    fn slots_held_through_another_open_of_the_lock_file_count_against_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        let other = LockFile::open(&path).unwrap();
        if other.kind() != crate::engine::storage::locks::Kind::OpenFile {
            return; // per-process locks: another process would be needed to hold them
        }
        let s = HostSlots::shared(3, Some(LockFile::open(&path).unwrap()));
        // Another "process" holds two of the host's slots.
        assert!(other.try_lock(region_of("h:80"), true).unwrap());
        assert!(other.try_lock(region_of("h:80") + 2, true).unwrap());
        let a = s.try_acquire("h:80").expect("one slot is left");
        assert!(s.try_acquire("h:80").is_none(), "the cap counts the other process's connections");
        assert!(s.try_acquire("elsewhere:80").is_some());
        drop(other);
        let b = s.try_acquire("h:80").expect("the other process is gone");
        let _c = s.try_acquire("h:80").expect("and so are both its slots");
        assert!(s.try_acquire("h:80").is_none());
        drop((a, b));
        assert_eq!(s.in_use("h:80"), 1);
    }
}
