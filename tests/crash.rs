//! Kill -9 the `ferry` process at several points of a 16-connection download of 1 GiB served at
//! about 128 MB/s (8 MB/s per connection), let `ferry resume` finish it, and count what the server
//! had to send twice. The journal claims only bytes already handed to the kernel, so the loss per
//! kill is bounded by the journal lag and the bytes in flight.

mod support;

use ferry::engine::runtime;
use ferry::loopback::{content, Faults, LoopbackServer};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

fn sha256_file(p: &std::path::Path) -> String {
    let mut f = std::fs::File::open(p).expect("output exists");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The part file's journal, read the way another process would.
fn journaled(state: &std::path::Path) -> u64 {
    ferry::engine::Manager::list_read_only(state).unwrap().iter().map(|t| t.bytes).sum()
}

#[test]
fn sigkill_at_several_points_then_resume_loses_almost_nothing() {
    let size: u64 = std::env::var("FERRY_CRASH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024) * MIB;
    let mut faults = Faults::new(size);
    faults.seed = 99;
    faults.rate = Some(8_000_000);
    let server = LoopbackServer::start(runtime::handle(), 0, faults).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let get = |out: &std::path::Path| {
        ferry()
            .arg("--state-dir")
            .arg(&state)
            .args(["get", &server.url(), "-x", "16", "--quiet", "--id", "big", "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut report = Vec::new();
    let mut lost_total = 0u64;
    for (i, fraction) in [0.15, 0.45, 0.75].into_iter().enumerate() {
        let before = server.stats().body_bytes.load(SeqCst);
        let mut child = get(&out);
        let target = (size as f64 * fraction) as u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.stats().body_bytes.load(SeqCst) < target {
            assert!(child.try_wait().unwrap().is_none(), "ferry exited before the kill");
            assert!(Instant::now() < deadline, "no progress towards {target}");
            std::thread::sleep(Duration::from_millis(5));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        wait_exit(&mut child, 10);
        // Give the server a moment to notice the closed sockets.
        std::thread::sleep(Duration::from_millis(200));
        let sent = server.stats().body_bytes.load(SeqCst);
        let kept = journaled(&state);
        report.push(format!(
            "kill {} at {:.0}%: server sent {:.1} MiB in this run, journal keeps {:.1} MiB",
            i + 1,
            fraction * 100.0,
            (sent - before) as f64 / MIB as f64,
            kept as f64 / MIB as f64
        ));
        assert!(kept > 0, "nothing journaled");
        let _ = &mut lost_total;
    }
    let mut child = ferry().arg("--state-dir").arg(&state).args(["resume", "--quiet"]).stdin(Stdio::null()).spawn().unwrap();
    let status = wait_exit(&mut child, 600);
    assert!(status.success(), "ferry resume failed: {status}");
    let sent = server.stats().body_bytes.load(SeqCst);
    let twice = sent.saturating_sub(size);
    lost_total += twice;
    for line in &report {
        println!("{line}");
    }
    println!(
        "size {} MiB, server sent {:.2} MiB in total, {:.2} MiB twice ({} bytes) over 3 kills",
        size / MIB,
        sent as f64 / MIB as f64,
        lost_total as f64 / MIB as f64,
        lost_total
    );
    assert_eq!(sha256_file(&out), content::sha256(99, size), "wrong bytes after resume");
    assert!(!ferry::engine::part_path(&out).exists());
    // The server counts as sent what it wrote into its socket: with 16 connections, what its send
    // buffers and the client's receive buffers hold at a kill is lost to any client, and those
    // fill further when the machine is loaded and the client reads late (2 MiB per connection
    // caught that way in nginx's log; 30 MiB over three kills seen with both cores busy). What the
    // bound guards is the journal: a client that kept only what it had synced would lose hundreds
    // of MiB here (aria2 loses about 380).
    assert!(twice <= 3 * 16 * MIB, "{:.2} MiB were downloaded twice", twice as f64 / MIB as f64);
}
