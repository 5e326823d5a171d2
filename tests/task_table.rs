//! The global task table: idempotent ids, destination claims, the state machine driven from the
//! API, scheduling limits, events, and what survives closing and reopening the state directory.

mod support;

use ferry::engine::{runtime, Config, ErrorCode, Event, Limits, Manager, Request, TaskState};
use ferry::loopback::Faults;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn slow(size: u64, rate: u64) -> Faults {
    let mut f = Faults::new(size);
    f.rate = Some(rate);
    f
}

#[test]
fn the_same_id_never_downloads_twice() {
    let w = World::new(Faults::new(MIB));
    let req = Request { task_id: Some("movie".into()), ..w.request("a") };
    let a = w.manager.enqueue(req.clone()).unwrap();
    let b = w.manager.enqueue(req.clone()).unwrap();
    assert_eq!(a, b);
    let info = wait(&w.manager, "movie", 60);
    assert_eq!(info.state, TaskState::Completed);
    let requests = w.server.stats().requests.load(SeqCst);
    // Again after completion: the destination exists now, and still nothing is fetched.
    assert_eq!(w.manager.enqueue(req).unwrap().as_str(), "movie");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(w.server.stats().requests.load(SeqCst), requests);
    let other = Request { task_id: Some("movie".into()), ..Request::file(w.server.url(), w.out("other")) };
    assert_eq!(w.manager.enqueue(other).unwrap_err().code(), ErrorCode::TaskIdConflict);
}

#[test]
fn a_claimed_destination_is_refused() {
    let w = World::new(slow(4 * MIB, 1_000_000));
    w.manager.enqueue(w.request("a")).unwrap();
    let err = w.manager.enqueue(w.request("a")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::DestinationBusy);
    let batch = w.manager.enqueue_batch(vec![w.request("b"), w.request("b")]);
    assert!(batch[0].is_ok());
    assert_eq!(batch[1].as_ref().unwrap_err().code(), ErrorCode::DestinationBusy);
    // The same file spelled another way is the same claim, alone or within a batch.
    let odd = |name: &str| {
        let spelled = format!("{}//./{name}", w.dir.path().display());
        Request::file(w.server.url(), std::path::PathBuf::from(spelled))
    };
    assert_eq!(w.manager.enqueue(odd("a")).unwrap_err().code(), ErrorCode::DestinationBusy);
    let batch = w.manager.enqueue_batch(vec![odd("c"), w.request("c")]);
    assert!(batch[0].is_ok());
    assert_eq!(batch[1].as_ref().unwrap_err().code(), ErrorCode::DestinationBusy);
}

#[test]
fn pause_keeps_the_partial_and_resume_continues_it() {
    let w = World::new(slow(8 * MIB, 4_000_000));
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("a") }).unwrap();
    until(30, "some progress", || w.manager.status(id.as_str()).unwrap().bytes > 2 * MIB);
    w.manager.pause(id.as_str()).unwrap();
    assert_eq!(w.manager.status(id.as_str()).unwrap().state, TaskState::Paused);
    until(10, "the runner to stop", || w.manager.running_count() == 0);
    let paused_bytes = w.manager.status(id.as_str()).unwrap().bytes;
    assert!(part_of(&w.out("a")).exists());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(w.manager.status(id.as_str()).unwrap().bytes, paused_bytes, "paused means no progress");
    w.manager.resume(id.as_str()).unwrap();
    let info = wait(&w.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("a")), &w.server.expected());
    let sent = w.server.stats().body_bytes.load(SeqCst);
    assert!(sent < 8 * MIB + MIB, "resume must not restart: sent {sent}");
}

#[test]
fn cancel_removes_the_partial_and_remove_forgets_the_task() {
    let w = World::new(slow(8 * MIB, 2_000_000));
    let id = w.manager.enqueue(w.request("a")).unwrap();
    until(30, "some progress", || w.manager.status(id.as_str()).unwrap().bytes > 0);
    w.manager.cancel(id.as_str()).unwrap();
    let info = wait(&w.manager, id.as_str(), 10);
    assert_eq!(info.state, TaskState::Cancelled);
    assert!(!part_of(&w.out("a")).exists(), "cancelled means the partial is already gone");
    assert_eq!(w.manager.resume(id.as_str()).unwrap_err().code(), ErrorCode::InvalidState);
    w.manager.remove(id.as_str(), false).unwrap();
    assert_eq!(w.manager.status(id.as_str()).unwrap_err().code(), ErrorCode::TaskNotFound);
    // The destination is free again.
    let info = w.download(Request { task_id: Some("again".into()), ..w.request("a") });
    assert_eq!(info.state, TaskState::Completed);
    w.manager.remove("again", true).unwrap();
    assert!(!w.out("a").exists(), "remove with delete_file deletes the file");
    assert_eq!(w.manager.pause("nope").unwrap_err().code(), ErrorCode::TaskNotFound);
}

#[test]
fn limits_bound_running_tasks_and_connections_per_host() {
    let cfg = Config { limits: Limits { max_running_tasks: 2, max_connections_per_host: 3, max_connections_per_task: 8 }, ..test_config() };
    let w = World::with_config(slow(2 * MIB, 2_000_000), cfg);
    let reqs: Vec<Request> = (0..6).map(|i| Request { connections: Some(4), ..w.request(&format!("f{i}")) }).collect();
    let ids: Vec<_> = w.manager.enqueue_batch(reqs).into_iter().map(|r| r.unwrap()).collect();
    let mut peak_running = 0;
    let mut peak_conn = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while ids.iter().any(|id| w.manager.status(id.as_str()).unwrap().state.is_active()) {
        // Transferring: running with bytes still to come (a finished task may still be syncing its
        // file while the next one starts; that is what the limit allows).
        let running = ids
            .iter()
            .map(|id| w.manager.status(id.as_str()).unwrap())
            .filter(|t| t.state == TaskState::Running && t.total.is_none_or(|total| t.bytes < total))
            .count();
        peak_running = peak_running.max(running);
        peak_conn = peak_conn.max(w.manager.connections_per_host().iter().map(|(_, n)| *n).max().unwrap_or(0));
        assert!(Instant::now() < deadline, "batch did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(peak_running <= 2, "{peak_running} tasks transferred at once");
    assert!(peak_conn <= 3, "{peak_conn} connections to one host");
    assert!(peak_conn >= 2, "the per-host cap was never used");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(w.manager.status(id.as_str()).unwrap().state, TaskState::Completed);
        assert_same(&read(&w.out(&format!("f{i}"))), &w.server.expected());
    }
}

#[test]
fn higher_priority_runs_first() {
    let cfg = Config { limits: Limits { max_running_tasks: 1, ..Limits::default() }, ..test_config() };
    let w = World::with_config(slow(MIB / 2, 4_000_000), cfg);
    let first = w.manager.enqueue(w.request("first")).unwrap();
    let low = w.manager.enqueue(Request { priority: -1, ..w.request("low") }).unwrap();
    let high = w.manager.enqueue(Request { priority: 5, ..w.request("high") }).unwrap();
    for id in [&first, &low, &high] {
        wait(&w.manager, id.as_str(), 60);
    }
    let done = |id: &ferry::engine::TaskId| w.manager.status(id.as_str()).unwrap().updated_ms;
    assert!(done(&high) <= done(&low), "high priority finished after low priority");
}

#[test]
fn events_report_progress_and_every_state_change_in_order() {
    let w = World::new(slow(4 * MIB, 8_000_000));
    let sub = w.manager.subscribe();
    let id = w.manager.enqueue(w.request("a")).unwrap();
    let watched = id.clone();
    // A listener that keeps up: it sees progress as it happens, not just the coalesced end.
    let reader = std::thread::spawn(move || {
        let mut states = Vec::new();
        let mut progress = Vec::new();
        while let Some(ev) = sub.recv_timeout(Duration::from_secs(5)) {
            match ev {
                Event::State(s) if s.id == watched => {
                    states.push(s.to);
                    if s.to == TaskState::Completed {
                        break;
                    }
                }
                Event::Progress(p) if p.id == watched => progress.push(p.bytes),
                _ => {}
            }
        }
        (states, progress)
    });
    wait(&w.manager, id.as_str(), 60);
    let (states, progress) = reader.join().unwrap();
    assert_eq!(states, vec![TaskState::Queued, TaskState::Running, TaskState::Completed]);
    assert!(progress.len() >= 3, "only {} progress events", progress.len());
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress went backwards: {progress:?}");
    assert_eq!(progress.last(), Some(&(4 * MIB)), "the last progress event reports completion");
}

#[test]
fn opening_a_directory_twice_gives_the_same_manager() {
    let w = World::new(Faults::new(1));
    let again = Manager::open(w.dir.path().join("state"), Config::default()).unwrap();
    let id = again.enqueue(w.request("a")).unwrap();
    assert!(w.manager.status(id.as_str()).is_ok(), "both handles see one table");
}

#[test]
fn shutdown_then_reopen_resumes_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let server = ferry::loopback::LoopbackServer::start(runtime::handle(), 0, slow(8 * MIB, 2_000_000)).unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("a");
    {
        let m = Manager::open(&state, test_config()).unwrap();
        let id = m.enqueue(Request { task_id: Some("t".into()), connections: Some(4), ..Request::file(server.url(), &out) }).unwrap();
        until(30, "progress", || m.status(id.as_str()).unwrap().bytes > 3 * MIB);
        m.shutdown_blocking();
        let info = m.status("t").unwrap();
        assert_eq!(info.state, TaskState::Queued, "shutdown puts running tasks back in the queue");
    }
    let sent_before = server.stats().body_bytes.load(SeqCst);
    let m = Manager::open(&state, test_config()).unwrap();
    let info = m.status("t").unwrap();
    assert!(info.bytes > 3 * MIB, "journal lost: {}", info.bytes);
    let info = wait(&m, "t", 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    let refetched = server.stats().body_bytes.load(SeqCst) - sent_before;
    assert!(sent_before + refetched < 8 * MIB + MIB, "sent {sent_before} + {refetched}");
    m.shutdown_blocking();
}

#[test]
fn after_a_reboot_only_synced_bytes_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = ferry::loopback::LoopbackServer::start(runtime::handle(), 0, slow(8 * MIB, 2_000_000)).unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("a");
    let (written, durable);
    {
        let cfg = Config { sync_interval: Duration::from_secs(3600), ..test_config() };
        let m = Manager::open(&state, cfg).unwrap();
        m.enqueue(Request { task_id: Some("t".into()), connections: Some(2), ..Request::file(server.url(), &out) }).unwrap();
        until(30, "progress", || m.status("t").unwrap().bytes > 2 * MIB);
        // Pausing syncs: everything written so far becomes durable.
        m.pause("t").unwrap();
        until(60, "pause", || m.running_count() == 0);
        m.resume("t").unwrap();
        until(30, "more progress", || m.status("t").unwrap().bytes > 5 * MIB);
        m.pause("t").unwrap();
        until(60, "pause", || m.running_count() == 0);
        m.shutdown_blocking();
    }
    {
        // Forge the state a power loss leaves: written offsets beyond the durable ones, a new boot.
        let db = rusqlite::Connection::open(state.join("tasks.sqlite3")).unwrap();
        db.execute("UPDATE ranges SET durable = start + (written - start) / 2", []).unwrap();
        db.execute("UPDATE meta SET value = 'a-previous-boot' WHERE key = 'boot_id'", []).unwrap();
        let sum = |col: &str| -> u64 {
            db.query_row(&format!("SELECT SUM({col} - start) FROM ranges"), [], |r| r.get::<_, i64>(0)).unwrap() as u64
        };
        written = sum("written");
        durable = sum("durable");
    }
    let m = Manager::open(&state, test_config()).unwrap();
    assert!(m.recovery().rebooted);
    assert_eq!(m.status("t").unwrap().bytes, durable);
    assert!(durable < written);
    m.resume("t").unwrap();
    let info = wait(&m, "t", 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    m.shutdown_blocking();
}

#[test]
fn ten_thousand_tasks_enqueue_fast_and_start_few_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = ferry::loopback::LoopbackServer::start(runtime::handle(), 0, slow(64 * 1024, 100_000)).unwrap();
    let state = dir.path().join("state");
    let cfg = Config { limits: Limits { max_running_tasks: 8, max_connections_per_host: 8, max_connections_per_task: 4 }, ..test_config() };
    let m = Manager::open(&state, cfg.clone()).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let reqs: Vec<Request> = (0..10_000).map(|i| Request::file(server.url(), out.join(format!("f{i}")))).collect();
    let t = Instant::now();
    let results = m.enqueue_batch(reqs);
    let enqueue = t.elapsed();
    assert!(results.iter().all(|r| r.is_ok()));
    std::thread::sleep(Duration::from_millis(300));
    // A task whose bytes are all in no longer counts against the limit while its file is made
    // durable (it still reports `running` until the file is in place): count the transferring ones.
    let transferring = m.list().iter().filter(|t| t.state == TaskState::Running && t.total != Some(t.bytes)).count();
    assert!(transferring <= 8, "{transferring} transferring");
    let max_active = server.stats().max_active.load(SeqCst);
    assert!(max_active <= 8, "{max_active} bodies were being sent at once");
    m.pause_all();
    m.shutdown_blocking();
    drop(m);
    let t = Instant::now();
    let m = Manager::open(&state, Config { resume_on_open: false, ..cfg }).unwrap();
    let reopen = t.elapsed();
    let t = Instant::now();
    let listed = m.list();
    let list = t.elapsed();
    assert_eq!(listed.len(), 10_000);
    println!("10,000 tasks: enqueue {enqueue:?}, reopen {reopen:?}, list {list:?}");
    m.shutdown_blocking();
}

#[test]
fn flush_makes_written_bytes_durable_at_once() {
    let cfg = Config { sync_interval: Duration::from_secs(3600), ..test_config() };
    let w = World::with_config(slow(8 * MIB, 2_000_000), cfg);
    let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("a") }).unwrap();
    until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 2 * MIB);
    let m = w.manager.clone();
    runtime::handle().block_on(async move { m.flush().await });
    let db = rusqlite::Connection::open(w.dir.path().join("state").join("tasks.sqlite3")).unwrap();
    let durable: i64 = db.query_row("SELECT SUM(durable - start) FROM ranges", [], |r| r.get(0)).unwrap();
    assert!(durable as u64 > 2 * MIB, "flush left only {durable} durable bytes");
    let info = wait(&w.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed);
}

#[test]
fn a_file_too_small_to_split_flushes_pauses_and_resumes_on_its_own_task() {
    // 100 KiB is under two minimum splits (64 KiB in tests): one connection, streamed on the
    // runner's own task, which must still answer flush and pause.
    let size = 100 * 1024;
    let cfg = Config { sync_interval: Duration::from_secs(3600), ..test_config() };
    let w = World::with_config(slow(size, 40_000), cfg);
    let id = w.manager.enqueue(w.request("small")).unwrap();
    until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 20 * 1024);
    let m = w.manager.clone();
    runtime::handle().block_on(async move { m.flush().await });
    let db = rusqlite::Connection::open(w.dir.path().join("state").join("tasks.sqlite3")).unwrap();
    let durable: i64 = db.query_row("SELECT COALESCE(SUM(durable - start), 0) FROM ranges", [], |r| r.get(0)).unwrap();
    assert!(durable > 0, "flush made nothing durable");
    assert!(part_of(&w.out("small")).exists(), "a durable partial has its name");
    w.manager.pause(id.as_str()).unwrap();
    until(10, "the runner to stop", || w.manager.running_count() == 0);
    let paused = w.manager.status(id.as_str()).unwrap().bytes;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(w.manager.status(id.as_str()).unwrap().bytes, paused, "paused means no progress");
    w.server.set(|f| f.rate = None);
    w.manager.resume(id.as_str()).unwrap();
    let info = wait(&w.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("small")), &w.server.expected());
    assert!(!part_of(&w.out("small")).exists());
    let sent = w.server.stats().body_bytes.load(SeqCst);
    assert!(sent < size + size / 2, "resume must continue, not restart: sent {sent}");
}

#[test]
fn shutdown_closes_event_streams_and_reopening_revives_the_manager() {
    let w = World::new(slow(4 * MIB, 2_000_000));
    let sub = w.manager.subscribe();
    let id = w.manager.enqueue(Request { task_id: Some("r".into()), ..w.request("a") }).unwrap();
    until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 0);
    w.manager.shutdown_blocking();
    let ended = runtime::handle()
        .block_on(async move { tokio::time::timeout(Duration::from_secs(5), async { while sub.next().await.is_some() {} }).await });
    assert!(ended.is_ok(), "the event stream did not end after shutdown");
    assert_eq!(w.manager.enqueue(w.request("b")).unwrap_err().code(), ErrorCode::ShutDown);
    let again = Manager::open(w.dir.path().join("state"), test_config()).unwrap();
    let info = wait(&again, "r", 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("a")), &w.server.expected());
}

#[test]
fn small_files_published_together_are_recorded_completed() {
    let cfg = Config { limits: Limits { max_running_tasks: 16, ..Limits::default() }, ..test_config() };
    let w = World::with_config(Faults::new(16 * 1024), cfg);
    let reqs: Vec<Request> = (0..200).map(|i| w.request(&format!("s{i}"))).collect();
    let ids: Vec<_> = w.manager.enqueue_batch(reqs).into_iter().map(|r| r.unwrap()).collect();
    for id in &ids {
        assert_eq!(wait(&w.manager, id.as_str(), 60).state, TaskState::Completed);
    }
    w.manager.shutdown_blocking();
    let db = rusqlite::Connection::open(w.dir.path().join("state").join("tasks.sqlite3")).unwrap();
    let (done, ranges): (i64, i64) = db
        .query_row("SELECT (SELECT COUNT(*) FROM tasks WHERE state = 3 AND bytes = 16384), (SELECT COUNT(*) FROM ranges)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((done, ranges), (200, 0), "every completion is in the table and no journal is left");
    for i in 0..200 {
        assert_same(&read(&w.out(&format!("s{i}"))), &w.server.expected());
    }
}

#[test]
fn a_batch_spanning_several_chunks_catches_duplicates_across_them() {
    let w = World::new(slow(MIB, 2_000_000));
    let mut reqs: Vec<Request> = (0..700).map(|i| w.request(&format!("f{i}"))).collect();
    // Recorded in chunks of 32 then 512: these pairs straddle chunk boundaries.
    reqs[600] = w.request("f5");
    reqs[650] = Request { task_id: Some("twin".into()), ..w.request("twin") };
    reqs[10] = Request { task_id: Some("twin".into()), ..w.request("twin") };
    reqs[40] = Request { task_id: Some("clash".into()), ..w.request("clash-a") };
    reqs[699] = Request { task_id: Some("clash".into()), ..w.request("clash-b") };
    let results = w.manager.enqueue_batch(reqs);
    assert_eq!(results.len(), 700);
    assert_eq!(results[600].as_ref().unwrap_err().code(), ErrorCode::DestinationBusy);
    assert_eq!(results[10].as_ref().unwrap().as_str(), "twin");
    assert_eq!(results[650].as_ref().unwrap().as_str(), "twin");
    assert_eq!(results[699].as_ref().unwrap_err().code(), ErrorCode::TaskIdConflict);
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 698);
    assert_eq!(w.manager.list().len(), 697);
    w.manager.pause_all();
    w.manager.shutdown_blocking();
}

#[test]
fn wait_idle_returns_once_nothing_is_queued_or_running() {
    let w = World::new(Faults::new(256 * 1024));
    let reqs: Vec<Request> = (0..40).map(|i| w.request(&format!("f{i}"))).collect();
    assert!(w.manager.enqueue_batch(reqs).iter().all(|r| r.is_ok()));
    let idle = runtime::handle().block_on(async { tokio::time::timeout(Duration::from_secs(60), w.manager.wait_idle()).await });
    assert!(idle.is_ok(), "still busy after 60 s");
    assert!(!w.manager.is_busy());
    assert!(w.manager.list().iter().all(|t| t.state == TaskState::Completed));

    // Pausing the only queued task leaves the scheduler idle without a runner exiting.
    let slow_world = World::new(slow(4 * MIB, 200_000));
    let cfg_limits = Limits { max_running_tasks: 1, ..slow_world.manager.limits() };
    slow_world.manager.set_limits(cfg_limits).unwrap();
    let a = slow_world.manager.enqueue(slow_world.request("a")).unwrap();
    let b = slow_world.manager.enqueue(slow_world.request("b")).unwrap();
    slow_world.manager.pause(a.as_str()).unwrap();
    slow_world.manager.pause(b.as_str()).unwrap();
    let idle = runtime::handle().block_on(async { tokio::time::timeout(Duration::from_secs(10), slow_world.manager.wait_idle()).await });
    assert!(idle.is_ok(), "wait_idle missed a pause");
    slow_world.manager.shutdown_blocking();
}
