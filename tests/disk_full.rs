//! Running out of space: a typed error, no destination file, and the partial kept so that a later
//! resume (with space again) finishes without starting over.

mod support;

use ferry::engine::{runtime, ErrorCode, Manager, Request, TaskState};
use ferry::loopback::{content, Faults, LoopbackServer};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use support::*;

const MIB: u64 = 1 << 20;

#[test]
fn a_file_size_limit_fails_typed_and_resume_finishes_later() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(12 * MIB)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("f.bin");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.arg("--state-dir").arg(&state).args(["get", &server.url(), "-x", "1", "--quiet", "-o"]).arg(&out);
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 4 << 20, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "storage errors exit with 5; stderr: {stderr}");
    assert!(stderr.contains("disk_full"), "{stderr}");
    assert!(!out.exists(), "no destination on failure");
    let part = part_of(&out);
    assert!(part.exists(), "the partial is kept");
    let tasks = Manager::list_read_only(&state).unwrap();
    assert_eq!(tasks[0].state, TaskState::Failed);
    assert_eq!(tasks[0].error.as_ref().unwrap().code, ErrorCode::DiskFull);
    let kept = tasks[0].bytes;
    assert!(kept >= 3 * MIB, "journal kept {kept}");

    let sent_before = server.stats().body_bytes.load(SeqCst);
    let status = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--state-dir")
        .arg(&state)
        .args(["resume", "--quiet"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_same(&read(&out), &content::bytes(1, 12 * MIB));
    let resumed = server.stats().body_bytes.load(SeqCst) - sent_before;
    assert!(resumed <= 12 * MIB - kept + MIB, "resume fetched {resumed} bytes");
}

/// ENOSPC from a real, small filesystem (a tmpfs; needs root to mount, as CI has).
#[test]
fn a_full_filesystem_fails_typed_and_keeps_the_partial() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED a_full_filesystem_fails_typed_and_keeps_the_partial: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |opts: &str| Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(&mnt).status().unwrap();
    // The file fits the file system, but not the space other files leave free.
    assert!(mount("size=12m").success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(8 * MIB)).unwrap();
    let m = Manager::open(dir.path().join("state"), test_config()).unwrap();
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 9 * MIB as usize]).unwrap();
    let out = mnt.join("f.bin");
    let id = m.enqueue(Request { connections: Some(1), ..Request::file(server.url(), &out) }).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::DiskFull);
    assert!(!out.exists());
    assert!(part_of(&out).exists(), "partial kept");
    let kept = m.status(id.as_str()).unwrap().bytes;
    assert!(kept > MIB, "kept {kept}");
    std::fs::remove_file(&filler).unwrap();
    // The failed run's body may still be streaming into its closed socket on the server's side
    // (a loaded machine notices late): count the resume's bytes only once it has stopped.
    until(30, "the first body to stop", || server.stats().active.load(SeqCst) == 0);
    let sent_before = server.stats().body_bytes.load(SeqCst);
    m.resume(id.as_str()).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    let resumed = server.stats().body_bytes.load(SeqCst) - sent_before;
    assert!(resumed <= 8 * MIB - kept + MIB, "resume fetched {resumed} bytes with {kept} kept");
    m.shutdown_blocking();
}
