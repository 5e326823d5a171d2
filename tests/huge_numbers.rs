//! Lengths at the edges of u64: totals beyond the size of the disk, beyond 2^53, near u64::MAX,
//! and a 5 GiB resource whose segments sit beyond 4 GiB. Nothing is preallocated; a resource the
//! file system could never hold fails with `disk_full` before a byte is fetched (and, having
//! nothing resumable, leaves no part file). One that fits the file system but not its free space
//! fails when the space runs out and keeps its partial (tests/disk_full.rs).

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy, TaskState};
use ferry::loopback::{content, Faults};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, Instant};
use support::raw::{head, Part, RawServer};
use support::*;

const GIB: u64 = 1 << 30;

fn free_space(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain data filled by the call; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return u64::MAX;
    }
    #[allow(clippy::unnecessary_cast)]
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

fn quick() -> Config {
    Config {
        idle_timeout: Duration::from_millis(500),
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) },
        ..test_config()
    }
}

/// Downloads and expects `disk_full` within a few seconds, no destination and no part file.
fn fails_for_lack_of_room(m: &ferry::engine::Manager, out: &std::path::Path, req: Request) {
    let started = Instant::now();
    let id = m.enqueue(req).unwrap();
    let info = wait(m, id.as_str(), 20);
    assert_eq!(info.state, TaskState::Failed, "{info:?}");
    assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::DiskFull), "{:?}", info.error);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(!out.exists() && !part_of(out).exists());
}

#[test]
fn a_total_larger_than_the_disk_fails_at_once() {
    for (total, ranges) in [(1u64 << 50, true), (1 << 50, false), ((1 << 53) + 1, true), (i64::MAX as u64, true)] {
        let mut f = Faults::new(total);
        f.ranges = ranges;
        f.rate = Some(1_000_000);
        let w = World::with_config(f, quick());
        fails_for_lack_of_room(&w.manager, &w.out("x"), Request { connections: Some(4), ..w.request("x") });
        assert_eq!(w.server.stats().requests.load(std::sync::atomic::Ordering::SeqCst), 1, "total {total}");
    }
}

#[test]
fn content_lengths_near_u64_max_fail_typed() {
    for cl in [u64::MAX, u64::MAX - 2, (1 << 53) + 1] {
        let s = RawServer::start(move |_| {
            let mut b = head(200, &[("Content-Length", cl.to_string())]);
            b.extend([7u8; 1000]);
            vec![Part::Write(b)]
        });
        let l = Local::with_config(quick());
        let started = Instant::now();
        let info = l.download(Request::file(format!("{}/f", s.base()), l.out("f")));
        assert_eq!(info.state, TaskState::Failed, "{cl}: {info:?}");
        let code = info.error.as_ref().unwrap().code;
        assert!(matches!(code, ErrorCode::DiskFull | ErrorCode::Network), "{cl}: {:?}", info.error);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(!l.out("f").exists() && !part_of(&l.out("f")).exists());
    }
}

/// A 5 GiB resource over 8 connections: the last segments start beyond 4 GiB. The part file must
/// hold the exact bytes at those 64-bit offsets; its blocks are reserved for the whole resource
/// up front (a full disk shows at the start), while its length is only what was written;
/// cancelling removes it.
#[test]
fn segments_beyond_4_gib_land_at_their_offsets_in_a_preallocated_part_file() {
    let total = 5 * GIB;
    let free = free_space(&std::env::temp_dir());
    if free < total + GIB {
        eprintln!("skipped: {free} bytes free, a 5 GiB plan needs more");
        return;
    }
    let mut f = Faults::new(total);
    f.rate = Some(400_000);
    let w = World::new(f);
    let id = w.manager.enqueue(Request { connections: Some(8), ..w.request("big") }).unwrap();
    until(30, "every connection to write", || w.manager.status(id.as_str()).unwrap().bytes >= 8 * 200_000);
    w.manager.pause(id.as_str()).unwrap();
    until(30, "paused", || w.manager.status(id.as_str()).unwrap().state == TaskState::Paused);

    let part = part_of(&w.out("big"));
    let meta = std::fs::metadata(&part).unwrap();
    assert!(meta.len() > 4 * GIB && meta.len() <= total, "part file length {}", meta.len());
    assert!(meta.blocks() * 512 >= total, "{} bytes allocated: the part file's space was not reserved", meta.blocks() * 512);
    let file = std::fs::File::open(&part).unwrap();
    let seg = total / 8;
    for i in 0..8 {
        let at = i * seg;
        let mut got = vec![0u8; 64 * 1024];
        file.read_exact_at(&mut got, at).unwrap();
        let mut want = vec![0u8; got.len()];
        content::fill(1, at, &mut want);
        assert_eq!(got, want, "segment {i} at offset {at}");
    }
    assert!(7 * seg > 4 * GIB);

    w.manager.cancel(id.as_str()).unwrap();
    until(30, "cancelled", || w.manager.status(id.as_str()).unwrap().state == TaskState::Cancelled);
    assert!(!part.exists() && !w.out("big").exists());
}
