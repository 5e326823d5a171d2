//! A process to kill in the middle of a hand-off, for `tests/handoff.rs` and
//! `tests/handoff_crash.rs`: it starts a download, hands it off, prints the leases (one JSON line
//! each), then takes commands on stdin — `stage <lease> <file> <meta json>` stages a chunk the test
//! fetched and prints `staged`, `ingest <lease>` ingests a staged chunk and prints the outcome —
//! and waits to be killed. Usage: handoff_child STATE_DIR URL OUT CHUNK_BYTES.

use ferry::engine::{ChunkMeta, Config, HandoffOptions, Manager, Request};
use std::io::BufRead;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (state, url, out, chunk) = (&args[1], &args[2], &args[3], args[4].parse::<u64>()?);
    let m = Manager::open(state, Config::default())?;
    let id = m.enqueue(Request { connections: Some(4), ..Request::file(url.clone(), out) })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while m.status(id.as_str())?.bytes < (1 << 20) {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let options = HandoffOptions { chunk_bytes: chunk, ..HandoffOptions::default() };
    let report = ferry::engine::runtime::handle().block_on({
        let m = m.clone();
        async move { m.hand_off(None, options).await }
    })?;
    for r in &report.requests {
        let line = serde_json::json!({ "lease": r.lease_id, "url": r.url, "headers": r.headers, "start": r.start, "end": r.end });
        println!("{line}");
    }
    println!("leased");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut parts = line.splitn(4, ' ');
        if parts.next() == Some("stage") {
            let (lease, file, meta) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("{}"));
            let meta: ChunkMeta = serde_json::from_str(meta)?;
            assert!(m.stage_chunk(lease, std::path::Path::new(file), meta)?);
            println!("staged");
        } else if let Some(lease) = line.strip_prefix("ingest ") {
            println!("{:?}", m.ingest_staged(lease));
        }
    }
    Ok(())
}
