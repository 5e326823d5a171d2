//! Serializes, within this process, the operations that add entries to one directory: creating a
//! part file and renaming a finished file into place.
//!
//! Why: Linux takes the directory's `i_rwsem` for each of them, and a thread that finds it taken
//! spins in the kernel for as long as the owner keeps running. Creating a file can hold it for a
//! long time (ext4 searches its inode bitmap, skipping recently freed inodes), so sixteen small
//! downloads finishing into one directory had one core spinning while the other created files:
//! `rwsem_spin_on_owner` was 28 % of all CPU in case 3 of the benchmark. Waiting here sleeps
//! instead, and leaves that core to the network and the server.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const STRIPES: usize = 32;

static LOCKS: [Mutex<()>; STRIPES] = [const { Mutex::new(()) }; STRIPES];

/// Holds the lock of `path`'s directory until dropped. Unrelated directories rarely share a stripe,
/// and sharing one only costs a short wait.
pub fn lock_parent_of(path: &Path) -> MutexGuard<'static, ()> {
    LOCKS[stripe_of(path)].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stripe_of(path: &Path) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.parent().unwrap_or(path).hash(&mut h);
    (h.finish() as usize) % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_one_directory_wait_for_each_other_until_the_guard_drops() {
        let held = lock_parent_of(Path::new("/d/a.part"));
        let stripe = stripe_of(Path::new("/d/b"));
        assert_eq!(stripe, stripe_of(Path::new("/d/a.part")));
        std::thread::scope(|s| {
            assert!(s.spawn(|| LOCKS[stripe].try_lock().is_err()).join().unwrap());
        });
        drop(held);
        std::thread::scope(|s| {
            assert!(s.spawn(|| LOCKS[stripe].try_lock().is_ok()).join().unwrap());
        });
    }
}
