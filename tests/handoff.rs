//! The hand-off to the OS, with a stand-in for the OS's fetcher (`support::os_fetch`): ranges
//! leased while downloads run, fetched outside the engine, ingested back and published; and every
//! way a chunk can come back wrong.

mod support;

use ferry::engine::{ChunkMeta, ErrorCode, HandoffOptions, IngestOutcome, Manager, OsRequest, OsTask, Request, TaskState};
use ferry::loopback::{Faults, Validators};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::os_fetch::{fetch, fetch_with};
use support::*;

const MIB: u64 = 1 << 20;

fn hand_off(m: &Manager, ids: Option<Vec<String>>, options: HandoffOptions) -> ferry::engine::HandoffReport {
    let m = m.clone();
    ferry::engine::runtime::handle().block_on(async move { m.hand_off(ids, options).await }).expect("hand off")
}

fn small_chunks() -> HandoffOptions {
    HandoffOptions { chunk_bytes: 4 * MIB, ..HandoffOptions::default() }
}

/// A download of `size` bytes running at `rate` bytes/s per connection, with some bytes in.
fn running(size: u64, rate: u64) -> (World, String) {
    let w = World::new(Faults { rate: Some(rate), ..Faults::new(size) });
    let id = w.manager.enqueue(Request { connections: Some(4), ..w.request("f.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= MIB);
    (w, id)
}

fn ingest_all(w: &World, reqs: &[OsRequest]) -> Vec<IngestOutcome> {
    let tmp = tempfile::tempdir().unwrap();
    reqs.iter()
        .map(|r| {
            let (file, meta) = fetch(r, tmp.path());
            w.manager.ingest(&r.lease_id, &file, meta)
        })
        .collect()
}

#[test]
fn leased_ranges_fetched_outside_the_engine_make_the_exact_file_with_nothing_fetched_twice() {
    let (w, id) = running(40 * MIB, 4 * MIB);
    let report = hand_off(&w.manager, None, small_chunks());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let st = w.manager.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Running, "handed off, still running for the user");
    assert!(st.handed_off);
    let written = st.bytes;
    let reqs = report.requests;
    assert!(reqs.iter().all(|r| r.end - r.start <= 4 * MIB && !r.whole && r.task_id == id));
    let leased: u64 = reqs.iter().map(|r| r.end - r.start).sum();
    assert_eq!(leased, 40 * MIB - written, "the leases cover exactly the bytes left");
    for r in &reqs {
        assert_eq!(r.os_tag, format!("ferry1:{}", r.lease_id));
        assert!(r.headers.iter().any(|(n, v)| n == "If-Range" && v.starts_with('"')), "a strong validator guards each chunk");
        assert!(r.headers.iter().any(|(n, v)| n == "Accept-Encoding" && v == "identity"));
    }
    let sent_before = w.server.stats().body_bytes.load(Ordering::SeqCst);
    w.server.set(|f| f.rate = None);
    let outcomes = ingest_all(&w, &reqs);
    let completes = outcomes.iter().filter(|o| matches!(o, IngestOutcome::Committed { task_complete: true, .. })).count();
    assert!(outcomes.iter().all(|o| matches!(o, IngestOutcome::Committed { .. })), "{outcomes:?}");
    assert_eq!(completes, 1, "the last chunk publishes the file");
    let st = w.manager.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Completed);
    assert!(!st.handed_off);
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
    assert!(!part_of(&w.out("f.bin")).exists());
    let sent = w.server.stats().body_bytes.load(Ordering::SeqCst);
    assert_eq!(sent - sent_before, leased, "the OS fetched each leased byte once");
    assert!(sent <= 40 * MIB + 8 * MIB, "little fetched twice across the hand-off: {} MiB sent for 40", sent / MIB);
    assert!(std::fs::read_dir(w.manager.dir().join("staging")).map_or(true, |d| d.count() == 0), "nothing left staged");
}

#[test]
fn a_chunk_ingested_twice_or_for_an_unknown_lease_changes_nothing() {
    let (w, id) = running(24 * MIB, 4 * MIB);
    let reqs = hand_off(&w.manager, None, small_chunks()).requests;
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(&reqs[0], tmp.path());
    let copy = tmp.path().join("again");
    std::fs::copy(&file, &copy).unwrap();
    assert!(matches!(w.manager.ingest(&reqs[0].lease_id, &file, meta.clone()), IngestOutcome::Committed { task_complete: false, .. }));
    assert!(!file.exists(), "the ingested file is deleted");
    assert_eq!(w.manager.ingest(&reqs[0].lease_id, &copy, meta.clone()), IngestOutcome::AlreadyCommitted);
    assert!(!copy.exists());
    std::fs::write(&copy, b"junk").unwrap();
    match w.manager.ingest("0badcafe-99999", &copy, meta.clone()) {
        IngestOutcome::Rejected { error, retryable: false, .. } => assert_eq!(error.code(), ErrorCode::UnknownLease),
        other => panic!("{other:?}"),
    }
    std::fs::write(&copy, b"junk").unwrap();
    match w.manager.ingest("../../etc/passwd", &copy, meta) {
        IngestOutcome::Rejected { error, .. } => assert_eq!(error.code(), ErrorCode::UnknownLease),
        other => panic!("{other:?}"),
    }
    w.server.set(|f| f.rate = None);
    ingest_all(&w, &reqs[1..]);
    assert_eq!(w.manager.status(&id).unwrap().state, TaskState::Completed);
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_whole_answer_to_a_range_a_changed_version_or_a_416_restart_cleanly_and_never_stitch() {
    for case in ["200", "changed", "416"] {
        let (w, id) = running(16 * MIB, 4 * MIB);
        let reqs = hand_off(&w.manager, None, small_chunks()).requests;
        let tmp = tempfile::tempdir().unwrap();
        let (file, meta) = match case {
            "200" => fetch_with(&reqs[0], tmp.path(), &[("Range", "")]),
            "changed" => {
                w.server.set(|f| f.seed = 99);
                fetch_with(&reqs[0], tmp.path(), &[("If-Range", "")])
            }
            _ => fetch_with(&reqs[0], tmp.path(), &[("Range", "bytes=99999999-")]),
        };
        w.server.set(|f| f.rate = None);
        match w.manager.ingest(&reqs[0].lease_id, &file, meta) {
            IngestOutcome::Restart { task_id, cancel_os_tags, .. } => {
                assert_eq!(task_id, id);
                assert_eq!(cancel_os_tags.len(), reqs.len(), "{case}: every other OS task of the task is to be cancelled");
            }
            other => panic!("{case}: {other:?}"),
        }
        let st = wait(&w.manager, &id, 60);
        assert_eq!(st.state, TaskState::Completed, "{case}: {st:?}");
        assert_same(&read(&w.out("f.bin")), &w.server.expected());
        for r in &reqs[1..] {
            let (file, meta) = fetch(r, tmp.path());
            assert!(
                matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Rejected { retryable: false, .. }),
                "{case}: a late chunk of the old run"
            );
            assert!(!file.exists(), "{case}: deleted, never written");
        }
        assert_same(&read(&w.out("f.bin")), &w.server.expected());
    }
}

#[test]
fn refused_chunks_release_their_range_to_the_engine_and_say_why() {
    let (w, id) = running(16 * MIB, 4 * MIB);
    let reqs = hand_off(&w.manager, None, small_chunks()).requests;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("body"), b"denied").unwrap();
    let denied = ChunkMeta { status: 403, headers: vec![] };
    match w.manager.ingest(&reqs[0].lease_id, &tmp.path().join("body"), denied) {
        IngestOutcome::Rejected { credentials: true, retryable: true, error, .. } => assert_eq!(error.http_status(), Some(403)),
        other => panic!("{other:?}"),
    }
    let (file, meta) = fetch(&reqs[1], tmp.path());
    let short = std::fs::read(&file).unwrap();
    std::fs::write(&file, &short[..short.len() / 2]).unwrap();
    assert!(matches!(w.manager.ingest(&reqs[1].lease_id, &file, meta), IngestOutcome::Rejected { retryable: true, .. }), "a short chunk");
    w.server.set(|f| f.rate = None);
    for r in &reqs[2..] {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "the engine fetched the released ranges itself: {st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_self_resumed_leg_is_accepted_when_the_file_holds_the_whole_lease() {
    let (w, id) = running(16 * MIB, 4 * MIB);
    let reqs = hand_off(&w.manager, None, small_chunks()).requests;
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    for r in &reqs {
        let (file, mut meta) = fetch(r, tmp.path());
        // iOS stitched two legs; the Content-Range names only the second one.
        let leg = r.start + (r.end - r.start) / 3;
        for (n, v) in meta.headers.iter_mut() {
            if n.eq_ignore_ascii_case("content-range") {
                *v = format!("bytes {leg}-{}/{}", r.end - 1, 16 * MIB);
            }
            if n.eq_ignore_ascii_case("content-length") {
                *v = (r.end - leg).to_string();
            }
        }
        assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    assert_eq!(w.manager.status(&id).unwrap().state, TaskState::Completed);
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn chunks_for_paused_cancelled_or_removed_tasks_are_deleted_never_written() {
    for action in ["pause", "cancel", "remove"] {
        let (w, id) = running(16 * MIB, 4 * MIB);
        let reqs = hand_off(&w.manager, None, small_chunks()).requests;
        match action {
            "pause" => w.manager.pause(&id).unwrap(),
            "cancel" => w.manager.cancel(&id).unwrap(),
            _ => w.manager.remove(&id, false).unwrap(),
        }
        let revoked = w.manager.revoked();
        assert_eq!(revoked.len(), reqs.len(), "{action}: every OS task is to be cancelled");
        let tmp = tempfile::tempdir().unwrap();
        w.server.set(|f| f.rate = None);
        let (file, meta) = fetch(&reqs[0], tmp.path());
        assert!(matches!(w.manager.ingest(&reqs[0].lease_id, &file, meta), IngestOutcome::Rejected { retryable: false, .. }), "{action}");
        assert!(!file.exists(), "{action}: the chunk is deleted");
        assert!(!w.out("f.bin").exists(), "{action}: nothing published");
        if action == "pause" {
            w.manager.resume(&id).unwrap();
            let st = wait(&w.manager, &id, 60);
            assert_eq!(st.state, TaskState::Completed, "resumed in the engine after a pause");
            assert_same(&read(&w.out("f.bin")), &w.server.expected());
        } else {
            assert!(!part_of(&w.out("f.bin")).exists(), "{action}: no partial left");
        }
    }
}

#[test]
fn a_file_without_ranges_is_one_whole_lease_adopted_only_complete() {
    let w = World::new(Faults { ranges: false, rate: Some(2 * MIB), ..Faults::new(6 * MIB) });
    let id = w.manager.enqueue(w.request("w.bin")).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    let reqs = hand_off(&w.manager, None, HandoffOptions::default()).requests;
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].whole && reqs[0].start == 0 && reqs[0].total == Some(6 * MIB));
    assert!(!reqs[0].headers.iter().any(|(n, _)| n == "Range" || n == "If-Range"));
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(&reqs[0], tmp.path());
    let body = std::fs::read(&file).unwrap();
    std::fs::write(&file, &body[..body.len() - 1]).unwrap();
    assert!(matches!(w.manager.ingest(&reqs[0].lease_id, &file, meta), IngestOutcome::Rejected { retryable: true, .. }), "one byte short");
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "the engine took the download back: {st:?}");
    assert_same(&read(&w.out("w.bin")), &w.server.expected());
}

#[test]
fn a_whole_lease_is_checked_against_the_checksum_before_it_appears() {
    let w = World::new(Faults { ranges: false, validators: Validators::None, rate: Some(MIB), ..Faults::new(3 * MIB) });
    let sha = sha256_hex(&w.server.expected());
    let id = w.manager.enqueue(Request { sha256: Some(sha), ..w.request("s.bin") }).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    let reqs = hand_off(&w.manager, Some(vec![id.clone()]), HandoffOptions::default()).requests;
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(&reqs[0], tmp.path());
    assert!(matches!(w.manager.ingest(&reqs[0].lease_id, &file, meta), IngestOutcome::Committed { task_complete: true, .. }));
    assert_same(&read(&w.out("s.bin")), &w.server.expected());
}

#[test]
fn reconcile_after_a_force_quit_fetches_in_process_in_the_foreground_and_leases_again_in_the_background() {
    for foreground in [true, false] {
        let (w, id) = running(16 * MIB, 4 * MIB);
        let reqs = hand_off(&w.manager, None, small_chunks()).requests;
        let tmp = tempfile::tempdir().unwrap();
        // One chunk finished and was staged before the app died; the OS cancelled the rest.
        let (file, meta) = fetch(&reqs[0], tmp.path());
        w.manager.stage_chunk(&reqs[0].lease_id, &file, meta).unwrap();
        let strangers = vec![
            OsTask { os_tag: "ferry1:0badcafe-1".into(), bytes: 0 },
            OsTask { os_tag: "someone-elses-task".into(), bytes: 0 },
            OsTask { os_tag: reqs[1].os_tag.clone(), bytes: 1000 },
            OsTask { os_tag: reqs[1].os_tag.clone(), bytes: 1000 },
        ];
        let report = w.manager.reconcile(strangers, foreground, small_chunks()).unwrap();
        assert_eq!(report.cancel_os_tags, vec!["ferry1:0badcafe-1".to_string()], "unknown leases");
        assert_eq!(report.duplicate_os_tags, vec![reqs[1].os_tag.clone()], "a lease fetched twice: one task to keep");
        assert_eq!(report.ingest, vec![reqs[0].lease_id.clone()]);
        assert!(matches!(w.manager.ingest_staged(&reqs[0].lease_id), IngestOutcome::Committed { .. }));
        w.server.set(|f| f.rate = None);
        if foreground {
            assert_eq!(report.run_in_process, vec![id.clone()]);
            assert!(report.export.is_empty());
            let (file, meta) = fetch(&reqs[1], tmp.path());
            w.manager.ingest(&reqs[1].lease_id, &file, meta);
        } else {
            assert!(report.run_in_process.is_empty());
            let vanished: u64 = reqs[2..].iter().map(|r| r.end - r.start).sum();
            assert_eq!(report.export.iter().map(|r| r.end - r.start).sum::<u64>(), vanished, "the vanished ranges, leased again");
            assert!(report.export.iter().all(|r| reqs.iter().all(|old| old.lease_id != r.lease_id)), "new lease ids");
            for r in reqs[1..2].iter().chain(report.export.iter()) {
                let (file, meta) = fetch(r, tmp.path());
                assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
            }
        }
        let st = wait(&w.manager, &id, 60);
        assert_eq!(st.state, TaskState::Completed, "foreground {foreground}: {st:?}");
        assert_same(&read(&w.out("f.bin")), &w.server.expected());
    }
}

#[test]
fn take_back_releases_stalled_leases_while_healthy_ones_finish() {
    let (w, id) = running(16 * MIB, 4 * MIB);
    let reqs = hand_off(&w.manager, None, small_chunks()).requests;
    let healthy = &reqs[0];
    w.manager.note_os_progress(&healthy.os_tag, 1000);
    std::thread::sleep(Duration::from_millis(300));
    w.manager.note_os_progress(&healthy.os_tag, 2000);
    assert!(w.manager.status(&id).unwrap().bytes >= 2000, "OS progress shows in the status");
    let cancel = w.manager.take_back(Duration::from_millis(250)).unwrap();
    assert_eq!(cancel.len(), reqs.len() - 1, "every lease but the one making progress");
    assert!(!cancel.contains(&healthy.os_tag));
    w.server.set(|f| f.rate = None);
    until(60, "the engine to fetch the rest", || {
        let st = w.manager.status(&id).unwrap();
        st.bytes >= 16 * MIB - (healthy.end - healthy.start) && st.connections == 0
    });
    let tmp = tempfile::tempdir().unwrap();
    let (file, meta) = fetch(healthy, tmp.path());
    let outcome = w.manager.ingest(&healthy.lease_id, &file, meta);
    assert!(matches!(outcome, IngestOutcome::Committed { .. }), "{outcome:?}");
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn leases_survive_a_restart_of_the_process_and_are_ingested_after_it() {
    let (w, id) = running(16 * MIB, 4 * MIB);
    let reqs = hand_off(&w.manager, None, small_chunks()).requests;
    let state = w.manager.dir().to_path_buf();
    let World { server, dir, manager } = w;
    manager.shutdown_blocking();
    drop(manager);
    let w = Relaunched { server, dir };
    let m = Manager::open(&state, test_config()).unwrap();
    let st = m.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Running, "still the OS's after a relaunch");
    assert!(st.handed_off);
    assert_eq!(m.live_leases().len(), reqs.len());
    assert_eq!(m.running_count(), 0, "the engine fetches nothing leased");
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    for r in &reqs {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(m.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    assert_eq!(m.status(&id).unwrap().state, TaskState::Completed);
    assert_same(&read(&w.out("f.bin")), &w.server.expected());
}

#[test]
fn a_hand_off_of_many_tasks_respects_the_lease_caps() {
    let w = World::new(Faults { rate: Some(MIB), ..Faults::new(8 * MIB) });
    let ids: Vec<String> = (0..6)
        .map(|i| w.manager.enqueue(Request { connections: Some(2), ..w.request(&format!("m{i}.bin")) }).unwrap().to_string())
        .collect();
    until(30, "some bytes", || w.manager.status(&ids[0]).unwrap().bytes > 0);
    let options = HandoffOptions { chunk_bytes: MIB, max_leases_per_task: 3, max_leases: 12, stop_timeout: Duration::from_secs(5) };
    let report = hand_off(&w.manager, None, options);
    assert!(report.requests.len() <= 12);
    for id in &ids {
        let mine: Vec<&OsRequest> = report.requests.iter().filter(|r| &r.task_id == id).collect();
        assert!(mine.len() <= 3, "{id}: {} leases", mine.len());
        let st = w.manager.status(id).unwrap();
        if mine.iter().any(|r| r.whole) {
            assert!(mine.len() == 1 && mine[0].start == 0, "{id}: a task never probed is one whole-file lease");
        } else if !mine.is_empty() {
            let leased: u64 = mine.iter().map(|r| r.end - r.start).sum();
            assert_eq!(leased + st.bytes, 8 * MIB, "{id}: every byte left is leased, whatever the caps");
        }
    }
    assert!(report.skipped.is_empty() || report.requests.len() == 12, "{:?}", report.skipped);
    w.server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    for r in &report.requests {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(w.manager.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    for id in &ids {
        let st = wait(&w.manager, id, 60);
        assert_eq!(st.state, TaskState::Completed, "{id}: {st:?}");
    }
    for i in 0..6 {
        assert_same(&read(&w.out(&format!("m{i}.bin"))), &w.server.expected());
    }
}

/// A child process (examples/handoff_child) that started a download and handed it off; it stages
/// chunks on request and waits to be killed.
struct Child {
    process: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    leases: Vec<OsRequest>,
}

impl Child {
    fn start(state: &std::path::Path, url: &str, out: &std::path::Path, total: u64) -> Child {
        use std::io::BufRead;
        let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/handoff_child");
        let mut process = std::process::Command::new(&exe)
            .args([state.to_str().unwrap(), url, out.to_str().unwrap(), &(4 * MIB).to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let stdout = std::io::BufReader::new(process.stdout.take().unwrap());
        let stdin = process.stdin.take().unwrap();
        let mut child = Child { process, stdin, stdout, leases: Vec::new() };
        loop {
            let mut line = String::new();
            assert!(child.stdout.read_line(&mut line).unwrap() > 0, "the child ended early");
            if line.trim() == "leased" {
                return child;
            }
            child.leases.push(support::os_fetch::leased_line(&line, total));
        }
    }

    fn stage(&mut self, lease: &OsRequest, file: &std::path::Path, meta: &ChunkMeta) {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "stage {} {} {}", lease.lease_id, file.display(), serde_json::to_string(meta).unwrap()).unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "staged");
    }

    fn kill(&mut self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.process.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_chunk_staged_by_a_process_killed_before_its_ingest_is_ingested_after_a_reopen() {
    let server = ferry::loopback::LoopbackServer::start(
        ferry::engine::runtime::handle(),
        0,
        Faults { rate: Some(4 * MIB), ..Faults::new(16 * MIB) },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("k.bin"));
    let mut child = Child::start(&state, &server.url(), &out, 16 * MIB);
    server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let first = child.leases[0].clone();
    let (file, meta) = fetch(&first, tmp.path());
    child.stage(&first, &file, &meta);
    child.kill();
    let m = Manager::open(&state, test_config()).unwrap();
    let plan = m.reconcile(vec![], true, HandoffOptions::default()).unwrap();
    assert_eq!(plan.ingest, vec![first.lease_id.clone()], "the staged chunk is found after the kill");
    assert!(matches!(m.ingest_staged(&first.lease_id), IngestOutcome::Committed { .. }));
    let id = m.list()[0].id.to_string();
    let st = wait(&m, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "the engine fetched the rest in process: {st:?}");
    assert_same(&read(&out), &server.expected());
    m.shutdown_blocking();
}

#[test]
fn a_process_that_takes_over_a_handed_off_task_ingests_its_chunks_and_fetches_nothing() {
    let server = ferry::loopback::LoopbackServer::start(
        ferry::engine::runtime::handle(),
        0,
        Faults { rate: Some(4 * MIB), ..Faults::new(16 * MIB) },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("t.bin"));
    let mut child = Child::start(&state, &server.url(), &out, 16 * MIB);
    // Another process has the directory open while the one that handed off is alive, then dies.
    let m = Manager::open(&state, test_config()).unwrap();
    let id = m.list()[0].id.to_string();
    child.kill();
    server.set(|f| f.rate = None);
    let requests_before = server.stats().requests.load(Ordering::SeqCst);
    until(10, "the takeover", || m.live_leases().len() == child.leases.len());
    std::thread::sleep(Duration::from_millis(300));
    let st = m.status(&id).unwrap();
    assert_eq!(st.state, TaskState::Running, "still the OS's: {st:?}");
    assert!(st.handed_off);
    assert_eq!(server.stats().requests.load(Ordering::SeqCst), requests_before, "the engine fetches nothing leased");
    let tmp = tempfile::tempdir().unwrap();
    for r in &child.leases {
        let (file, meta) = fetch(r, tmp.path());
        assert!(matches!(m.ingest(&r.lease_id, &file, meta), IngestOutcome::Committed { .. }));
    }
    assert_eq!(m.status(&id).unwrap().state, TaskState::Completed);
    assert_same(&read(&out), &server.expected());
    m.shutdown_blocking();
}

/// The server and the directories of a world whose manager was dropped.
struct Relaunched {
    server: ferry::loopback::LoopbackServer,
    dir: tempfile::TempDir,
}

impl Relaunched {
    fn out(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
