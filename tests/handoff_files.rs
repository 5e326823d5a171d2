//! What the platform hands over as a chunk is not always the OS's file: a path that is missing is
//! refused, and the lease's range goes back to the engine, which finishes the file.

mod support;

use ferry::engine::{ErrorCode, HandoffOptions, IngestOutcome, Manager, OsRequest, Request, TaskState};
use ferry::loopback::Faults;
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
