//! Chunks that arrive while the engine itself fetches released ranges of the same task: a chunk
//! that says the resource changed, or that fails the task, ends that run too; one that fits is
//! kept by it; and the file that appears holds only the resource's bytes.

mod support;

use ferry::engine::{ChunkMeta, ErrorCode, IngestOutcome, Manager, OsRequest, Request, RunBudget, RunOutcome, StopCause, TaskState};
use ferry::loopback::Faults;
use std::path::PathBuf;
use std::time::Duration;
use support::os_fetch::{fetch, fetch_with, hand_off_in_chunks};
use support::*;

const MIB: u64 = 1 << 20;

/// Stops the task's engine run as the system stops a worker, and holds it for the next run.
fn hold(m: &Manager, id: &str) {
    let m = m.clone();
    let stop = Some(vec![id.to_string()]);
    assert_eq!(ferry::engine::runtime::handle().block_on(async move { m.request_stop(stop, StopCause::Stopped).await }), 1);
}

/// A handed-off download of `size` bytes, every lease's chunk already fetched by the OS (not yet
/// ingested), whose first lease was released: the engine fetches that range itself, slowly,
/// beside the OS's live leases.
fn runner_beside_leases(size: u64) -> (World, String, Vec<(OsRequest, PathBuf, ChunkMeta)>, tempfile::TempDir) {
    let w = World::new(Faults { rate: Some(MIB), ..Faults::new(size) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("f.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= MIB / 2);
    let reqs = hand_off_in_chunks(&w.manager, 4 * MIB);
    assert!(reqs.len() >= 3, "{reqs:?}");
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let chunks: Vec<(OsRequest, PathBuf, ChunkMeta)> = reqs
        .into_iter()
        .map(|r| {
            let (file, meta) = fetch(&r, tmp.path());
            (r, file, meta)
        })
        .collect();
    w.server.set(|f| f.rate = Some(MIB / 2));
    w.manager.release_lease(&chunks[0].0.lease_id).unwrap();
    until(30, "the engine fetching the released range", || w.manager.status(&id).unwrap().connections > 0);
    (w, id, chunks, tmp)
}

#[test]
fn a_changed_resource_reported_by_a_chunk_ends_the_engines_run_beside_the_leases() {
    let (w, id, chunks, tmp) = runner_beside_leases(16 * MIB);
    w.server.set(|f| f.seed = 77);
    let (file, meta) = fetch_with(&chunks[1].0, tmp.path(), &[("If-Range", "")]);
    match w.manager.ingest(&chunks[1].0.lease_id, &file, meta) {
        IngestOutcome::Restart { task_id, .. } => assert_eq!(task_id, id),
        other => panic!("{other:?}"),
    }
    for (r, file, meta) in &chunks[2..] {
        let outcome = w.manager.ingest(&r.lease_id, file, meta.clone());
        assert!(matches!(outcome, IngestOutcome::Rejected { retryable: false, .. }), "a chunk of the old version: {outcome:?}");
    }
    w.server.set(|f| f.rate = None);
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
    assert!(!part_of(&w.out("f.bin")).exists());
}

#[test]
fn a_chunk_that_fails_the_task_ends_the_engines_run_beside_the_leases() {
    let (w, id, chunks, tmp) = runner_beside_leases(16 * MIB);
    std::fs::write(tmp.path().join("gone"), b"not found").unwrap();
    let outcome = w.manager.ingest(&chunks[1].0.lease_id, &tmp.path().join("gone"), ChunkMeta { status: 404, headers: vec![] });
    match &outcome {
        IngestOutcome::Rejected { error, retryable: false, .. } => assert_eq!(error.code(), ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    w.server.set(|f| f.rate = None);
    until(10, "the engine's run to end", || w.manager.running_count() == 0);
    std::thread::sleep(Duration::from_millis(500));
    let st = w.manager.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Failed, "the 404 failed the task for good: {st:?}");
    assert_eq!(st.error.as_ref().map(|e| e.code), Some(ErrorCode::NotFound), "{st:?}");
    assert!(!w.out("f.bin").exists(), "a failed task publishes nothing: {st:?}");
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "resumed after the failure: {st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_chunk_ingested_while_the_engine_fetches_another_range_is_kept_and_the_file_is_exact() {
    let (w, id, chunks, _tmp) = runner_beside_leases(16 * MIB);
    for (r, file, meta) in &chunks[1..] {
        let outcome = w.manager.ingest(&r.lease_id, file, meta.clone());
        assert!(matches!(outcome, IngestOutcome::Committed { task_complete: false, .. }), "{outcome:?}");
    }
    assert_eq!(w.manager.status(&id).unwrap().state, TaskState::Running, "the engine's range is still under way");
    w.server.set(|f| f.rate = None);
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent <= 16 * MIB + 5 * MIB, "only the released range fetched twice: {sent} bytes sent");
}

#[test]
fn chunks_arriving_after_a_stop_of_the_engines_run_beside_the_leases_are_kept() {
    let (w, id, chunks, _tmp) = runner_beside_leases(16 * MIB);
    hold(&w.manager, &id);
    assert_eq!(w.manager.running_count(), 0, "the engine's run stopped");
    for (r, file, meta) in &chunks[1..] {
        let outcome = w.manager.ingest(&r.lease_id, file, meta.clone());
        assert!(matches!(outcome, IngestOutcome::Committed { task_complete: false, .. }), "the OS's chunk is good: {outcome:?}");
    }
    w.server.set(|f| f.rate = None);
    let m = w.manager.clone();
    let ids = Some(vec![id.clone()]);
    let budget = RunBudget { time: Duration::from_secs(60) };
    let outcome = ferry::engine::runtime::handle().block_on(async move { m.run_budgeted(ids, budget).await });
    assert_eq!(outcome[0].1, RunOutcome::Completed, "the next run fetches the released range only");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent <= 16 * MIB + 5 * MIB, "the chunks ingested were not fetched again: {sent} bytes sent");
}

#[test]
fn a_chunk_that_fails_a_held_task_fails_it_for_the_next_run_to_see() {
    let (w, id, chunks, tmp) = runner_beside_leases(16 * MIB);
    hold(&w.manager, &id);
    std::fs::write(tmp.path().join("gone"), b"not found").unwrap();
    let outcome = w.manager.ingest(&chunks[1].0.lease_id, &tmp.path().join("gone"), ChunkMeta { status: 404, headers: vec![] });
    assert!(matches!(outcome, IngestOutcome::Rejected { retryable: false, .. }), "{outcome:?}");
    let st = w.manager.status(&id).unwrap();
    assert_eq!((st.state, st.error.map(|e| e.code)), (TaskState::Failed, Some(ErrorCode::NotFound)));
    assert!(w.manager.live_leases().is_empty(), "every lease ended with the task");
    let m = w.manager.clone();
    let budget = RunBudget { time: Duration::from_secs(5) };
    let outcome = ferry::engine::runtime::handle().block_on(async move { m.run_budgeted(None, budget).await });
    assert!(outcome.is_empty(), "a task failed for good is not run again: {outcome:?}");
}
