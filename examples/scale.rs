//! Benchmark case 5: enqueue 10,000 tasks into one manager, reopen the state directory, list it.
//! Usage: scale STATE_DIR URL OUT_DIR. Prints one JSON line of timings.

use ferry::engine::{Config, Manager, Request};
use std::time::Instant;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (state, url, out) = (&args[1], &args[2], std::path::PathBuf::from(&args[3]));
    let config = Config { resume_on_open: false, ..Config::default() };
    let manager = Manager::open(state, config.clone())?;
    let requests: Vec<Request> = (0..10_000).map(|i| Request::file(url.clone(), out.join(format!("f{i:05}")))).collect();
    let t = Instant::now();
    let results = manager.enqueue_batch(requests);
    let enqueue_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(results.iter().all(|r| r.is_ok()), "enqueue failed");
    let rss_mb = peak_rss_mb();
    manager.pause_all();
    manager.shutdown_blocking();
    drop(manager);
    let t = Instant::now();
    let manager = Manager::open(state, config)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let n = manager.list().len();
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(n, 10_000);
    println!("{{\"enqueue_ms\": {enqueue_ms:.1}, \"rss_mb\": {rss_mb:.1}, \"reopen_ms\": {reopen_ms:.1}, \"list_ms\": {list_ms:.1}}}");
    Ok(())
}
