//! Races between the caller and a live task in one process: pausing, resuming, cancelling and
//! removing at awkward moments (right after enqueue, during the publish of the finished file),
//! concurrent enqueues of one id, and a long pause/resume storm. Every case must end in a state the
//! contract names, with the exact bytes, no leaked connection slot, and a task table that agrees
//! with memory after a reopen.

mod support;

use ferry::engine::{Config, ErrorCode, Manager, Request, TaskState};
use ferry::loopback::{content, Faults};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn slow(size: u64, rate: u64) -> Faults {
    let mut f = Faults::new(size);
    f.rate = Some(rate);
    f
}

fn slots_in_use(m: &Manager) -> u32 {
    m.connections_per_host().iter().map(|(_, n)| *n).sum()
}

/// A large download whose publish takes a while (the checksum is read back from the part file),
/// and a probe that waits until every byte is in but the file is not in place yet.
struct Publishing {
    w: World,
    id: String,
}

impl Publishing {
    fn start(size: u64) -> Publishing {
        let w = World::new(Faults::new(size));
        let sum = content::sha256(1, size);
        let req = Request { task_id: Some("pub".into()), connections: Some(4), sha256: Some(sum), ..w.request("big.bin") };
        w.manager.enqueue(req).unwrap();
        Publishing { w, id: "pub".into() }
    }

    /// Waits for the window between "all bytes in" and "file in place". False if it was missed.
    fn wait_for_publish(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info = self.w.manager.status(&self.id).unwrap();
            // Every byte in and no connection slot held: the runner is past its transfer (it gives
            // its slots back before publishing), and the file is not in place yet.
            if info.state == TaskState::Running
                && info.total.is_some_and(|t| info.bytes == t)
                && slots_in_use(&self.w.manager) == 0
                && !self.w.out("big.bin").exists()
            {
                return true;
            }
            if !info.state.is_active() || Instant::now() > deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }
}

fn reopened_state(state: &std::path::Path, id: &str) -> TaskState {
    let tasks = Manager::list_read_only(state).unwrap();
    tasks.iter().find(|t| t.id.as_str() == id).map(|t| t.state).expect("task in the table")
}

/// Runs `check` on a download caught while its file is being published (up to five tries: the
/// publish of 96 MiB lasts long enough to be caught, but not always on the first try).
fn during_a_publish(check: impl Fn(&Publishing)) {
    for _ in 0..5 {
        let p = Publishing::start(96 * MIB);
        if p.wait_for_publish() {
            check(&p);
            return;
        }
    }
    panic!("never caught a publish in progress");
}

#[test]
fn pause_then_resume_during_publish_completes_once() {
    // Several tries: the publish window is short on a fast disk; one hit is enough to judge.
    during_a_publish(|p| {
        let requests = p.w.server.stats().requests.load(SeqCst);
        p.w.manager.pause(&p.id).unwrap();
        p.w.manager.resume(&p.id).unwrap();
        let info = wait(&p.w.manager, &p.id, 60);
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
        assert_same(&read(&p.w.out("big.bin")), &p.w.server.expected());
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(p.w.manager.status(&p.id).unwrap().state, TaskState::Completed, "completed is final");
        assert_eq!(p.w.server.stats().requests.load(SeqCst), requests, "every byte was in: nothing may be fetched again");
        p.w.manager.shutdown_blocking();
        assert_eq!(reopened_state(&p.w.dir.path().join("state"), &p.id), TaskState::Completed);
    });
}

#[test]
fn pause_during_publish_is_recorded_completed() {
    during_a_publish(|p| {
        p.w.manager.pause(&p.id).unwrap();
        until(60, "the runner to finish", || p.w.manager.running_count() == 0);
        assert_eq!(p.w.manager.status(&p.id).unwrap().state, TaskState::Completed, "the file is complete, so the task is");
        p.w.manager.shutdown_blocking();
        assert_eq!(reopened_state(&p.w.dir.path().join("state"), &p.id), TaskState::Completed, "memory and table disagree");
    });
}

#[test]
fn small_files_paused_around_their_publish_agree_with_the_table() {
    // Small files publish through the group commit, which records the completion itself; a pause
    // arriving around that moment must not leave the table saying anything but completed.
    let cfg = Config { limits: ferry::engine::Limits { max_running_tasks: 16, ..Default::default() }, ..test_config() };
    let w = World::with_config(Faults::new(256 * 1024), cfg);
    let reqs: Vec<Request> = (0..64).map(|i| Request { task_id: Some(format!("s{i}")), ..w.request(&format!("s{i}")) }).collect();
    let ids: Vec<_> = w.manager.enqueue_batch(reqs).into_iter().map(|r| r.unwrap()).collect();
    // Pause every task the moment its bytes are all in; resume every other one right away.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut paused = std::collections::HashSet::new();
    while ids.iter().any(|id| w.manager.status(id.as_str()).unwrap().state.is_active()) && Instant::now() < deadline {
        for id in &ids {
            let info = w.manager.status(id.as_str()).unwrap();
            if info.state == TaskState::Running && info.total.is_some_and(|t| info.bytes == t) && paused.insert(id.clone()) {
                let _ = w.manager.pause(id.as_str());
                if paused.len() % 2 == 0 {
                    let _ = w.manager.resume(id.as_str());
                }
            }
        }
    }
    until(60, "every runner to finish", || w.manager.running_count() == 0);
    // A task paused before its publish began stays paused (and finishes when resumed); one paused
    // during its publish is completed. Either way memory and table agree.
    w.manager.resume_all();
    for id in &ids {
        let info = wait(&w.manager, id.as_str(), 60);
        assert_eq!(info.state, TaskState::Completed, "{id}: {:?}", info.error);
        assert_same(&read(&w.out(id.as_str())), &w.server.expected());
    }
    w.manager.shutdown_blocking();
    for t in Manager::list_read_only(w.dir.path().join("state")).unwrap() {
        assert_eq!(t.state, TaskState::Completed, "{} is {} in the table", t.id, t.state);
    }
}

#[test]
fn cancel_during_publish_loses_the_race_and_the_task_completes() {
    during_a_publish(|p| {
        p.w.manager.cancel(&p.id).unwrap();
        let info = wait(&p.w.manager, &p.id, 60);
        // The bytes were all in and being published: completion wins, and the file is whole.
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
        assert_same(&read(&p.w.out("big.bin")), &p.w.server.expected());
        assert!(!part_of(&p.w.out("big.bin")).exists());
    });
}

#[test]
fn remove_with_delete_during_publish_leaves_no_file() {
    during_a_publish(|p| {
        p.w.manager.remove(&p.id, true).unwrap();
        until(60, "the runner to finish", || p.w.manager.running_count() == 0);
        assert_eq!(p.w.manager.status(&p.id).unwrap_err().code(), ErrorCode::TaskNotFound);
        assert!(!p.w.out("big.bin").exists(), "remove(delete_file) left the published file");
        assert!(!part_of(&p.w.out("big.bin")).exists());
    });
}

#[test]
fn shutdown_during_publish_finishes_the_file_and_records_it() {
    during_a_publish(|p| {
        let requests = p.w.server.stats().requests.load(SeqCst);
        p.w.manager.shutdown_blocking();
        let state = p.w.dir.path().join("state");
        assert_eq!(reopened_state(&state, &p.id), TaskState::Completed, "shutdown waits for a publish in progress");
        let m = Manager::open(&state, test_config()).unwrap();
        let info = wait(&m, &p.id, 60);
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
        assert_same(&read(&p.w.out("big.bin")), &p.w.server.expected());
        assert_eq!(p.w.server.stats().requests.load(SeqCst), requests, "fetched again after every byte was in");
        m.shutdown_blocking();
    });
}

#[test]
fn remove_while_running_with_and_without_deleting() {
    let w = World::new(slow(8 * MIB, 2_000_000));
    for (name, delete) in [("keep", false), ("delete", true)] {
        let id = w.manager.enqueue(Request { connections: Some(2), ..w.request(name) }).unwrap();
        until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 0);
        w.manager.remove(id.as_str(), delete).unwrap();
        assert_eq!(w.manager.status(id.as_str()).unwrap_err().code(), ErrorCode::TaskNotFound);
        until(10, "the runner to stop", || w.manager.running_count() == 0);
        assert!(!part_of(&w.out(name)).exists(), "a removed task's partial is removed");
        assert!(!w.out(name).exists());
    }
    until(5, "slots back", || slots_in_use(&w.manager) == 0);
    w.manager.shutdown_blocking();
    assert!(Manager::list_read_only(w.dir.path().join("state")).unwrap().is_empty(), "removed tasks left rows");
}

#[test]
fn the_destination_of_a_task_cancelled_or_removed_while_running_can_be_enqueued_at_once() {
    let w = World::new(slow(4 * MIB, 4_000_000));
    for (round, remove) in [(0, true), (1, false), (2, true)] {
        let id = w.manager.enqueue(Request { connections: Some(2), ..w.request("f") }).unwrap();
        until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 0);
        if remove {
            w.manager.remove(id.as_str(), false).unwrap();
        } else {
            w.manager.cancel(id.as_str()).unwrap();
        }
        // The same destination, with the same id after a remove (ids are free again) and a new
        // one after a cancel (the cancelled task keeps its id).
        let again = if remove { id.to_string() } else { format!("again-{round}") };
        let req = Request { task_id: Some(again.clone()), connections: Some(2), ..w.request("f") };
        let id2 = w.manager.enqueue(req).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(id2.as_str(), again);
        if round < 2 {
            // Stopped again while running, for the next round.
            until(30, "progress", || w.manager.status(id2.as_str()).unwrap().bytes > 0);
            w.manager.remove(id2.as_str(), false).unwrap();
        } else {
            let info = wait(&w.manager, id2.as_str(), 60);
            assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
            assert_same(&read(&w.out("f")), &content::bytes(1, 4 * MIB));
        }
    }
}

#[test]
fn pause_right_after_enqueue_and_resume_twice() {
    // Slow enough that the pause lands before the file is published, however loaded the machine
    // (a pause that loses the race with the publish ends completed, by contract).
    let w = World::new(slow(4 * MIB, 8_000_000));
    let id = w.manager.enqueue(w.request("a")).unwrap();
    w.manager.pause(id.as_str()).unwrap();
    assert_eq!(w.manager.status(id.as_str()).unwrap().state, TaskState::Paused);
    until(10, "the runner to stop", || w.manager.running_count() == 0);
    assert_eq!(w.manager.status(id.as_str()).unwrap().state, TaskState::Paused, "a stopped runner must not undo the pause");
    w.manager.resume(id.as_str()).unwrap();
    w.manager.resume(id.as_str()).unwrap();
    let info = wait(&w.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("a")), &w.server.expected());
    assert_eq!(w.manager.resume(id.as_str()).unwrap_err().code(), ErrorCode::InvalidState);
}

#[test]
fn sixteen_threads_enqueue_one_id_and_it_downloads_once() {
    let w = World::new(Faults::new(2 * MIB));
    let barrier = std::sync::Barrier::new(16);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    w.manager.enqueue(Request { task_id: Some("one".into()), ..w.request("one.bin") })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r.as_ref().unwrap().as_str(), "one");
    }
    let info = wait(&w.manager, "one", 60);
    assert_eq!(info.state, TaskState::Completed);
    assert_eq!(w.manager.list().len(), 1);
    assert_eq!(w.server.stats().body_bytes.load(SeqCst), 2 * MIB, "downloaded more than once");
}

#[test]
fn the_same_id_with_another_checksum_or_header_is_a_conflict() {
    let w = World::new(slow(4 * MIB, 1_000_000));
    let base = Request { task_id: Some("t".into()), ..w.request("t.bin") };
    w.manager.enqueue(base.clone()).unwrap();
    let sum = Request { sha256: Some("ab".repeat(32)), ..base.clone() };
    assert_eq!(w.manager.enqueue(sum).unwrap_err().code(), ErrorCode::TaskIdConflict, "a different checksum was silently ignored");
    let hdr = Request { headers: vec![("X-Token".into(), "1".into())], ..base.clone() };
    assert_eq!(w.manager.enqueue(hdr).unwrap_err().code(), ErrorCode::TaskIdConflict, "a different header was silently ignored");
    // The same request again, spelled with harmless differences, is the same task.
    let same = Request { url: format!("  {}  ", base.url), ..base.clone() };
    assert_eq!(w.manager.enqueue(same).unwrap().as_str(), "t");
}

#[test]
fn a_batch_with_one_id_twice_and_one_destination_twice() {
    let w = World::new(Faults::new(MIB));
    let a = Request { task_id: Some("a".into()), ..w.request("a.bin") };
    let a_other = Request { task_id: Some("a".into()), ..w.request("a2.bin") };
    let b1 = Request { task_id: Some("b1".into()), ..w.request("b.bin") };
    let b2 = Request { task_id: Some("b2".into()), ..w.request("b.bin") };
    let r = w.manager.enqueue_batch(vec![a.clone(), a.clone(), a_other, b1, b2]);
    assert_eq!(r[0].as_ref().unwrap().as_str(), "a");
    assert_eq!(r[1].as_ref().unwrap().as_str(), "a");
    assert_eq!(r[2].as_ref().unwrap_err().code(), ErrorCode::TaskIdConflict);
    assert_eq!(r[3].as_ref().unwrap().as_str(), "b1");
    assert_eq!(r[4].as_ref().unwrap_err().code(), ErrorCode::DestinationBusy);
    for id in ["a", "b1"] {
        assert_eq!(wait(&w.manager, id, 60).state, TaskState::Completed);
    }
    assert_eq!(w.manager.list().len(), 2);
    assert!(!w.out("a2.bin").exists());
}

#[test]
fn two_hundred_pauses_and_resumes_end_exact_without_leaking_slots() {
    let w = World::new(slow(16 * MIB, 4_000_000));
    let id = w.manager.enqueue(Request { connections: Some(4), ..w.request("storm.bin") }).unwrap();
    until(30, "progress", || w.manager.status(id.as_str()).unwrap().bytes > 0);
    for i in 0..200 {
        match w.manager.pause(id.as_str()) {
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::InvalidState => break, // finished already
            Err(e) => panic!("pause {i}: {e}"),
        }
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
        w.manager.resume(id.as_str()).unwrap();
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let info = wait(&w.manager, id.as_str(), 120);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("storm.bin")), &w.server.expected());
    until(5, "every connection slot back", || slots_in_use(&w.manager) == 0);
    until(5, "no open connection at the server", || w.server.stats().active.load(SeqCst) == 0);
}

#[test]
fn a_task_paused_in_one_process_is_not_touched_by_list_from_another_view() {
    // Manager::list_read_only while the manager writes: never an error, never a torn table.
    let w = World::new(slow(8 * MIB, 4_000_000));
    let id = w.manager.enqueue(Request { connections: Some(4), ..w.request("a") }).unwrap();
    let state = w.dir.path().join("state");
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.manager.status(id.as_str()).unwrap().state.is_active() {
        let listed = Manager::list_read_only(&state).expect("read-only list while writing");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].bytes <= 8 * MIB);
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(wait(&w.manager, id.as_str(), 5).state, TaskState::Completed);
}

#[test]
fn opening_one_state_directory_through_another_path_gives_the_same_manager() {
    let w = World::new(Faults::new(1));
    let link = w.dir.path().join("link");
    std::os::unix::fs::symlink(w.dir.path().join("state"), &link).unwrap();
    let again = Manager::open(&link, test_config()).expect("the same directory through a symlink");
    let id = again.enqueue(w.request("x")).unwrap();
    assert!(w.manager.status(id.as_str()).is_ok(), "two managers on one table");
    let dotted = Manager::open(w.dir.path().join("state").join("..").join("state"), test_config()).expect("with ..");
    assert!(dotted.status(id.as_str()).is_ok());
}

#[test]
fn removing_a_completed_task_with_its_file_spares_a_newer_download_of_that_destination() {
    // A file is downloaded again by a new task (overwrite); removing the old task with its file
    // must not delete the new task's file, before or after a reopen. The old task's own file is
    // still deleted.
    let w = World::new(Faults::new(200_000));
    let mut f = Faults::new(300_000);
    f.seed = 99;
    let newer = ferry::loopback::LoopbackServer::start(ferry::engine::runtime::handle(), 0, f).unwrap();
    let state = w.dir.path().join("state");
    let mut m = w.manager.clone();
    for (round, reopen) in [(0, false), (1, true)] {
        let dest = w.out(&format!("f{round}"));
        let old = m.enqueue(Request::file(w.server.url(), &dest)).unwrap();
        assert_eq!(wait(&m, old.as_str(), 30).state, TaskState::Completed);
        let new = m.enqueue(Request { overwrite: true, ..Request::file(newer.url(), &dest) }).unwrap();
        assert_eq!(wait(&m, new.as_str(), 30).state, TaskState::Completed);
        let lone = m.enqueue(Request::file(w.server.url(), w.out(&format!("lone{round}")))).unwrap();
        assert_eq!(wait(&m, lone.as_str(), 30).state, TaskState::Completed);
        if reopen {
            m.shutdown_blocking();
            m = Manager::open(&state, test_config()).unwrap();
        }
        m.remove(old.as_str(), true).unwrap();
        assert_same(&read(&dest), &newer.expected());
        assert_eq!(m.status(new.as_str()).unwrap().state, TaskState::Completed);
        m.remove(lone.as_str(), true).unwrap();
        assert!(!w.out(&format!("lone{round}")).exists(), "round {round}: a task's own file is deleted with it");
    }
}
