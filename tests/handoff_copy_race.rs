//! A lease that ends while its chunk is being copied into the part file: the end waits for the
//! copy, so the engine never fetches (and writes) a range whose OS chunk is still landing. Its own
//! test binary: the copy is held open by a pause point that the environment names, and every
//! ingest in this process passes that point.

mod support;

use ferry::engine::{ErrorCode, IngestOutcome, Request, TaskState};
use ferry::loopback::Faults;
use std::time::{Duration, Instant};
use support::os_fetch::{fetch, hand_off_in_chunks};
use support::*;

const MIB: u64 = 1 << 20;
const PAUSE_MS: u64 = 700;

#[test]
fn a_lease_released_during_its_chunks_copy_ends_after_the_copy_and_the_file_is_exact() {
    std::env::set_var("FERRY_PAUSE_AT", "ingest:copying");
    std::env::set_var("FERRY_PAUSE_MS", PAUSE_MS.to_string());
    let w = World::new(Faults { rate: Some(MIB), ..Faults::new(16 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("f.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= MIB / 2);
    let reqs = hand_off_in_chunks(&w.manager, 4 * MIB);
    assert!(reqs.len() >= 2, "{reqs:?}");
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(&reqs[0], tmp.path());

    let m = w.manager.clone();
    let lease = reqs[0].lease_id.clone();
    let ingest = std::thread::spawn(move || m.ingest(&lease, &file, meta));
    // Inside the held copy (it lasts PAUSE_MS), the app gives the lease up.
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    w.manager.release_lease(&reqs[0].lease_id).unwrap();
    let waited = asked.elapsed();
    let outcome = ingest.join().unwrap();
    assert!(
        waited >= Duration::from_millis(PAUSE_MS / 2),
        "the lease ended after {waited:?}, while its chunk was still being copied ({outcome:?})"
    );
    // Either the ingest journaled the chunk before the release took the lease, or the release
    // came first and the ingest leaves the range to the engine; never both writing it at once.
    match &outcome {
        IngestOutcome::Committed { .. } => {}
        IngestOutcome::Rejected { error, .. } => assert_eq!(error.code(), ErrorCode::UnknownLease, "{outcome:?}"),
        other => panic!("{other:?}"),
    }

    for r in &reqs[1..] {
        w.manager.release_lease(&r.lease_id).unwrap();
    }
    w.manager.resume(&id).ok();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}
