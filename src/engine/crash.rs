//! Crash points: named places on the way to a completed file where a test can make the process
//! die exactly as a `SIGKILL` would (no destructor, no flush), to prove that every step of
//! publishing can be interrupted and recovered from (`tests/storage_faults.rs`).
//!
//! A point fires when the environment variable `FERRY_CRASH_AT` names it. Only builds with the
//! `loopback` test tooling have them; mobile libraries (built without default features) do not.

/// Dies here if `FERRY_CRASH_AT` names this point.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "loopback")]
    {
        static AT: once_cell::sync::Lazy<Option<String>> = once_cell::sync::Lazy::new(|| std::env::var("FERRY_CRASH_AT").ok());
        if AT.as_deref() == Some(name) {
            // SAFETY: signalling our own process; SIGKILL cannot be caught, so nothing runs after.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    #[cfg(not(feature = "loopback"))]
    let _ = name;
}
