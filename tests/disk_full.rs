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

/// A small real file system (a tmpfs; mounting needs root, as CI has), unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mnt: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&mnt).status().unwrap();
        assert!(ok.success(), "mount tmpfs");
        Some(Tmpfs { _dir: dir, mnt })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A download that cannot fit the free space fails at once, with the numbers, before fetching it:
/// not after filling the disk. Freed space, then a resume, finishes it.
#[test]
fn a_download_larger_than_the_free_space_fails_at_once_with_the_numbers() {
    let Some(fs) = Tmpfs::mount("12m") else {
        eprintln!("SKIPPED a_download_larger_than_the_free_space_fails_at_once_with_the_numbers: mounting a tmpfs needs root");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(8 * MIB)).unwrap();
    let m = Manager::open(dir.path().join("state"), test_config()).unwrap();
    // The file fits the file system, but not the space other files leave free.
    let filler = fs.mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 9 * MIB as usize]).unwrap();
    let out = fs.mnt.join("f.bin");
    let id = m.enqueue(Request { connections: Some(1), ..Request::file(server.url(), &out) }).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Failed);
    let error = info.error.unwrap();
    assert_eq!(error.code, ErrorCode::DiskFull);
    assert!(error.message.contains("needs 8388608 more bytes") && error.message.contains("free"), "{}", error.message);
    assert!(!out.exists());
    assert!(!part_of(&out).exists(), "nothing fetched, nothing kept");
    until(30, "the probe's body to stop", || server.stats().active.load(SeqCst) == 0);
    let sent = server.stats().body_bytes.load(SeqCst);
    // The probe's answer may have filled the socket buffers before its length was known.
    assert!(sent < 8 * MIB, "failed before fetching the file: the server sent {sent} bytes");
    std::fs::remove_file(&filler).unwrap();
    m.resume(id.as_str()).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    m.shutdown_blocking();
}

/// The download's blocks are reserved when it starts: another writer filling the disk meanwhile
/// runs out of space instead of the download at 95 %.
#[test]
fn a_download_reserves_its_space_before_another_writer_can_take_it() {
    let Some(fs) = Tmpfs::mount("12m") else {
        eprintln!("SKIPPED a_download_reserves_its_space_before_another_writer_can_take_it: mounting a tmpfs needs root");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = LoopbackServer::start(runtime::handle(), 0, Faults { rate: Some(4 * MIB), ..Faults::new(8 * MIB) }).unwrap();
    let m = Manager::open(dir.path().join("state"), test_config()).unwrap();
    let out = fs.mnt.join("f.bin");
    let id = m.enqueue(Request { connections: Some(1), ..Request::file(server.url(), &out) }).unwrap();
    until(30, "the download to start", || m.status(id.as_str()).unwrap().bytes > 0);
    let greedy = std::fs::write(fs.mnt.join("greedy"), vec![2u8; 8 * MIB as usize]);
    let err = greedy.expect_err("the space is the download's");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    std::fs::remove_file(fs.mnt.join("greedy")).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    m.shutdown_blocking();
}
