//! What processes sharing a state directory decide together: two to eight of them enqueueing at
//! the same moment (no row lost or doubled, each contested destination granted once), a pause, a
//! cancel and a remove asked of the process that runs a task (and how long they take to reach
//! it), and the per-host connection cap counted over all of them.

mod support;

use ferry::engine::{runtime, Config, Limits, Manager, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::procs::*;
use support::*;

const MIB: u64 = 1 << 20;

#[test]
fn helper() {
    helper_main();
}

fn enqueue_at_once(processes: usize) {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(32 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let go = dir.path().join("go");
    let (own, contested, shared) = (20, 6, 4);
    let helpers: Vec<Helper> = (0..processes)
        .map(|p| {
            let mut h = Helper::new(&state, dir.path().join(format!("p{p}.json")));
            h.go = Some(go.clone());
            for i in 0..own {
                h.plan.push((format!("p{p}-own{i}"), format!("{}/p{p}/{i}", server.url()), outdir.join(format!("p{p}-{i}.bin"))));
            }
            for c in 0..contested {
                // One destination, a different id (and URL) in each process: one of them gets it.
                h.plan.push((format!("p{p}-c{c}"), format!("{}/p{p}/c{c}", server.url()), outdir.join(format!("contested-{c}.bin"))));
            }
            for k in 0..shared {
                // The same request in every process: one task, every process told so.
                h.plan.push((format!("shared-{k}"), format!("{}/shared/{k}", server.url()), outdir.join(format!("shared-{k}.bin"))));
            }
            h
        })
        .collect();
    let _children: Vec<KillOnDrop> = helpers.iter().map(Helper::spawn).collect();
    // Every helper opens the directory first; then all enqueue at the same moment.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"").unwrap();
    let results: Vec<Vec<serde_json::Value>> = helpers.iter().map(|h| h.enqueued(120)).collect();
    for c in 0..contested {
        let outcomes: Vec<&serde_json::Value> =
            results.iter().flatten().filter(|r| r["id"].as_str().unwrap().ends_with(&format!("-c{c}"))).collect();
        let granted = outcomes.iter().filter(|r| r["ok"] == true).count();
        assert_eq!(granted, 1, "contested destination {c}: {outcomes:?}");
        assert!(outcomes.iter().filter(|r| r["ok"] == false).all(|r| r["code"] == "destination_busy"), "{outcomes:?}");
    }
    assert!(results.iter().flatten().filter(|r| !r["id"].as_str().unwrap().contains("-c")).all(|r| r["ok"] == true));
    for (h, enqueued) in helpers.iter().zip(&results) {
        // Each process reports when the tasks it enqueued are done (others' may still run).
        let tasks = finished(&h.out, 120);
        let granted = enqueued.iter().filter(|r| r["ok"] == true).map(|r| r["id"].as_str().unwrap());
        for id in granted {
            assert!(has_state(&tasks, id, TaskState::Completed), "{id} in {tasks:?}");
        }
    }
    let table = Manager::list_read_only(&state).unwrap();
    assert!(table.iter().all(|t| t.state == TaskState::Completed), "{table:?}");
    let expected = processes * own + contested + shared;
    let db = rusqlite::Connection::open_with_flags(state.join("tasks.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (rows, seqs, dests): (i64, i64, i64) = db
        .query_row("SELECT COUNT(*), COUNT(DISTINCT seq), COUNT(DISTINCT destination) FROM tasks", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let n = expected as i64;
    assert_eq!((rows, seqs, dests), (n, n, n), "rows, distinct seqs, distinct destinations");
    let files = std::fs::read_dir(&outdir).unwrap().count();
    assert_eq!(files, expected, "one file per task, no part file left");
    for entry in std::fs::read_dir(&outdir).unwrap() {
        assert_same(&read(&entry.unwrap().path()), &server.expected());
    }
    let requests = server.stats().requests.load(SeqCst);
    assert_eq!(requests as usize, expected, "each task fetched once, by one process");
    println!(
        "{processes} processes enqueued {} requests at once: {expected} tasks, each fetched once",
        processes * (own + contested + shared)
    );
}

#[test]
fn two_processes_enqueue_into_one_directory_at_once() {
    enqueue_at_once(2);
}

#[test]
fn eight_processes_enqueue_into_one_directory_at_once() {
    enqueue_at_once(8);
}

/// The table's state of a task, as any process reads it.
fn row_state(state: &Path, id: &str) -> Option<String> {
    Manager::list_read_only(state).ok()?.into_iter().find(|t| t.id.as_str() == id).map(|t| t.state.name().to_string())
}

/// Waits until the table says `want` for `id`; returns how long that took.
fn delay_until(state: &Path, id: &str, want: Option<&str>) -> Duration {
    let started = Instant::now();
    until(10, "the owner to apply the request", || row_state(state, id).as_deref() == want);
    started.elapsed()
}

#[test]
fn pause_cancel_and_remove_from_another_process_reach_the_owner_within_a_tick() {
    let server = slow_server(16 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let start = |name: &str| {
        let out = dir.path().join(name);
        let child = ferry(&state)
            .args(["get", &format!("{}/{name}", server.url()), "-x", "2", "--quiet", "--id", name, "-o"])
            .arg(&out)
            .spawn()
            .unwrap();
        (KillOnDrop(child), out)
    };
    let (mut paused_owner, paused) = start("paused");
    let (mut cancelled_owner, cancelled) = start("cancelled");
    let (mut removed_owner, removed) = start("removed");
    until(30, "three downloads under way", || {
        let tasks = list_json(&state);
        tasks.len() == 3 && tasks.iter().all(|t| t["bytes"].as_u64().unwrap() > 0)
    });
    // This process opens the directory too: it sees the three tasks, run elsewhere.
    let m = Manager::open(&state, Config { resume_on_open: false, ..test_config() }).unwrap();
    for id in ["paused", "cancelled", "removed"] {
        let info = m.status(id).unwrap();
        assert_eq!(info.state, TaskState::Running);
        assert!(!m.runs_here(id));
    }
    let seen = m.status("paused").unwrap().bytes;
    until(10, "progress of another process's task to show here", || m.status("paused").unwrap().bytes > seen);

    m.pause("paused").unwrap();
    let pause_delay = delay_until(&state, "paused", Some("paused"));
    m.cancel("cancelled").unwrap();
    let cancel_delay = delay_until(&state, "cancelled", Some("cancelled"));
    m.remove("removed", false).unwrap();
    let remove_delay = delay_until(&state, "removed", None);
    println!(
        "from the request to the owner's record in the table: pause {} ms, cancel {} ms, remove {} ms \
         (the owner's progress interval is 250 ms)",
        pause_delay.as_millis(),
        cancel_delay.as_millis(),
        remove_delay.as_millis()
    );
    for d in [pause_delay, cancel_delay, remove_delay] {
        assert!(d < Duration::from_secs(2), "{d:?}");
    }
    // Each owner stopped: its command ends (a paused or cancelled download is not a success).
    for owner in [&mut paused_owner, &mut cancelled_owner, &mut removed_owner] {
        assert!(!owner.wait(30).success());
    }
    assert!(part_of(&paused).exists(), "a pause keeps the partial");
    assert!(!part_of(&cancelled).exists() && !cancelled.exists(), "a cancel removes it");
    assert!(!part_of(&removed).exists() && !removed.exists());
    until(5, "this process to see the pause", || m.status("paused").unwrap().state == TaskState::Paused);
    until(5, "and the removal", || m.status("removed").is_err());
    // Resumed here, the paused task continues from the owner's journal.
    let kept = m.status("paused").unwrap().bytes;
    assert!(kept > 0);
    let sent = server.stats().body_bytes.load(SeqCst);
    server.set(|f| f.rate = None);
    m.resume("paused").unwrap();
    assert!(m.runs_here("paused"));
    let info = wait(&m, "paused", 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&paused), &server.expected());
    let refetched = (server.stats().body_bytes.load(SeqCst) - sent).saturating_sub(16 * MIB - kept);
    assert!(refetched < MIB, "the resume refetched {refetched} bytes the journal held");
    m.shutdown_blocking();
}

/// Connection slots held right now by the processes of a state directory: the locks in its
/// `hosts` file, listed through an open file of this process (`F_OFD_GETLK` reports the first
/// lock of another open file at or after an offset).
#[cfg(target_os = "linux")]
fn slots_held(hosts: &std::fs::File) -> u64 {
    use std::os::fd::AsRawFd;
    const F_OFD_GETLK: libc::c_int = 36;
    let (mut start, mut held) = (0i64, 0u64);
    loop {
        // SAFETY: plain data, all-zero is valid (and OFD locks need l_pid 0).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        fl.l_start = start;
        fl.l_len = 0;
        // SAFETY: a valid descriptor and `struct flock`.
        assert_eq!(unsafe { libc::fcntl(hosts.as_raw_fd(), F_OFD_GETLK, &mut fl) }, 0, "{}", std::io::Error::last_os_error());
        if fl.l_type == libc::F_UNLCK as i16 {
            return held;
        }
        held += fl.l_len as u64;
        start = fl.l_start + fl.l_len;
    }
}

/// Three processes, each capped at 4 connections to the one host and wanting 8: the slots all
/// of them hold together (the locks in the directory's `hosts` file, sampled every millisecond)
/// never pass 4, also after one of them is killed. (The server's own count of bodies being sent
/// can pass the cap for a moment: a connection whose range was split away stops reading, and
/// gives its slot back, a little before the server's next write finds it gone.)
#[cfg(target_os = "linux")]
#[test]
fn the_per_host_connection_cap_holds_across_processes() {
    let mut f = Faults::new(3 * MIB);
    f.rate = Some(1_500_000);
    let server = LoopbackServer::start(runtime::handle(), 0, f).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cap = 4;
    let helpers: Vec<Helper> = (0..3)
        .map(|p| {
            let mut h = Helper::new(&state, dir.path().join(format!("p{p}.json")));
            h.max_connections_per_host = cap;
            h.connections = Some(4);
            for i in 0..2 {
                h.plan.push((format!("p{p}-{i}"), format!("{}/p{p}/{i}", server.url()), dir.path().join(format!("p{p}-{i}.bin"))));
            }
            h
        })
        .collect();
    let mut children: Vec<KillOnDrop> = helpers.iter().map(Helper::spawn).collect();
    for h in &helpers {
        h.enqueued(30);
    }
    let hosts = std::fs::File::open(state.join("hosts")).unwrap();
    let mut peak = 0;
    let sample_for = |d: Duration, peak: &mut u64| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            *peak = (*peak).max(slots_held(&hosts));
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // Until the cap is reached (the helpers may start slowly on a loaded machine), then a while more.
    let reach = Instant::now() + Duration::from_secs(15);
    while peak < cap as u64 && Instant::now() < reach {
        sample_for(Duration::from_millis(100), &mut peak);
    }
    sample_for(Duration::from_millis(1000), &mut peak);
    let before_kill = peak;
    // A process that dies gives its slots back; the others take them, and still no more.
    sigkill(&mut children[0]);
    sample_for(Duration::from_millis(1500), &mut peak);
    for h in &helpers[1..] {
        let tasks = finished(&h.out, 120);
        assert!(h.plan.iter().all(|(id, _, _)| has_state(&tasks, id, TaskState::Completed)), "{tasks:?}");
    }
    println!(
        "3 processes with a cap of {cap} connections to one host, 8 wanted each: at most {peak} slots held at once \
         ({before_kill} before one of them was killed); the server counted at most {} bodies at once",
        server.stats().max_active.load(SeqCst)
    );
    assert_eq!(before_kill, cap as u64, "the cap was not reached, or passed");
    assert_eq!(peak, cap as u64, "{peak} slots held at once");
    for h in &helpers[1..] {
        for (_, _, dest) in &h.plan {
            assert_same(&read(dest), &server.expected());
        }
    }
}

#[test]
fn max_running_tasks_stays_per_process() {
    // Two processes, each allowed one running task: two run at once across the directory.
    let server = slow_server(2 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = Config { limits: Limits { max_running_tasks: 1, ..Limits::default() }, ..test_config() };
    let m = Manager::open(&state, config).unwrap();
    let mut other = Helper::new(&state, dir.path().join("other.json"));
    other.connections = Some(1);
    other.plan.push(("theirs".into(), format!("{}/theirs", server.url()), dir.path().join("theirs.bin")));
    let _child = other.spawn();
    other.enqueued(30);
    m.enqueue(ferry::engine::Request {
        task_id: Some("mine".into()),
        connections: Some(1),
        ..ferry::engine::Request::file(format!("{}/mine", server.url()), dir.path().join("mine.bin"))
    })
    .unwrap();
    until(30, "both to run", || {
        m.status("theirs").is_ok_and(|t| t.state == TaskState::Running) && m.status("mine").unwrap().state == TaskState::Running
    });
    assert_eq!(m.running_count(), 1);
    let info = wait(&m, "mine", 60);
    assert_eq!(info.state, TaskState::Completed);
    until(60, "theirs to complete, seen from here", || m.status("theirs").unwrap().state == TaskState::Completed);
    m.shutdown_blocking();
}
