//! Budgeted runs, as an Android worker makes them: a run that spends its budget mid-download
//! stops with everything synced and the next one finishes from the journal; a stop requested
//! from outside ends the run at once; a task already running is joined, never started twice; and
//! each way a task can end maps to an outcome the platform can act on.

mod support;

use ferry::engine::{ErrorCode, Manager, Request, RunBudget, RunOutcome, StopCause, TaskState};
use ferry::loopback::Faults;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn run(m: &Manager, ids: Option<Vec<String>>, secs: f64) -> Vec<(String, RunOutcome)> {
    let m = m.clone();
    ferry::engine::runtime::handle().block_on(async move { m.run_budgeted(ids, RunBudget { time: Duration::from_secs_f64(secs) }).await })
}

#[test]
fn a_run_that_spends_its_budget_stops_synced_and_the_next_run_finishes_from_the_journal() {
    let w = World::new(Faults { rate: Some(4 * MIB), ..Faults::new(24 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(4), ..w.request("b.bin") }).unwrap().to_string();
    w.manager.pause(&id).unwrap();
    w.manager.resume(&id).unwrap();
    let first = run(&w.manager, Some(vec![id.clone()]), 1.0);
    match &first[0].1 {
        RunOutcome::Retry { delay, reason, .. } => {
            assert_eq!(*delay, Duration::ZERO, "budget spent: run again as soon as the platform allows");
            assert!(reason.contains("budget"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.manager.running_count(), 0, "stopped at the end of its budget");
    let st = w.manager.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Queued, "held for the next run");
    let journaled: u64 = Manager::list_read_only(w.manager.dir()).unwrap().iter().map(|t| t.bytes).sum();
    assert!(journaled > 0 && journaled <= st.bytes, "the journal holds what was fetched: {journaled} of {}", st.bytes);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.manager.status(&id).unwrap().bytes, st.bytes, "a held task does not start again by itself");
    w.server.set(|f| f.rate = None);
    let second = run(&w.manager, Some(vec![id.clone()]), 60.0);
    assert_eq!(second[0].1, RunOutcome::Completed);
    assert_same(&read(&w.out("b.bin")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(Ordering::SeqCst);
    println!("fetched twice across a budget stop: {} bytes", sent.saturating_sub(24 * MIB));
    assert!(sent <= 24 * MIB + 2 * MIB, "little fetched twice: {sent} bytes sent for {}", 24 * MIB);
}

#[test]
fn a_requested_stop_ends_the_run_within_a_bounded_time_with_the_journal_synced() {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(64 * MIB) });
    let id = w.manager.enqueue(w.request("s.bin")).unwrap().to_string();
    let m = w.manager.clone();
    let waiting = std::thread::spawn({
        let id = id.clone();
        move || run(&m, Some(vec![id]), 600.0)
    });
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= MIB);
    let asked = Instant::now();
    let m = w.manager.clone();
    let stopped = ferry::engine::runtime::handle().block_on(async move { m.request_stop(None, StopCause::Stopped).await });
    assert_eq!(stopped, 1);
    let outcome = waiting.join().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10), "the run ended {:?} after the stop", asked.elapsed());
    assert!(matches!(outcome[0].1, RunOutcome::Retry { .. }), "{outcome:?}");
    assert_eq!(w.manager.running_count(), 0);
    let st = w.manager.status(&id).unwrap();
    let journaled: u64 = Manager::list_read_only(w.manager.dir()).unwrap().iter().map(|t| t.bytes).sum();
    assert!(journaled > 0 && st.bytes - journaled < MIB, "journal synced at the stop: {journaled} of {}", st.bytes);
}

#[test]
fn a_task_the_app_already_runs_is_joined_not_started_twice() {
    let w = World::new(Faults { rate: Some(8 * MIB), ..Faults::new(8 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("j.bin") }).unwrap().to_string();
    until(30, "running", || w.manager.status(&id).unwrap().bytes > 0);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&w.manager, Some(vec![id.clone()]), 60.0));
        let b = s.spawn(|| run(&w.manager, None, 60.0));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a[0].1, RunOutcome::Completed);
    assert!(b.iter().any(|(i, o)| *i == id && *o == RunOutcome::Completed), "{b:?}");
    assert_same(&read(&w.out("j.bin")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(Ordering::SeqCst);
    assert!(sent <= 8 * MIB + MIB, "one download, not two: {sent} bytes sent");
}

#[test]
fn each_way_a_task_ends_has_its_outcome() {
    let w = World::new(Faults::new(MIB));
    let base = w.server.base();
    let missing = w.manager.enqueue(Request::file(format!("{base}/status/404"), w.out("404.bin"))).unwrap().to_string();
    let busy = w.manager.enqueue(Request::file(format!("{base}/status/503"), w.out("503.bin"))).unwrap().to_string();
    let bad_sum = w.manager.enqueue(Request { sha256: Some("0".repeat(64)), ..w.request("sum.bin") }).unwrap().to_string();
    let good = w.manager.enqueue(w.request("ok.bin")).unwrap().to_string();
    let paused = w.manager.enqueue(w.request("paused.bin")).unwrap().to_string();
    w.manager.pause(&paused).unwrap();
    let cancelled = w.manager.enqueue(w.request("cancelled.bin")).unwrap().to_string();
    w.manager.cancel(&cancelled).unwrap();
    let ids = vec![missing, busy, bad_sum, good, paused, cancelled, "nobody".to_string()];
    let outcomes = run(&w.manager, Some(ids), 120.0);
    match &outcomes[0].1 {
        RunOutcome::Failed(e) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("404: {other:?}"),
    }
    match &outcomes[1].1 {
        RunOutcome::Retry { error: Some(e), delay, .. } => {
            assert_eq!(e.code, ErrorCode::ServerError);
            assert!(*delay > Duration::ZERO, "a transient failure is retried later");
        }
        other => panic!("503: {other:?}"),
    }
    match &outcomes[2].1 {
        RunOutcome::Failed(e) => assert_eq!(e.code, ErrorCode::ChecksumMismatch),
        other => panic!("checksum: {other:?}"),
    }
    assert_eq!(outcomes[3].1, RunOutcome::Completed);
    assert_eq!(outcomes[4].1, RunOutcome::Paused);
    assert_eq!(outcomes[5].1, RunOutcome::Cancelled);
    assert_eq!(outcomes[6].1, RunOutcome::NotFound);
}

#[test]
fn a_run_never_starts_more_than_the_limits_allow() {
    let mut config = test_config();
    config.limits.max_running_tasks = 2;
    let w = World::with_config(Faults { rate: Some(MIB), ..Faults::new(MIB) }, config);
    let ids: Vec<String> = (0..6)
        .map(|i| w.manager.enqueue(Request { connections: Some(1), ..w.request(&format!("l{i}.bin")) }).unwrap().to_string())
        .collect();
    let outcomes = run(&w.manager, Some(ids), 60.0);
    assert!(outcomes.iter().all(|(_, o)| *o == RunOutcome::Completed), "{outcomes:?}");
    let busiest = w.server.stats().max_active.load(Ordering::SeqCst);
    assert!(busiest <= 2, "at most two transfers at once, the server saw {busiest}");
}

#[test]
fn a_stop_for_one_task_leaves_the_runs_of_others_alone() {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(8 * MIB) });
    let a = w.manager.enqueue(w.request("a.bin")).unwrap().to_string();
    let b = w.manager.enqueue(w.request("b.bin")).unwrap().to_string();
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| run(&w.manager, Some(vec![a.clone()]), 600.0));
        let rb = s.spawn(|| run(&w.manager, Some(vec![b.clone()]), 600.0));
        until(30, "both under way", || w.manager.status(&a).unwrap().bytes > 0 && w.manager.status(&b).unwrap().bytes > 0);
        let m = w.manager.clone();
        let ids = Some(vec![a.clone()]);
        assert_eq!(ferry::engine::runtime::handle().block_on(async move { m.request_stop(ids, StopCause::NetworkLost).await }), 1);
        w.server.set(|f| f.rate = None);
        (ra.join().unwrap(), rb.join().unwrap())
    });
    assert!(matches!(&ra[0].1, RunOutcome::Retry { reason, .. } if reason.contains("stop")), "{ra:?}");
    assert_eq!(rb[0].1, RunOutcome::Completed, "b's run went on");
    assert_eq!(w.manager.status(&a).unwrap().state, TaskState::Queued);
    assert_same(&read(&w.out("b.bin")), &w.server.expected());
}

#[test]
fn a_task_one_process_held_at_the_end_of_its_budget_is_finished_by_a_run_in_another() {
    let w = World::new(Faults { rate: Some(4 * MIB), ..Faults::new(16 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("h.bin") }).unwrap().to_string();
    let first = run(&w.manager, Some(vec![id.clone()]), 1.0);
    assert!(matches!(first[0].1, RunOutcome::Retry { .. }), "{first:?}");
    assert_eq!(w.manager.status(&id).unwrap().state, TaskState::Queued);
    w.server.set(|f| f.rate = None);
    let other = Manager::open(w.manager.dir(), test_config()).unwrap();
    let started = Instant::now();
    let second = run(&other, Some(vec![id.clone()]), 30.0);
    assert_eq!(second[0].1, RunOutcome::Completed, "after {:?}", started.elapsed());
    assert_same(&read(&w.out("h.bin")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(Ordering::SeqCst);
    assert!(sent <= 16 * MIB + 2 * MIB, "the other process resumed from the journal: {sent} bytes sent");
    other.shutdown_blocking();
}

#[test]
fn a_run_does_not_spend_its_budget_on_a_task_the_os_fetches_whole() {
    use ferry::engine::IngestOutcome;
    let w = World::new(Faults { rate: Some(MIB), ..Faults::new(8 * MIB) });
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("os.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    let reqs = support::os_fetch::hand_off_in_chunks(&w.manager, 64 * MIB);
    assert!(!reqs.is_empty());
    let started = Instant::now();
    let outcome = run(&w.manager, None, 60.0);
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?} for chunks only the OS brings", started.elapsed());
    match &outcome[..] {
        [(got, RunOutcome::Retry { reason, .. })] if got == &id => assert!(reason.contains("OS"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The OS delivers; the task completes without another run.
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    for r in &reqs {
        let (file, meta) = support::os_fetch::fetch(r, tmp.path());
        let ingested = w.manager.ingest(&r.lease_id, &file, meta);
        assert!(matches!(ingested, IngestOutcome::Committed { .. }), "{ingested:?}");
    }
    let st = wait(&w.manager, &id, 30);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("os.bin")), &w.server.expected());
}
