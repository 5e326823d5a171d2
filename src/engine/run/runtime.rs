//! The engine's own tokio runtime. It lives for the whole process, so callers on any thread
//! (an app's main thread, a JVM thread, Python) never need a runtime of their own, and a manager
//! can be dropped anywhere without tearing a runtime down inside async code.

use once_cell::sync::Lazy;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    // Before the workers exist, growing the descriptor table is free (see fd_table).
    crate::engine::storage::fd_table::reserve();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(2, 4);
    Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ferry-rt")
        .enable_all()
        .build()
        .expect("the ferry runtime could not start")
});

/// A handle to the engine runtime.
pub fn handle() -> &'static Handle {
    RUNTIME.handle()
}
