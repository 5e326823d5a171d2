//! Crash points: named places on the way to a completed file where a test can make the process
//! die exactly as a `SIGKILL` would (no destructor, no flush), to prove that every step of
//! publishing (`tests/storage_faults.rs`) and of ingesting a chunk the OS fetched
//! (`tests/handoff_crash.rs`) can be interrupted and recovered from.
//!
//! A point fires when the environment variable `FERRY_CRASH_AT` names it: `publish:renamed` the
//! first time the process gets there, `publish:renamed#3` the third time (a later group of a
//! batch, while earlier ones are still on their way). Only builds with the `loopback` test tooling
//! have them; mobile libraries (built without default features) do not.

/// Dies here if `FERRY_CRASH_AT` names this point (and this is the named passage).
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "loopback")]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static AT: once_cell::sync::Lazy<Option<(String, u32)>> = once_cell::sync::Lazy::new(|| {
            let at = std::env::var("FERRY_CRASH_AT").ok()?;
            Some(match at.split_once('#') {
                Some((point, nth)) => (point.to_string(), nth.parse().unwrap_or(1)),
                None => (at, 1),
            })
        });
        static PASSED: AtomicU32 = AtomicU32::new(0);
        if let Some((point, nth)) = AT.as_ref() {
            if point == name && PASSED.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
                // SAFETY: signalling our own process; SIGKILL cannot be caught, so nothing runs after.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
    #[cfg(not(feature = "loopback"))]
    let _ = name;
}

/// Sleeps here for `FERRY_PAUSE_MS` milliseconds if `FERRY_PAUSE_AT` names this point: a test
/// holds a step open to race another against it. Only in builds with the loopback test tooling.
#[inline]
pub fn pause(name: &str) {
    #[cfg(feature = "loopback")]
    {
        static AT: once_cell::sync::Lazy<Option<(String, u64)>> = once_cell::sync::Lazy::new(|| {
            let at = std::env::var("FERRY_PAUSE_AT").ok()?;
            Some((at, std::env::var("FERRY_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(500)))
        });
        if let Some((point, ms)) = AT.as_ref() {
            if point == name {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
        }
    }
    #[cfg(not(feature = "loopback"))]
    let _ = name;
}
