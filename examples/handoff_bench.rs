//! The hand-off benchmark (bench/handoff.sh): prints one JSON line with
//! - `handoff_ms`: handing off 100 running downloads (stop at a write boundary, sync part files and
//!   journals, lease every byte left) against the loopback server;
//! - `ingest_ms` / `copy_ms`: ingesting a 32 MiB chunk (judge, copy_file_range into the part file,
//!   fdatasync, journal) against copying the same file with std::fs::copy and an fsync;
//! - `twice_bytes`: bytes the server sent beyond the file's size across a hand-off and a take-back
//!   of a 1 GiB download (the stand-in OS fetches some chunks, the engine takes the rest back).
//!
//! Usage: handoff_bench [WORK_DIR] (a temporary directory by default).

use ferry::engine::{ChunkMeta, Config, HandoffOptions, IngestOutcome, Limits, Manager, OsRequest, Request, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    ferry::engine::runtime::handle().block_on(f)
}

fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The stand-in OS: one plain GET with the lease's headers, the body into `to`.
fn os_fetch(r: &OsRequest, to: &Path) -> ChunkMeta {
    let url = url::Url::parse(&r.url).unwrap();
    let mut s = std::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).unwrap();
    let mut head = format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", url.path());
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    s.write_all(format!("{head}\r\n").as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let text = String::from_utf8_lossy(&all[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    std::fs::write(to, &all[end..]).unwrap();
    ChunkMeta { status, headers }
}

fn config(limits: Limits) -> Config {
    Config { limits, ..Config::default() }
}

fn hand_off_100(work: &Path) -> f64 {
    let server = LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults { rate: Some(MIB), ..Faults::new(64 * MIB) }).unwrap();
    let limits = Limits { max_running_tasks: 100, max_connections_per_host: 400, max_connections_per_task: 2 };
    let m = Manager::open(work.join("state-100"), config(limits)).unwrap();
    let ids: Vec<String> = (0..100)
        .map(|i| {
            m.enqueue(Request { connections: Some(2), ..Request::file(server.url(), work.join(format!("h{i}.bin"))) }).unwrap().to_string()
        })
        .collect();
    wait_until(60, || ids.iter().all(|id| m.status(id).unwrap().bytes > 256 * 1024));
    let t = Instant::now();
    let report = block({
        let m = m.clone();
        async move { m.hand_off(None, HandoffOptions { max_leases: 10_000, ..HandoffOptions::default() }).await }
    })
    .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(ids.iter().all(|id| m.status(id).unwrap().handed_off));
    eprintln!("handed off 100 tasks in {ms:.1} ms ({} leases)", report.requests.len());
    for id in &ids {
        m.cancel(id).unwrap();
    }
    m.shutdown_blocking();
    ms
}

fn ingest_32(work: &Path) -> (f64, f64, u64) {
    let size = 64 * MIB;
    let server = LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults { rate: Some(2 * MIB), ..Faults::new(size) }).unwrap();
    let m = Manager::open(work.join("state-ingest"), Config::default()).unwrap();
    let id = m.enqueue(Request { connections: Some(1), ..Request::file(server.url(), work.join("i.bin")) }).unwrap().to_string();
    wait_until(60, || m.status(&id).unwrap().bytes > 0);
    let report = block({
        let m = m.clone();
        async move { m.hand_off(None, HandoffOptions { chunk_bytes: 32 * MIB, ..HandoffOptions::default() }).await }
    })
    .unwrap();
    server.set(|f| f.rate = None);
    let first = report.requests.iter().max_by_key(|r| r.end - r.start).unwrap().clone();
    let chunk = work.join("chunk.tmp");
    let meta = os_fetch(&first, &chunk);
    let copy_src = work.join("copy-src");
    std::fs::copy(&chunk, &copy_src).unwrap();
    ferry::engine::runtime::handle().block_on(async { tokio::task::yield_now().await });
    let t = Instant::now();
    let outcome = m.ingest(&first.lease_id, &chunk, meta);
    let ingest_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(matches!(outcome, IngestOutcome::Committed { .. }), "{outcome:?}");
    let t = Instant::now();
    std::fs::copy(&copy_src, work.join("copy-dst")).unwrap();
    std::fs::File::open(work.join("copy-dst")).unwrap().sync_all().unwrap();
    let copy_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!("ingest of {} MiB: {ingest_ms:.1} ms; copy + fsync: {copy_ms:.1} ms", (first.end - first.start) / MIB);
    m.cancel(&id).unwrap();
    m.shutdown_blocking();
    (ingest_ms, copy_ms, first.end - first.start)
}

fn take_back_1g(work: &Path) -> u64 {
    let size = 1024 * MIB;
    let server = LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults { rate: Some(32 * MIB), ..Faults::new(size) }).unwrap();
    let m = Manager::open(work.join("state-1g"), Config::default()).unwrap();
    let out = work.join("g.bin");
    let id = m.enqueue(Request { connections: Some(8), ..Request::file(server.url(), &out) }).unwrap().to_string();
    wait_until(120, || m.status(&id).unwrap().bytes > 128 * MIB);
    let report = block({
        let m = m.clone();
        async move { m.hand_off(None, HandoffOptions::default()).await }
    })
    .unwrap();
    // The OS finishes a few chunks while the app sleeps, then the app returns.
    for (i, r) in report.requests.iter().take(4).enumerate() {
        let f = work.join(format!("os{i}.tmp"));
        let meta = os_fetch(r, &f);
        assert!(matches!(m.ingest(&r.lease_id, &f, meta), IngestOutcome::Committed { .. }));
    }
    server.set(|f| f.rate = None);
    m.take_back(Duration::ZERO).unwrap();
    let st = block({
        let m = m.clone();
        let id = id.clone();
        async move { m.wait(&id).await }
    })
    .unwrap();
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    let sent = server.stats().body_bytes.load(Ordering::SeqCst);
    let twice = sent.saturating_sub(size);
    eprintln!("1 GiB across a hand-off and a take-back: {:.2} MiB sent twice", twice as f64 / MIB as f64);
    std::fs::remove_file(&out).unwrap();
    m.shutdown_blocking();
    twice
}

fn main() {
    let tmp;
    let work = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile_dir();
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&work).unwrap();
    let handoff_ms = hand_off_100(&work);
    let (ingest_ms, copy_ms, chunk_bytes) = ingest_32(&work);
    let twice_bytes = take_back_1g(&work);
    println!(
        "{}",
        serde_json::json!({ "handoff_ms": handoff_ms, "ingest_ms": ingest_ms, "copy_ms": copy_ms, "chunk_bytes": chunk_bytes, "twice_bytes": twice_bytes })
    );
    let _ = std::fs::remove_dir_all(&work);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ferry-handoff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
