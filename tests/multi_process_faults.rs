//! Processes that die while they own tasks, SIGKILLed from outside or at named crash points (in the
//! middle of an enqueue's transaction, of a journal commit, of a takeover, between a rename and
//! its record): another process takes their tasks over from the journal and finishes them
//! byte-exact, fetching little twice, and the table stays intact.

mod support;

use ferry::loopback::{content, Faults, LoopbackServer};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use support::procs::*;
use support::*;

const MIB: u64 = 1 << 20;

#[test]
fn helper() {
    helper_main();
}

fn server(size: u64, seed: u64, rate: u64) -> LoopbackServer {
    let mut f = Faults::new(size);
    f.seed = seed;
    f.rate = Some(rate);
    LoopbackServer::start(ferry::engine::runtime::handle(), 0, f).unwrap()
}

fn get(state: &Path, url: &str, out: &Path) -> Command {
    let mut c = ferry(state);
    c.args(["get", url, "-x", "4", "--quiet", "--id", "big", "-o"]).arg(out);
    c
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(read(p)))
}

/// Waits until the server has sent `fraction` of `size` (the child must still be running).
fn until_sent(server: &LoopbackServer, child: &mut KillOnDrop, size: u64, fraction: f64) {
    let target = (size as f64 * fraction) as u64;
    until(120, "the download to get that far", || {
        assert!(child.0.try_wait().unwrap().is_none(), "the child exited before the kill");
        server.stats().body_bytes.load(SeqCst) >= target
    });
}

/// The table is whole: SQLite's own check.
fn intact(state: &Path) {
    let db = rusqlite::Connection::open_with_flags(state.join("tasks.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

/// One download, owned in turn by three processes: a `ferry get` killed at a quarter, the same
/// command run again and killed past the half, and a process that had the directory open all
/// along and takes the task over the moment its owner dies.
fn killed_owners_are_taken_over(env: &[(&str, &str)]) {
    let size = 24 * MIB;
    let server = server(size, 7, 2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let with_env = |mut c: Command| {
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let mut report = Vec::new();
    let mut first = KillOnDrop(with_env(get(&state, &server.url(), &out)).spawn().unwrap());
    until_sent(&server, &mut first, size, 0.25);
    sigkill(&mut first);
    report.push(format!("kill 1 (ferry get) at {:.1} MiB sent", server.stats().body_bytes.load(SeqCst) as f64 / MIB as f64));
    let mut second = KillOnDrop(with_env(get(&state, &server.url(), &out)).spawn().unwrap());
    // The second command has taken the task over when bytes flow again.
    until_sent(&server, &mut second, size, 0.3);
    let mut adopter = Helper::new(&state, dir.path().join("adopter.json"));
    adopter.resume_on_open = true;
    adopter.stay = Some(1);
    adopter.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let _adopter_process = adopter.spawn();
    adopter.enqueued(30);
    until_sent(&server, &mut second, size, 0.55);
    sigkill(&mut second);
    report.push(format!("kill 2 (ferry get again) at {:.1} MiB sent", server.stats().body_bytes.load(SeqCst) as f64 / MIB as f64));
    let tasks = finished(&adopter.out, 120);
    assert!(has_state(&tasks, "big", ferry::engine::TaskState::Completed), "{tasks:?}");
    assert_eq!(sha256(&out), content::sha256(7, size), "wrong bytes after the takeovers");
    assert!(!part_of(&out).exists());
    let sent = server.stats().body_bytes.load(SeqCst);
    let twice = sent.saturating_sub(size);
    for line in &report {
        println!("{line}");
    }
    println!(
        "takeover by a live process: {} MiB file, server sent {:.2} MiB, {:.2} MiB twice over 2 kills",
        size / MIB,
        sent as f64 / MIB as f64,
        twice as f64 / MIB as f64
    );
    assert!(twice <= 6 * MIB, "{:.2} MiB were downloaded twice", twice as f64 / MIB as f64);
    intact(&state);
}

#[test]
fn owners_killed_at_two_points_are_taken_over_byte_exact_with_little_fetched_twice() {
    killed_owners_are_taken_over(&[]);
}

/// The same with POSIX record locks (what Apple platforms use): one descriptor per process, locks
/// per process.
#[test]
fn owners_killed_are_taken_over_with_per_process_locks_too() {
    killed_owners_are_taken_over(&[("FERRY_LOCKS", "posix")]);
}

#[test]
fn a_process_killed_while_taking_over_leaves_the_task_to_the_next() {
    let size = 12 * MIB;
    let server = server(size, 8, 2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let mut owner = KillOnDrop(get(&state, &server.url(), &out).spawn().unwrap());
    until_sent(&server, &mut owner, size, 0.1);
    // Open beside the owner, so that it sees the owner die and takes the task over at runtime.
    let mut dying = Helper::new(&state, dir.path().join("dying.json"));
    dying.resume_on_open = true;
    dying.stay = Some(1);
    dying.env = vec![("FERRY_CRASH_AT".into(), "takeover:requeued".into())];
    let mut dying_process = dying.spawn();
    dying.enqueued(30);
    until_sent(&server, &mut owner, size, 0.3);
    sigkill(&mut owner);
    let status = dying_process.wait(30);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "the helper died at the crash point");
    let o = ferry(&state).args(["resume", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256(&out), content::sha256(8, size));
    let twice = server.stats().body_bytes.load(SeqCst).saturating_sub(size);
    println!("killed owner, then a takeover killed half way: {:.2} MiB fetched twice", twice as f64 / MIB as f64);
    assert!(twice <= 4 * MIB);
    intact(&state);
}

#[test]
fn a_kill_inside_an_enqueue_transaction_leaves_no_row_of_it_and_the_others_unharmed() {
    let server = server(6 * MIB, 9, 2_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let mut owner = KillOnDrop(get(&state, &server.url(), &out).spawn().unwrap());
    until_sent(&server, &mut owner, 6 * MIB, 0.1);
    let outdir = dir.path().join("batch");
    std::fs::create_dir(&outdir).unwrap();
    let listing = dir.path().join("list.txt");
    std::fs::write(&listing, (0..50).map(|i| format!("{}/f{i} f{i}.bin\n", server.url())).collect::<String>()).unwrap();
    let batch = |crash: bool| {
        let mut c = ferry(&state);
        c.args(["batch", "--quiet", "-i"]).arg(&listing).arg("-d").arg(&outdir);
        if crash {
            c.env("FERRY_CRASH_AT", "enqueue:inserted");
        }
        c.output().unwrap()
    };
    let killed = batch(true);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&killed.status), Some(9));
    intact(&state);
    assert_eq!(list_json(&state).len(), 1, "the killed enqueue's rows are not in the table");
    assert!(std::fs::read_dir(&outdir).unwrap().next().is_none());
    server.set(|f| f.rate = None);
    let again = batch(false);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(owner.wait(60).success(), "the download owned by another process went on");
    assert_eq!(sha256(&out), content::sha256(9, 6 * MIB));
    assert_eq!(list_json(&state).iter().filter(|t| t["state"] == "completed").count(), 51);
}

#[test]
fn a_kill_inside_a_journal_commit_leaves_the_table_intact_and_resume_exact() {
    let size = 8 * MIB;
    let server = server(size, 10, 4_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let mut c = get(&state, &server.url(), &out);
    let status = c.env("FERRY_CRASH_AT", "journal:committing#40").status().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    intact(&state);
    let kept: u64 = list_json(&state).iter().map(|t| t["bytes"].as_u64().unwrap()).sum();
    assert!(kept > 0, "the commits before the killed one are kept");
    let o = ferry(&state).args(["resume", "--quiet"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256(&out), content::sha256(10, size));
}

#[test]
fn a_process_killed_between_its_rename_and_its_record_is_completed_by_a_live_one_without_a_refetch() {
    let size = 6 * MIB;
    let server = server(size, 11, 4_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    // The live process first, so that it sees the task owned, then orphaned.
    std::fs::create_dir_all(&state).unwrap();
    let mut live = Helper::new(&state, dir.path().join("live.json"));
    live.resume_on_open = true;
    live.stay = Some(1);
    let _live_process = live.spawn();
    live.enqueued(30);
    let status = get(&state, &server.url(), &out).env("FERRY_CRASH_AT", "publish:renamed").status().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    let requests = server.stats().requests.load(SeqCst);
    let tasks = finished(&live.out, 60);
    assert!(has_state(&tasks, "big", ferry::engine::TaskState::Completed), "{tasks:?}");
    assert_eq!(server.stats().requests.load(SeqCst), requests, "the file in place was fetched again");
    assert_eq!(sha256(&out), content::sha256(11, size));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(listed(&state, "big").unwrap()["state"], "completed");
}
