//! A process killed in the middle of ingesting a chunk the OS fetched (`FERRY_CRASH_AT` in
//! `examples/handoff_child`): after a reopen the chunk's bytes are either journaled and never
//! fetched again, or not claimed and ingested again from staging; a kill while the last chunk
//! publishes the file ends completed. The file is exact either way.

mod support;

use ferry::engine::{ChunkMeta, HandoffOptions, IngestOutcome, Manager, OsRequest, OsTask, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;
use support::os_fetch::fetch;
use support::*;

const MIB: u64 = 1 << 20;

/// The child that handed off a 16 MiB download in 4 MiB leases, with a crash point armed.
struct Killed {
    process: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    leases: Vec<OsRequest>,
}

impl Killed {
    fn start(state: &Path, url: &str, out: &Path, point: &str) -> Killed {
        let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("examples/handoff_child");
        let mut process = Command::new(&exe)
            .args([state.to_str().unwrap(), url, out.to_str().unwrap(), &(4 * MIB).to_string()])
            .env("FERRY_CRASH_AT", point)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let stdout = BufReader::new(process.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
            }
        });
        let stdin = process.stdin.take().unwrap();
        let mut child = Killed { process, stdin, lines, leases: Vec::new() };
        loop {
            let line = child.line().expect("the child ended early");
            if line == "leased" {
                return child;
            }
            child.leases.push(support::os_fetch::leased_line(&line, 16 * MIB));
        }
    }

    /// The child's next line (bounded); `None` once its output ended.
    fn line(&mut self) -> Option<String> {
        match self.lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("the child said nothing for 60 s"),
        }
    }

    /// Stages `file` for `lease` and ingests it; `None` when the child died doing it.
    fn stage_and_ingest(&mut self, lease: &OsRequest, file: &Path, meta: &ChunkMeta) -> Option<String> {
        writeln!(self.stdin, "stage {} {} {}", lease.lease_id, file.display(), serde_json::to_string(meta).unwrap()).unwrap();
        assert_eq!(self.line().as_deref(), Some("staged"));
        writeln!(self.stdin, "ingest {}", lease.lease_id).ok()?;
        self.line()
    }

    /// Waits (boundedly) for the child killed by its crash point.
    fn reap(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                assert_eq!(status.signal(), Some(9), "expected a SIGKILL, got {status}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the child did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Kills the child at `point` while it ingests chunks (the first only, or all of them for a
/// point on the way to publishing), reopens the directory and finishes the download.
fn killed_at(point: &str, all: bool) {
    let server =
        LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults { rate: Some(4 * MIB), ..Faults::new(16 * MIB) }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("k.bin"));
    let mut child = Killed::start(&state, &server.url(), &out, point);
    server.set(|f| f.rate = None);
    let tmp = tempfile::tempdir().unwrap();
    let chunks: Vec<(OsRequest, PathBuf, ChunkMeta)> = child
        .leases
        .clone()
        .into_iter()
        .map(|r| {
            let (file, meta) = fetch(&r, tmp.path());
            (r, file, meta)
        })
        .collect();
    let fetched = server.stats().body_bytes.load(Ordering::SeqCst);
    let count = if all { chunks.len() } else { 1 };
    let mut died = false;
    for (r, file, meta) in &chunks[..count] {
        match child.stage_and_ingest(r, file, meta) {
            Some(outcome) => assert!(outcome.starts_with("Committed"), "{point}: {outcome}"),
            None => {
                died = true;
                break;
            }
        }
    }
    assert!(died, "{point}: the crash point was passed");
    child.reap();

    let m = Manager::open(&state, test_config()).unwrap();
    let id = m.list()[0].id.to_string();
    let first = &chunks[0].0;
    let live: Vec<OsTask> = m.live_leases().iter().map(|r| OsTask { os_tag: r.os_tag.clone(), bytes: 0 }).collect();
    let plan = m.reconcile(live, false, HandoffOptions::default()).unwrap();
    match point {
        "ingest:synced" => {
            assert!(m.live_leases().iter().any(|r| r.lease_id == first.lease_id), "{point}: not journaled, still leased");
            assert_eq!(plan.ingest, vec![first.lease_id.clone()], "{point}: its chunk is still staged");
            assert!(matches!(m.ingest_staged(&first.lease_id), IngestOutcome::Committed { .. }), "{point}");
        }
        "ingest:journaled" => {
            assert!(m.live_leases().iter().all(|r| r.lease_id != first.lease_id), "{point}: journaled, no longer leased");
            assert!(plan.ingest.is_empty(), "{point}: the staged copy of a committed chunk is dropped: {plan:?}");
            assert_eq!(m.ingest_staged(&first.lease_id), IngestOutcome::NothingStaged);
        }
        _ => {
            assert!(m.live_leases().is_empty(), "{point}: every chunk was journaled");
            if point == "publish:renamed" {
                assert_eq!(m.status(&id).unwrap().state, TaskState::Completed, "{point}: the file was in place");
            }
        }
    }
    for (r, file, meta) in &chunks {
        if m.live_leases().iter().any(|l| l.lease_id == r.lease_id) {
            let outcome = m.ingest(&r.lease_id, file, meta.clone());
            assert!(matches!(outcome, IngestOutcome::Committed { .. }), "{point}: {outcome:?}");
        }
    }
    let st = wait(&m, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{point}: {st:?}");
    assert_same(&read(&out), &server.expected());
    assert!(!part_of(&out).exists(), "{point}");
    assert_eq!(server.stats().body_bytes.load(Ordering::SeqCst), fetched, "{point}: nothing fetched again after the kill");
    m.shutdown_blocking();
}

#[test]
fn a_kill_after_the_chunk_is_synced_but_before_the_journal_leaves_it_to_ingest_again() {
    killed_at("ingest:synced", false);
}

#[test]
fn a_kill_after_the_journal_but_before_the_staged_chunk_goes_keeps_the_bytes_and_drops_the_copy() {
    killed_at("ingest:journaled", false);
}

#[test]
fn a_kill_at_each_step_of_publishing_the_last_chunk_ends_completed() {
    for point in ["publish:synced", "publish:marked", "publish:renamed"] {
        killed_at(point, true);
    }
}
