//! The `ferry` command: exit codes, Ctrl-C pausing with the journal flushed, re-running the same
//! command to resume, idempotent re-runs, batches, `list --json`, and the offline demo.

mod support;

use ferry::engine::runtime;
use ferry::loopback::{Faults, LoopbackServer};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn ferry(state: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--state-dir").arg(state).stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("ferry runs")
}

fn list_json(state: &std::path::Path) -> Vec<serde_json::Value> {
    let out = run(ferry(state).args(["list", "--json"]));
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(MIB)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("ok.bin");
    let ok = run(ferry(&state).args(["get", &server.url(), "--quiet", "-o"]).arg(&out));
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_same(&read(&out), &server.expected());

    let bad = run(ferry(&state).args(["get", "ftp://127.0.0.1/x", "--quiet", "-o"]).arg(dir.path().join("x")));
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unsupported_scheme"));

    let zero = run(ferry(&state).args(["get", &server.url(), "-x", "0", "--quiet", "-o"]).arg(dir.path().join("z")));
    assert_eq!(zero.status.code(), Some(3));

    let gone = dir.path().join("gone.bin");
    let nf = run(ferry(&state).args(["get", &format!("{}/status/404", server.base()), "--quiet", "-o"]).arg(&gone));
    assert_eq!(nf.status.code(), Some(4));
    assert!(!gone.exists() && !part_of(&gone).exists());

    let wrong = run(ferry(&state).args(["get", &server.url(), "--quiet", "--sha256", &"0".repeat(64), "-o"]).arg(dir.path().join("w")));
    assert_eq!(wrong.status.code(), Some(6));

    let usage = run(ferry(&state).args(["get"]));
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn https_with_a_private_ca_given_by_ca_cert_and_a_proxy_given_by_proxy() {
    let server = support::raw::RawServer::start_on(support::raw::Scheme::Https, |req| support::raw::honest(req, 9, MIB, "\"c\""));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, &support::tls::test_ca().ca_pem).unwrap();
    let url = format!("{}/f.bin", server.base());
    let untrusted = run(ferry(&state).args(["get", &url, "--quiet", "-o"]).arg(dir.path().join("no.bin")));
    assert_eq!(untrusted.status.code(), Some(4), "{}", String::from_utf8_lossy(&untrusted.stderr));
    assert!(String::from_utf8_lossy(&untrusted.stderr).contains("tls"));
    let proxy = support::proxy::TestProxy::start(None);
    let out = dir.path().join("ok.bin");
    let ok = run(ferry(&state).arg("--ca-cert").arg(&pem).args(["--proxy", &proxy.url(""), "get", &url, "--quiet", "-o"]).arg(&out));
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_same(&read(&out), &support::raw::content(9, 0, MIB));
    assert!(proxy.tunnels() >= 1);
}

/// A field of `/proc/<pid>/<file>`: the first number on the line starting with `key`.
#[cfg(target_os = "linux")]
fn proc_number(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Started from a shell, a process has 64 descriptor slots; growing the table once threads exist
/// stalls every `open` and `socket` for an RCU grace period (engine::fd_table). The CLI makes room
/// for 1024 (or its soft limit) before the runtime starts.
#[cfg(target_os = "linux")]
#[test]
fn the_cli_has_room_for_its_descriptors_from_the_start() {
    let server = slow_server(4 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("slow.bin");
    let child = KillOnDrop(ferry(&state).args(["get", &server.url(), "-x", "1", "--quiet", "-o"]).arg(&out).spawn().unwrap());
    until(30, "the body to flow", || server.stats().body_bytes.load(SeqCst) > 0);
    let pid = child.0.id();
    let slots = proc_number(pid, "status", "FDSize:");
    let soft = proc_number(pid, "limits", "Max open files");
    drop(child);
    let (slots, soft) = (slots.expect("FDSize of the running ferry"), soft.expect("its descriptor limit"));
    assert!(slots >= soft.min(1024), "ferry runs with {slots} descriptor slots (soft limit {soft})");
}

/// Runs `ferry batch -j 16` over 300 small files with the descriptor limits set to `soft` and
/// `hard` in the child; returns the exit code and how many files arrived intact.
#[cfg(target_os = "linux")]
fn batch_with_descriptor_limits(soft: u64, hard: u64) -> (Option<i32>, usize) {
    use std::os::unix::process::CommandExt;
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(16 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let list: String = (0..300).map(|i| format!("{} f{i}.bin\n", server.url())).collect();
    let listing = dir.path().join("list.txt");
    std::fs::write(&listing, list).unwrap();
    let mut cmd = ferry(&dir.path().join("state"));
    cmd.args(["batch", "-j", "16", "--quiet", "-i"]).arg(&listing).arg("-d").arg(&outdir);
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd);
    let intact = (0..300).filter(|i| std::fs::read(outdir.join(format!("f{i}.bin"))).is_ok_and(|b| b == server.expected())).count();
    (out.status.code(), intact)
}

/// At a soft limit of 64 descriptors (macOS and iOS start at 256) most of a 1000-file batch failed
/// with "Too many open files". The engine raises the soft limit toward the hard one.
#[cfg(target_os = "linux")]
#[test]
fn a_low_soft_descriptor_limit_is_raised_and_the_batch_completes() {
    assert_eq!(batch_with_descriptor_limits(40, 4096), (Some(0), 300));
}

/// With no room to raise it, the files waiting for their publish group are bounded by what the
/// limit leaves, so the batch still completes.
#[cfg(target_os = "linux")]
#[test]
fn a_low_hard_descriptor_limit_bounds_the_files_waiting_to_publish() {
    assert_eq!(batch_with_descriptor_limits(96, 96), (Some(0), 300));
}

/// Lower still, the transfers themselves are fitted into what the limit leaves (fewer tasks and
/// connections at once). At a hard limit of 48, 2 files of 1000 used to arrive and the other 998
/// failed one after another with "Too many open files".
#[cfg(target_os = "linux")]
#[test]
fn a_hard_descriptor_limit_far_below_the_asked_concurrency_still_completes_the_batch() {
    for limit in [48, 32] {
        assert_eq!(batch_with_descriptor_limits(limit, limit), (Some(0), 300), "hard limit {limit}");
    }
}

#[test]
fn ctrl_c_pauses_with_the_journal_flushed_and_the_same_command_resumes() {
    let server = slow_server(8 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let get = || {
        let mut c = ferry(&state);
        c.args(["get", &server.url(), "-x", "4", "--quiet", "-o"]).arg(&out);
        c
    };
    let mut child = get().spawn().unwrap();
    until(30, "a few MiB", || server.stats().body_bytes.load(SeqCst) > 3 * MIB);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "ferry did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let tasks = list_json(&state);
    assert_eq!(tasks[0]["state"], "paused");
    let kept = tasks[0]["bytes"].as_u64().unwrap();
    assert!(kept > 2 * MIB, "journal kept {kept}");
    assert!(part_of(&out).exists());
    let sent_before = server.stats().body_bytes.load(SeqCst);

    let again = get().output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stderr));
    assert_same(&read(&out), &server.expected());
    let resumed = server.stats().body_bytes.load(SeqCst) - sent_before;
    assert!(resumed <= 8 * MIB - kept + MIB, "the resume fetched {resumed} bytes with {kept} kept");

    // Once more: already downloaded, nothing fetched.
    let requests = server.stats().requests.load(SeqCst);
    let third = get().output().unwrap();
    assert_eq!(third.status.code(), Some(0));
    assert_eq!(server.stats().requests.load(SeqCst), requests);
}

#[test]
fn batch_downloads_a_list_and_reports_bad_lines() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(64 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let mut list = String::from("# a comment\n");
    for i in 0..20 {
        list.push_str(&format!("{} f{i}.bin\n", server.url()));
    }
    list.push_str("notaurl x.bin\n");
    let listing = dir.path().join("list.txt");
    std::fs::write(&listing, list).unwrap();
    let out = run(ferry(&state).args(["batch", "-j", "4", "--quiet", "-i"]).arg(&listing).arg("-d").arg(&outdir));
    assert_eq!(out.status.code(), Some(3), "a bad line makes the exit code say so");
    for i in 0..20 {
        assert_same(&read(&outdir.join(format!("f{i}.bin"))), &server.expected());
    }
    let tasks = list_json(&state);
    assert_eq!(tasks.len(), 20);
    assert!(tasks.iter().all(|t| t["state"] == "completed" && t["progress"] == 1.0));
}

#[test]
fn the_demo_runs_offline_and_verifies() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["demo", "--size-mib", "32"]).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SHA-256") && text.contains("matches"), "{text}");
    assert!(text.contains("killed with SIGKILL"), "{text}");
}

#[test]
fn a_listing_read_only_in_part_ends_quietly() {
    use std::io::BufRead;
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // More listing than a pipe holds, so that the writer is still writing when the reader leaves.
    let list: String = (0..1500).map(|i| format!("{} f{i:04}.bin\n", server.url())).collect();
    std::fs::write(dir.path().join("list.txt"), list).unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let batch =
        run(ferry(&state).args(["batch", "-i"]).arg(dir.path().join("list.txt")).arg("-d").arg(dir.path().join("out")).arg("--quiet"));
    assert_eq!(batch.status.code(), Some(0), "{}", String::from_utf8_lossy(&batch.stderr));
    let mut child = ferry(&state).arg("list").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("completed"), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn speed_limit_and_speed_time_set_the_minimum_speed() {
    // A byte every 100 ms: below a 64 KiB/s minimum judged over one second, the connection is
    // given up and asked again; with no minimum it is kept.
    let server = support::raw::RawServer::start(|_| {
        let mut parts = vec![support::raw::Part::Write(support::raw::head(200, &[("Content-Length", MIB.to_string())]))];
        parts.push(support::raw::Part::Trickle(support::raw::content(3, 0, MIB), Duration::from_millis(100)));
        parts
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/t.bin", server.base());
    for (limit, asked_again) in [("64K", true), ("0", false)] {
        let before = server.count();
        let mut child = ferry(&dir.path().join(format!("state-{limit}")))
            .args(["--speed-limit", limit, "--speed-time", "1", "get", &url, "-x", "1", "--quiet", "-o"])
            .arg(dir.path().join(format!("t-{limit}.bin")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(4);
        while Instant::now() < deadline && server.count() < before + 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let again = server.count() >= before + 2;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(again, asked_again, "--speed-limit {limit}: {} requests", server.count() - before);
    }
    let bad = run(ferry(&dir.path().join("state")).args(["--speed-time", "0", "get", &url]));
    assert_eq!(bad.status.code(), Some(2), "a window of 0 s is refused");
}

#[test]
fn a_rerun_says_already_downloaded_only_while_the_file_is_still_the_download() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(MIB)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("f.bin");
    let get = |extra: &[&str]| {
        let o = run(ferry(&state).args(["get", &server.url(), "--quiet"]).args(extra).arg("-o").arg(&out));
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    assert_eq!(get(&[]).0, Some(0));
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(server.expected()));
    assert_eq!(get(&["--sha256", &sum]).0, Some(0), "still the download");

    // Same length, other bytes: only the checksum tells.
    std::fs::write(&out, vec![0u8; MIB as usize]).unwrap();
    let (code, err) = get(&["--sha256", &sum]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("destination_exists"), "{err}");
    // Another length, or a directory in its place, is not the download either.
    std::fs::write(&out, b"garbage").unwrap();
    assert_eq!(get(&[]).0, Some(3));
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    let (code, err) = get(&[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("destination_not_writable"), "{err}");
    std::fs::remove_dir(&out).unwrap();
    std::fs::write(&out, b"garbage").unwrap();
    assert_eq!(get(&["--overwrite"]).0, Some(0));
    assert_same(&read(&out), &server.expected());
}

#[test]
fn list_shows_a_task_whose_process_was_killed_as_queued_not_running() {
    let server = slow_server(8 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("big.bin");
    let mut child = ferry(&state).args(["get", &server.url(), "-x", "2", "--quiet", "-o"]).arg(&out).spawn().unwrap();
    until(30, "listed running", || list_json(&state).first().is_some_and(|t| t["state"] == "running"));
    child.kill().unwrap();
    child.wait().unwrap();
    let tasks = list_json(&state);
    assert_eq!(tasks[0]["state"], "queued", "{tasks:?}");
    assert!(tasks[0]["bytes"].as_u64().unwrap() > 0);
    let resumed = run(ferry(&state).args(["resume", "--quiet"]));
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_same(&read(&out), &server.expected());
}
