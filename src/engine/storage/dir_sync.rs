//! Group commit of directory syncs.
//!
//! Publishing a file ends with a rename and an fsync of its directory. When many small files finish
//! at once (a batch), one directory fsync that starts after several renames makes all of them
//! durable, so callers share syncs: a caller needs *a* sync that started after its rename; if one is
//! running, it waits for the next, which covers everyone who arrived meanwhile.

use crate::engine::model::hash::Map;
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Default)]
struct DirState {
    running: bool,
    started: u64,
    finished: u64,
}

/// Coalesces fsyncs per directory.
#[derive(Default)]
pub struct DirSync {
    dirs: Mutex<Map<PathBuf, DirState>>,
    done: Condvar,
}

impl std::fmt::Debug for DirSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirSync")
    }
}

/// The process-wide coalescer.
pub fn global() -> &'static DirSync {
    static GLOBAL: once_cell::sync::Lazy<DirSync> = once_cell::sync::Lazy::new(DirSync::default);
    &GLOBAL
}

impl DirSync {
    /// Returns once a sync of `dir` that started after this call has finished. Blocking; call from
    /// a blocking thread. Errors are ignored (a directory sync is best effort).
    pub fn sync(&self, dir: &Path) {
        let mut dirs = self.dirs.lock();
        let st = dirs.entry(dir.to_path_buf()).or_default();
        // A sync already running may have started before our rename: we need the one after it.
        let need = st.started + 1;
        loop {
            let st = dirs.get_mut(dir).expect("entry exists while waited on");
            if st.finished >= need {
                return;
            }
            if !st.running {
                st.running = true;
                st.started += 1;
                let gen = st.started;
                drop(dirs);
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
                dirs = self.dirs.lock();
                let st = dirs.get_mut(dir).expect("entry exists while syncing");
                st.finished = gen;
                st.running = false;
                self.done.notify_all();
                if gen >= need {
                    return;
                }
                continue;
            }
            self.done.wait(&mut dirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_callers_share_syncs_and_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(DirSync::default());
        let returned = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (s, d, r) = (s.clone(), dir.path().to_path_buf(), returned.clone());
                std::thread::spawn(move || {
                    s.sync(&d);
                    r.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(returned.load(Ordering::SeqCst), 32);
        let syncs = s.dirs.lock().get(dir.path()).unwrap().finished;
        assert!((1..=32).contains(&syncs));
    }
}
