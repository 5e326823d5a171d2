//! Benchmark case 6: what sharing a state directory costs. PROCESSES processes open one state
//! directory; all at once, each enqueues TASKS tasks in one batch, then 200 one by one (so the
//! enqueues contend for the table's write lock); then, one process after the other, each asks
//! `status()` of every task in the directory (its own and the others') and `list()`s it. Run with
//! 1 and with 4 processes to compare.
//!
//! The tasks point at a loopback server that never answers, so the few that start only wait: what
//! is measured is the table and the processes, not downloads competing for the two cores.
//!
//! Usage: shared_dir STATE OUT_DIR PROCESSES [TASKS]. Prints one JSON line: each measure's median
//! over the processes.

use ferry::engine::{runtime, Config, Manager, Request};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Enqueues measured one by one, per process.
const SINGLES: usize = 200;
/// Rounds of `status()` over every task.
const STATUS_ROUNDS: usize = 5;

/// Waits until every process has reached barrier `name`.
fn barrier(out: &Path, name: &str, index: usize, processes: usize) {
    std::fs::write(out.join(format!("{name}-{index}")), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (0..processes).any(|i| !out.join(format!("{name}-{i}")).exists()) {
        assert!(Instant::now() < deadline, "the other processes did not reach {name}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn measure(state: &Path, out: &Path, url: &str, index: usize, processes: usize, tasks: usize) -> Value {
    let config = Config { resume_on_open: false, ..Config::default() };
    let manager = Manager::open(state, config).expect("open");
    let files = out.join(format!("p{index}"));
    std::fs::create_dir_all(&files).unwrap();
    barrier(out, "open", index, processes);
    let requests: Vec<Request> = (0..tasks).map(|k| Request::file(url, files.join(format!("f{k:05}")))).collect();
    let t = Instant::now();
    let results = manager.enqueue_batch(requests);
    let enqueue_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(results.iter().all(|r| r.is_ok()), "enqueue failed: {:?}", results.iter().find(|r| r.is_err()));
    manager.pause_all();
    let mut single = Duration::ZERO;
    for k in 0..SINGLES {
        let request = Request::file(url, files.join(format!("one{k:03}")));
        let t = Instant::now();
        let id = manager.enqueue(request).expect("enqueue one");
        single += t.elapsed();
        let _ = manager.pause(id.as_str());
    }
    manager.pause_all();
    barrier(out, "enqueued", index, processes);
    // Every process's tasks are in the table now; this process sees them all once it looked.
    let expected = processes * (tasks + SINGLES);
    let deadline = Instant::now() + Duration::from_secs(30);
    while manager.list().len() < expected {
        assert!(Instant::now() < deadline, "the other processes' tasks did not show");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ids: Vec<String> = manager.list().into_iter().map(|t| t.id.as_str().to_string()).collect();
    for id in &ids {
        manager.status(id).expect("status"); // each status's URL is redacted once, on first use
    }
    // The processes take turns: what is measured is the cost of sharing the directory, not of
    // sharing the machine's two cores.
    let (mut status_us, mut list_ms, mut listed) = (0.0, 0.0, 0);
    for turn in 0..processes {
        barrier(out, &format!("turn{turn}"), index, processes);
        if turn != index {
            continue;
        }
        let t = Instant::now();
        for _ in 0..STATUS_ROUNDS {
            for id in &ids {
                std::hint::black_box(manager.status(id).expect("status"));
            }
        }
        status_us = t.elapsed().as_secs_f64() * 1e6 / (STATUS_ROUNDS * ids.len()) as f64;
        let t = Instant::now();
        listed = manager.list().len();
        list_ms = t.elapsed().as_secs_f64() * 1e3;
    }
    assert_eq!(listed, expected);
    barrier(out, "measured", index, processes);
    manager.shutdown_blocking();
    json!({
        "enqueue_ms": enqueue_ms,
        "enqueue_one_us": single.as_secs_f64() * 1e6 / SINGLES as f64,
        "status_us": status_us,
        "list_ms": list_ms,
        "tasks_seen": listed,
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (state, out) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let processes: usize = args[3].parse()?;
    let tasks: usize = args.get(4).map(|t| t.parse()).transpose()?.unwrap_or(2500);
    if let Ok(index) = std::env::var("FERRY_BENCH_PEER") {
        let index: usize = index.parse()?;
        let v = measure(&state, &out, &args[5], index, processes, tasks);
        std::fs::write(out.join(format!("result-{index}.json")), v.to_string())?;
        return Ok(());
    }
    let mut silent = ferry::loopback::Faults::new(16 * 1024);
    silent.busy_status = ferry::loopback::NEVER_ANSWER;
    silent.busy_requests = u64::MAX;
    let server = ferry::loopback::LoopbackServer::start(runtime::handle(), 0, silent)?;
    let url = server.url();
    std::fs::create_dir_all(&out)?;
    let peers: Vec<std::process::Child> = (1..processes)
        .map(|i| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([&args[1], &args[2], &args[3], &tasks.to_string(), &url])
                .env("FERRY_BENCH_PEER", i.to_string())
                .spawn()
                .expect("a peer starts")
        })
        .collect();
    let mine = measure(&state, &out, &url, 0, processes, tasks);
    let mut all = vec![mine];
    for (i, mut p) in peers.into_iter().enumerate() {
        assert!(p.wait()?.success(), "peer {} failed", i + 1);
        all.push(serde_json::from_str(&std::fs::read_to_string(out.join(format!("result-{}.json", i + 1)))?)?);
    }
    let mut summary = json!({"processes": processes, "tasks_per_process": tasks});
    for key in ["enqueue_ms", "enqueue_one_us", "status_us", "list_ms"] {
        let mut v: Vec<f64> = all.iter().map(|r| r[key].as_f64().unwrap()).collect();
        summary[key] = json!((median(&mut v) * 100.0).round() / 100.0);
    }
    summary["tasks_seen"] = all[0]["tasks_seen"].clone();
    println!("{summary}");
    Ok(())
}
