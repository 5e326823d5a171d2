//! What the platform hands over as a chunk is not always the OS's regular file: a path that is
//! missing, a directory, a FIFO or a symlink is refused at once (never a hang, never bytes read
//! from somewhere else), and the lease's range goes back to the engine, which finishes the file.

mod support;

use ferry::engine::{ChunkMeta, ErrorCode, HandoffOptions, IngestOutcome, Manager, OsRequest, Request, TaskState};
use ferry::loopback::Faults;
use std::path::Path;
use std::time::Duration;
use support::os_fetch::fetch;
use support::*;

const MIB: u64 = 1 << 20;

fn hand_off(m: &Manager, ids: Option<Vec<String>>) -> Vec<OsRequest> {
    let m = m.clone();
    let options = HandoffOptions { chunk_bytes: 4 * MIB, ..HandoffOptions::default() };
    ferry::engine::runtime::handle().block_on(async move { m.hand_off(ids, options).await }).expect("hand off").requests
}

/// A running download of 12 MiB handed off in ranged leases.
fn ranged() -> (World, String, Vec<OsRequest>) {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(12 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("f.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= MIB / 2);
    let reqs = hand_off(&w.manager, None);
    assert!(reqs.len() >= 2 && reqs.iter().all(|r| !r.whole), "{reqs:?}");
    (w, id, reqs)
}

/// A queued download never probed (another one holds the only slot), handed off as one
/// whole-file lease of unknown length.
fn never_probed() -> (World, String, OsRequest) {
    let mut config = test_config();
    config.limits.max_running_tasks = 1;
    let w = World::with_config(Faults { rate: Some(MIB), ..Faults::new(4 * MIB) }, config);
    let first = w.manager.enqueue(w.request("first.bin")).unwrap().to_string();
    until(30, "the first download under way", || w.manager.status(&first).unwrap().bytes > 0);
    let id = w.manager.enqueue(w.request("w.bin")).unwrap().to_string();
    let reqs = hand_off(&w.manager, Some(vec![id.clone()]));
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].whole && reqs[0].total.is_none(), "{:?}", reqs[0]);
    (w, id, reqs.into_iter().next().unwrap())
}

/// Ingests on another thread; the answer must come within 10 s.
fn ingest_bounded(m: &Manager, lease: &str, file: &Path, meta: ChunkMeta) -> Option<IngestOutcome> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (m, lease, file) = (m.clone(), lease.to_string(), file.to_path_buf());
    std::thread::spawn(move || {
        let _ = tx.send(m.ingest(&lease, &file, meta));
    });
    rx.recv_timeout(Duration::from_secs(10)).ok()
}

fn refused_and_released(outcome: &IngestOutcome, what: &str) {
    match outcome {
        IngestOutcome::Rejected { error, retryable: true, .. } => assert_eq!(error.code(), ErrorCode::StorageIo, "{what}: {error}"),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn a_missing_chunk_file_releases_its_range_to_the_engine() {
    let (w, id, reqs) = ranged();
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let (_, meta) = fetch(&reqs[0], tmp.path());
    let outcome = w.manager.ingest(&reqs[0].lease_id, &tmp.path().join("never-written"), meta);
    refused_and_released(&outcome, "a missing file");
    assert_eq!(w.manager.live_leases().len(), reqs.len() - 1, "the refused lease ended");
    for r in &reqs[1..] {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "the engine fetched the refused range itself: {st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_symlink_to_a_file_of_the_right_length_is_refused_not_followed() {
    let (w, id, reqs) = ranged();
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(&reqs[0], tmp.path());
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::write(&elsewhere, vec![0x5a; std::fs::metadata(&file).unwrap().len() as usize]).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let outcome = w.manager.ingest(&reqs[0].lease_id, &link, meta);
    refused_and_released(&outcome, "a symlink");
    assert!(elsewhere.exists(), "the file it points to is not the engine's to delete");
    for r in &reqs[1..] {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_fifo_or_a_directory_given_as_a_whole_file_chunk_is_refused_at_once() {
    for kind in ["fifo", "directory"] {
        let (w, id, lease) = never_probed();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(kind);
        if kind == "fifo" {
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a valid, NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        } else {
            std::fs::create_dir(&path).unwrap();
        }
        let meta = ChunkMeta { status: 200, headers: vec![] };
        let outcome = ingest_bounded(&w.manager, &lease.lease_id, &path, meta);
        if outcome.is_none() && kind == "fifo" {
            // Lets the stuck ingest go before failing.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
        }
        let outcome = outcome.unwrap_or_else(|| panic!("{kind}: the ingest did not answer within 10 s"));
        refused_and_released(&outcome, kind);
        w.server.set(|f| f.rate = None);
        let st = wait(&w.manager, &id, 60);
        assert_eq!(st.state, TaskState::Completed, "{kind}: the engine took the download back: {st:?}");
        assert_same(&read(&w.out("w.bin")), &w.server.expected());
    }
}
