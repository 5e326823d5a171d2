//! `ferry demo`: the whole promise in one offline run. A generated file is served on loopback with
//! a per-connection rate cap; a `ferry get` child process downloads it over several connections and
//! is killed with SIGKILL part-way; `ferry resume` finishes it; the SHA-256 is checked and the bytes
//! the server had to send twice are reported.

use super::{wait_child, Failure};
use ferry::engine::{runtime, Manager};
use ferry::loopback::{content, Faults, LoopbackServer};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Size of the demo file in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Connections.
    #[arg(short = 'x', long, default_value_t = 8)]
    connections: u32,
    /// Per-connection rate cap of the demo server, in MB/s.
    #[arg(long, default_value_t = 8)]
    rate_mb: u64,
    /// Kill the first download when this fraction has arrived.
    #[arg(long, default_value_t = 0.4)]
    kill_at: f64,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

pub async fn run(a: DemoArgs) -> Result<u8, Failure> {
    let fail = |m: String| Failure { code: 1, message: m };
    let size = a.size_mib.max(1) << 20;
    let mut faults = Faults::new(size);
    faults.seed = 42;
    faults.rate = Some(a.rate_mb.max(1) * 1_000_000);
    let server = LoopbackServer::start(runtime::handle(), 0, faults).map_err(|e| fail(format!("cannot listen: {e}")))?;
    let work = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| fail(e.to_string()))?;
    let state = work.join("state");
    let out = work.join("demo.bin");
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let expected = content::sha256(42, size);
    println!("ferry demo: serving {:.0} MiB on {} (capped at {} MB/s per connection)", mib(size), server.url(), a.rate_mb);

    let t0 = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--state-dir")
        .arg(&state)
        .args(["get", &server.url(), "-x", &a.connections.to_string(), "--quiet", "--id", "demo", "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot start the download: {e}")))?;
    println!("1. `ferry get -x {}` started (pid {})", a.connections, child.id());
    let target = (size as f64 * a.kill_at.clamp(0.05, 0.95)) as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while server.stats().body_bytes.load(Ordering::SeqCst) < target {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(fail(format!("the download ended before it could be killed ({status})")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(fail("the download made no progress".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = wait_child(&mut child, Duration::from_secs(10));
    let sent_before = server.stats().body_bytes.load(Ordering::SeqCst);
    println!("2. killed with SIGKILL after {:.1}s; the server had sent {:.1} MiB", t0.elapsed().as_secs_f64(), mib(sent_before));
    let journaled: u64 = Manager::list_read_only(&state).map_err(|e| fail(e.to_string()))?.iter().map(|t| t.bytes).sum();
    println!("3. the journal says {:.1} MiB are safely in the part file", mib(journaled));

    let t1 = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--state-dir")
        .arg(&state)
        .args(["resume", "--quiet"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot start the resume: {e}")))?;
    let status = wait_child(&mut child, Duration::from_secs(900)).ok_or_else(|| fail("resume timed out".into()))?;
    if !status.success() {
        return Err(fail(format!("`ferry resume` failed ({status})")));
    }
    let sent_total = server.stats().body_bytes.load(Ordering::SeqCst);
    println!("4. `ferry resume` finished in {:.1}s", t1.elapsed().as_secs_f64());

    let got = super::sha256_file(&out).map_err(|e| fail(format!("reading the output file: {e}")))?;
    let twice = sent_total.saturating_sub(size);
    let ok = got == expected;
    println!("5. SHA-256 {} {}", got, if ok { "matches" } else { "DOES NOT MATCH" });
    println!("   bytes sent twice by the server: {:.2} MiB ({} bytes) of {:.0} MiB", mib(twice), twice, mib(size));
    let _ = std::fs::remove_dir_all(&work);
    Ok(if ok { 0 } else { 6 })
}
