//! Bandwidth caps against the loopback server: the rate measured over a window of a few seconds is
//! within 10 % of the cap (the global cap over several tasks, a task's cap over its several
//! connections), and raising, lowering or lifting a cap mid-download shows within a second.
//!
//! The caps stay at 1–4 MiB/s, far below what the loopback link does on a loaded two-core
//! machine, so that the cap (never the machine) sets the pace. Each window starts a second after
//! the download started or its cap changed.

mod support;

use ferry::engine::{Config, Manager, Request, TaskState};
use ferry::loopback::Faults;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;
/// Far more than any window moves at these caps: no download finishes while it is measured.
const SIZE: u64 = 64 * MIB;
const WINDOW: Duration = Duration::from_secs(3);

/// Bytes per second each of `ids` moved over `window`, measured from the task counters.
fn measure_each(m: &Manager, ids: &[&str], window: Duration) -> Vec<f64> {
    let bytes = || -> Vec<u64> { ids.iter().map(|id| m.status(id).unwrap().bytes).collect() };
    let (t0, b0) = (Instant::now(), bytes());
    std::thread::sleep(window);
    let (t1, b1) = (Instant::now(), bytes());
    b0.iter().zip(b1).map(|(b0, b1)| (b1 - b0) as f64 / (t1 - t0).as_secs_f64()).collect()
}

/// Bytes per second `ids` moved together over `window`.
fn measure(m: &Manager, ids: &[&str], window: Duration) -> f64 {
    measure_each(m, ids, window).iter().sum()
}

fn assert_near(what: &str, got: f64, cap: u64) {
    let ratio = got / cap as f64;
    eprintln!("{what}: {:.3} MiB/s against a cap of {:.3} MiB/s ({:.1} %)", got / MIB as f64, cap as f64 / MIB as f64, ratio * 100.0);
    // The byte counter moves in whole reads (up to a few hundred KiB), so a window of seconds can
    // catch one read more or less than the cap's share: 113.7 % was seen once on a loaded machine.
    assert!((0.85..=1.15).contains(&ratio), "{what}: {got:.0} B/s against a cap of {cap} B/s");
}

fn start(w: &World, name: &str, connections: u32, rate_limit: Option<u64>) -> String {
    let req = Request { connections: Some(connections), rate_limit, ..w.request(name) };
    let id = w.manager.enqueue(req).unwrap().to_string();
    until(10, "the download to start", || w.manager.status(&id).unwrap().bytes > 0);
    id
}

fn world() -> World {
    World::with_config(Faults::new(SIZE), Config { rate_limit: None, ..test_config() })
}

fn cancel(w: &World, ids: &[&str]) {
    for id in ids {
        w.manager.cancel(id).unwrap();
        assert_eq!(wait(&w.manager, id, 20).state, TaskState::Cancelled);
    }
}

#[test]
fn the_global_cap_holds_over_all_tasks_and_their_connections() {
    let cap = 2 * MIB;
    let w = World::with_config(Faults::new(SIZE), Config { rate_limit: Some(cap), ..test_config() });
    assert_eq!(w.manager.rate_limit(), Some(cap));
    let a = start(&w, "a.bin", 3, None);
    let b = start(&w, "b.bin", 2, None);
    std::thread::sleep(Duration::from_secs(1));
    assert_near("two tasks, five connections, global cap", measure(&w.manager, &[&a, &b], WINDOW), cap);
    cancel(&w, &[&a, &b]);
}

#[test]
fn a_task_cap_holds_over_its_connections_and_each_task_keeps_its_own() {
    let w = world();
    let (cap_a, cap_b) = (MIB, 3 * MIB / 2);
    let a = start(&w, "a.bin", 4, Some(cap_a));
    let b = start(&w, "b.bin", 3, Some(4 * MIB));
    w.manager.set_task_rate_limit(&b, Some(cap_b)).unwrap();
    assert_eq!(w.manager.task_rate_limit(&b).unwrap(), Some(cap_b));
    std::thread::sleep(Duration::from_secs(1));
    let got = measure_each(&w.manager, &[&a, &b], Duration::from_secs(4));
    let (got_a, got_b) = (got[0], got[1]);
    assert_near("task a, four connections", got_a, cap_a);
    assert_near("task b, three connections", got_b, cap_b);
    assert!(w.manager.status(&a).unwrap().connections >= 2, "the cap is shared by several connections");
    cancel(&w, &[&a, &b]);
}

#[test]
fn raising_lowering_and_lifting_a_cap_mid_download_shows_within_a_second() {
    let w = world();
    let id = start(&w, "c.bin", 4, Some(MIB));
    std::thread::sleep(Duration::from_secs(1));
    assert_near("task cap of 1 MiB/s", measure(&w.manager, &[&id], Duration::from_secs(2)), MIB);

    w.manager.set_task_rate_limit(&id, Some(4 * MIB)).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_near("raised to 4 MiB/s", measure(&w.manager, &[&id], Duration::from_secs(2)), 4 * MIB);

    // The global cap, tighter than the task's, takes over.
    w.manager.set_rate_limit(Some(MIB));
    std::thread::sleep(Duration::from_secs(1));
    assert_near("global cap lowered to 1 MiB/s", measure(&w.manager, &[&id], Duration::from_secs(2)), MIB);

    w.manager.set_rate_limit(None);
    w.manager.set_task_rate_limit(&id, None).unwrap();
    assert_eq!((w.manager.rate_limit(), w.manager.task_rate_limit(&id).unwrap()), (None, None));
    let before = w.manager.status(&id).unwrap().bytes;
    let lifted = Instant::now();
    // Without a cap the loopback link moves far more than 3 MiB in a second, even on a busy machine.
    until(5, "the lifted cap to show", || w.manager.status(&id).unwrap().bytes >= before + 3 * MIB);
    let took = lifted.elapsed();
    eprintln!("lifted: 3 MiB more in {took:?}");
    assert!(took < Duration::from_secs(1), "3 MiB took {took:?} after the cap was lifted");
    cancel(&w, &[&id]);
}

#[test]
fn a_plain_stream_is_capped_too() {
    // No ranges: one stream from zero, the path servers without range support take. Its counter
    // moves in writes of 256 KiB, too coarse for a window of seconds: the whole file is the window.
    let size = 4 * MIB;
    let w = World::with_config(Faults { ranges: false, ..Faults::new(size) }, Config { rate_limit: Some(MIB), ..test_config() });
    let started = Instant::now();
    let info = w.download(w.request("p.bin"));
    let took = started.elapsed();
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("p.bin")), &w.server.expected());
    assert_near("plain stream, global cap, whole file", size as f64 / took.as_secs_f64(), MIB);
}

/// Runs the `ferry` command with a state directory in `dir`; returns how long it took.
fn ferry_timed(dir: &std::path::Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ferry runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

#[test]
fn the_cli_takes_limit_rate_as_curl_spells_it() {
    let server = ferry::loopback::LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults::new(3 * MIB)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.bin");
    let url = server.url();
    // 3 MiB at 1 MiB/s: about three seconds (less the first tenth of a second's burst).
    let took = ferry_timed(dir.path(), &["get", "--quiet", "-x", "3", "--limit-rate", "1M", &url, "-o", out.to_str().unwrap()]);
    eprintln!("get --limit-rate 1M: 3 MiB in {took:?}");
    assert!(took >= Duration::from_millis(2600), "3 MiB at 1M took {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_same(&read(&out), &server.expected());

    // A batch shares one cap: two files of 3 MiB at 2 MiB/s together.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{url} a.bin\n{url} b.bin\n")).unwrap();
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let took =
        ferry_timed(dir.path(), &["batch", "--quiet", "--limit-rate", "2m", "-i", list.to_str().unwrap(), "-d", outdir.to_str().unwrap()]);
    eprintln!("batch --limit-rate 2m: 6 MiB in {took:?}");
    assert!(took >= Duration::from_millis(2600), "6 MiB at 2M took {took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_same(&read(&outdir.join("a.bin")), &server.expected());
    assert_same(&read(&outdir.join("b.bin")), &server.expected());
}

#[test]
fn a_task_cap_is_stored_and_paces_the_download_after_a_reopen() {
    let cap = MIB;
    let w = world();
    let id = start(&w, "r.bin", 3, Some(4 * MIB));
    w.manager.set_task_rate_limit(&id, Some(cap)).unwrap();
    w.manager.pause(&id).unwrap();
    assert_eq!(wait(&w.manager, &id, 20).state, TaskState::Paused);
    let state = w.dir.path().join("state");
    w.manager.shutdown_blocking();
    let m = Manager::open(&state, Config { rate_limit: None, ..test_config() }).unwrap();
    assert_eq!(m.task_rate_limit(&id).unwrap(), Some(cap), "the cap set last, not the one enqueued");
    m.resume(&id).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_near("task cap after a reopen", measure(&m, &[id.as_str()], WINDOW), cap);
    m.cancel(&id).unwrap();
    assert_eq!(wait(&m, &id, 20).state, TaskState::Cancelled);
    m.shutdown_blocking();
}

#[test]
fn a_task_cap_set_from_another_process_reaches_the_one_that_runs_it() {
    let server = ferry::loopback::LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults::new(SIZE)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("x.bin");
    let owner = KillOnDrop(
        support::procs::ferry(&state)
            .args(["get", "--quiet", "-x", "2", "--limit-rate", "8M", "--id", "x", &server.url(), "-o"])
            .arg(&out)
            .spawn()
            .unwrap(),
    );
    let m = Manager::open(&state, Config { resume_on_open: false, rate_limit: None, ..test_config() }).unwrap();
    until(20, "the other process's download to show here", || m.status("x").is_ok_and(|t| t.bytes > 0));
    assert!(!m.runs_here("x"));
    m.set_task_rate_limit("x", Some(MIB / 2)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Progress reaches this process every 250 ms: a window of four seconds tells 0.5 MiB/s from 8.
    let got = measure(&m, &["x"], Duration::from_secs(4));
    eprintln!("capped from another process: {:.2} MiB/s (its own cap 8 MiB/s)", got / MIB as f64);
    assert!(got < 0.8 * MIB as f64, "{got:.0} B/s after a cap of 0.5 MiB/s");
    assert!(got > 0.2 * MIB as f64, "{got:.0} B/s: the download still moves");
    drop(owner);
    m.shutdown_blocking();
}
