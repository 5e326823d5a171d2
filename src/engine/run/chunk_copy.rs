//! The one chunk of a task that is being copied into its part file, and the wait for it.
//!
//! Why: a chunk the OS fetched is judged, then copied into the part file at its lease's offset,
//! then journaled. A lease that ended during the copy (released, taken back, or the resource
//! forgotten) handed its range to the engine, which could then write the same offsets, or a new
//! version into a restarted part file, while the old copy was still landing. Now a lease ends only
//! between copies: whoever ends it waits for a copy of its chunk in flight, and a copy starts only
//! while its lease is live (both under the task's state lock).

use parking_lot::{Condvar, Mutex, MutexGuard};

/// The lease whose chunk is being copied, if any.
#[derive(Debug, Default)]
pub struct ChunkCopy {
    lease: Mutex<Option<String>>,
    done: Condvar,
}

/// A copy in flight; it ends when dropped.
pub struct Copying<'a>(&'a ChunkCopy);

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        *self.0.lease.lock() = None;
        self.0.done.notify_all();
    }
}

fn concerns(lease: &Option<String>, which: Option<&[String]>) -> bool {
    lease.as_ref().is_some_and(|id| which.is_none_or(|ids| ids.contains(id)))
}

impl ChunkCopy {
    /// Marks `lease`'s chunk as being copied. Call with the task's state locked, after checking
    /// that the lease is live.
    pub fn begin(&self, lease: &str) -> Copying<'_> {
        *self.lease.lock() = Some(lease.to_string());
        Copying(self)
    }

    /// Locks `state` once no chunk of the leases in `which` (all of them with `None`) is being
    /// copied. With the returned guard held, no such copy can start.
    pub fn lock_between<'s, T>(&self, state: &'s Mutex<T>, which: Option<&[String]>) -> MutexGuard<'s, T> {
        loop {
            {
                let mut lease = self.lease.lock();
                while concerns(&lease, which) {
                    self.done.wait(&mut lease);
                }
            }
            let guard = state.lock();
            if !concerns(&self.lease.lock(), which) {
                return guard;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_lease_ends_only_after_its_copy_and_other_leases_do_not_wait() {
        let copy = Arc::new(ChunkCopy::default());
        let state = Arc::new(Mutex::new(0u32));
        let copying = {
            let _g = state.lock();
            copy.begin("a")
        };
        let started = Instant::now();
        // Another lease's end does not wait.
        drop(copy.lock_between(&state, Some(&["b".to_string()])));
        assert!(started.elapsed() < Duration::from_millis(200));
        let (c, s) = (copy.clone(), state.clone());
        let waiter = std::thread::spawn(move || {
            let at = Instant::now();
            let mut g = c.lock_between(&s, None);
            *g += 1;
            at.elapsed()
        });
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(*state.lock(), 0, "the end of every lease waited for the copy");
        drop(copying);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert_eq!(*state.lock(), 1);
    }
}
