//! Several `ferry` processes on one state directory, as people use them: two `ferry get` at once,
//! `ferry list` from a third shell, the same download started twice, one destination asked for
//! twice, `ferry resume` next to a live download, and the directories where sharing cannot work
//! (no working file locks, read-only).

mod support;

use ferry::engine::runtime;
use ferry::loopback::{Faults, LoopbackServer};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::procs::*;
use support::*;

const MIB: u64 = 1 << 20;

fn get(state: &std::path::Path, url: &str, out: &std::path::Path, extra: &[&str]) -> Command {
    let mut c = ferry(state);
    c.args(["get", url, "--quiet"]).args(extra).arg("-o").arg(out);
    c
}

fn bytes_of(t: &serde_json::Value) -> u64 {
    t["bytes"].as_u64().unwrap_or(0)
}

#[test]
fn two_gets_at_once_run_side_by_side_and_a_third_shell_lists_both_with_progress() {
    let server = slow_server(6 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    let mut first = KillOnDrop(get(&state, &format!("{}/a.bin", server.url()), &a, &["-x", "2"]).spawn().unwrap());
    let mut second = KillOnDrop(get(&state, &format!("{}/b.bin", server.url()), &b, &["-x", "2"]).spawn().unwrap());
    let moving = || {
        let tasks = list_json(&state);
        tasks.len() == 2 && tasks.iter().all(|t| t["state"] == "running" && bytes_of(t) > 0)
    };
    until(30, "both downloads to show progress in `ferry list`", moving);
    let before: Vec<u64> = list_json(&state).iter().map(bytes_of).collect();
    std::thread::sleep(Duration::from_millis(600));
    let after: Vec<u64> = list_json(&state).iter().map(bytes_of).collect();
    assert!(after.iter().zip(&before).all(|(a, b)| a > b), "progress moves in the listing: {before:?} then {after:?}");
    for child in [&mut first, &mut second] {
        assert!(child.wait(60).success());
    }
    assert_same(&read(&a), &server.expected());
    assert_same(&read(&b), &server.expected());
    assert!(list_json(&state).iter().all(|t| t["state"] == "completed"));
}

#[test]
fn the_same_download_started_twice_is_fetched_once_and_both_commands_succeed() {
    let server = slow_server(3 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("same.bin");
    let mut first = KillOnDrop(get(&state, &server.url(), &out, &["-x", "2"]).spawn().unwrap());
    let mut second = KillOnDrop(get(&state, &server.url(), &out, &["-x", "2"]).spawn().unwrap());
    assert!(first.wait(60).success());
    assert!(second.wait(60).success(), "the second command follows the first one's download to its end");
    assert_same(&read(&out), &server.expected());
    let sent = server.stats().body_bytes.load(SeqCst);
    assert!(sent <= 3 * MIB + MIB / 2, "the file was fetched {sent} bytes for {} (twice?)", 3 * MIB);
    assert_eq!(list_json(&state).len(), 1);
}

#[test]
fn a_destination_taken_by_another_process_is_refused() {
    let server = slow_server(4 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("x.bin");
    let mut first = KillOnDrop(get(&state, &format!("{}/one", server.url()), &out, &["-x", "1"]).spawn().unwrap());
    until(30, "the first download to be listed", || listed_any(&state));
    let o = get(&state, &format!("{}/two", server.url()), &out, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("destination_busy"), "{}", String::from_utf8_lossy(&o.stderr));
    server.set(|f| f.rate = None);
    assert!(first.wait(60).success());
    assert_same(&read(&out), &server.expected());
    assert_eq!(list_json(&state).len(), 1, "the refused downloads left no task");
}

fn listed_any(state: &std::path::Path) -> bool {
    state.join("tasks.sqlite3").exists() && !list_json(state).is_empty()
}

#[test]
fn resume_takes_over_the_task_of_a_killed_process_and_leaves_a_live_one_alone() {
    let server = slow_server(8 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (live, dead) = (dir.path().join("live.bin"), dir.path().join("dead.bin"));
    let mut running = KillOnDrop(get(&state, &format!("{}/live", server.url()), &live, &["-x", "1"]).spawn().unwrap());
    let mut killed = KillOnDrop(get(&state, &format!("{}/dead", server.url()), &dead, &["-x", "4"]).spawn().unwrap());
    until(30, "both to make progress", || {
        let t = list_json(&state);
        t.len() == 2 && t.iter().all(|t| bytes_of(t) > MIB / 2)
    });
    sigkill(&mut killed);
    let sent_at_kill = server.stats().body_bytes.load(SeqCst);
    // The killed process's row still says running: only its lock, gone with it, says otherwise.
    let dead_id = list_json(&state).into_iter().find(|t| t["destination"] == dead.display().to_string()).unwrap()["id"].clone();
    let started = Instant::now();
    let resumed = ferry(&state).args(["resume", "--quiet"]).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_same(&read(&dead), &server.expected());
    assert!(running.0.try_wait().unwrap().is_none(), "the live download is still its own process's");
    let live_row = list_json(&state).into_iter().find(|t| t["id"] != dead_id).unwrap();
    assert_eq!(live_row["state"], "running", "resume left the live task alone");
    let resumed_sent = server.stats().body_bytes.load(SeqCst) - sent_at_kill;
    println!("resume took {:.1} s; the live download kept running beside it", started.elapsed().as_secs_f64());
    // What resume fetched: the dead task's rest (and a little twice), plus the live task's own
    // stream meanwhile (1 MB/s).
    assert!(resumed_sent < 8 * MIB + (started.elapsed().as_secs() + 2) * 1_000_000);
    server.set(|f| f.rate = None);
    assert!(running.wait(60).success());
    assert_same(&read(&live), &server.expected());
}

#[test]
fn a_state_directory_without_working_locks_is_refused_with_a_typed_error() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(64 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("f.bin");
    // Builds with the test tooling make every lock fail as NFS without its lock daemon does.
    let o = get(&state, &server.url(), &out, &[]).env("FERRY_LOCKS", "unsupported").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("locks_unavailable") && err.contains("no working file locks"), "{err}");
    assert!(!out.exists() && !part_of(&out).exists());
    // Reading needs no lock.
    assert!(ferry(&state).args(["list"]).env("FERRY_LOCKS", "unsupported").output().unwrap().status.success());
}

/// `chattr +i` on a directory: nothing can be created in it, even by root.
struct Immutable(std::path::PathBuf);
impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_state_directory_is_refused_with_a_typed_error_and_still_listed() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(64 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let made = Command::new("chattr").arg("+i").arg(&state).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !made {
        eprintln!("chattr +i is not available here; skipping");
        return;
    }
    let _guard = Immutable(state.clone());
    let o = get(&state, &server.url(), &dir.path().join("f.bin"), &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("permission_denied") && err.contains("cannot be written"), "{err}");
    let listing = ferry(&state).args(["list"]).output().unwrap();
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
}
