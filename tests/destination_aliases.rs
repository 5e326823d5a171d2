//! One file named two ways: a destination spelled with `..`, or through a symlink to its
//! directory, is the same destination. A second live task for it is refused with
//! `destination_busy`, so that two downloads never write, name or publish one file. A manager of
//! another state directory, which no claim reaches, may replace the part file when asked to
//! overwrite; the download whose part file it was then fails typed, and never publishes the other
//! one's bytes as its own.

mod support;

use ferry::engine::{runtime, ErrorCode, Manager, Request, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use support::*;

fn server(seed: u64) -> LoopbackServer {
    let mut f = Faults::new(2 << 20);
    f.seed = seed;
    f.rate = Some(2_000_000);
    LoopbackServer::start(runtime::handle(), 0, f).unwrap()
}

#[test]
fn a_destination_spelled_through_dot_dot_or_a_symlinked_directory_is_busy() {
    let (a, b) = (server(1), server(2));
    let l = Local::new();
    let dir = l.dir.path().join("out");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&dir, l.dir.path().join("link")).unwrap();
    let dest = dir.join("f.bin");
    let first = l.manager.enqueue(Request { connections: Some(2), ..Request::file(a.url(), &dest) }).unwrap();
    for alias in [dir.join("sub/../f.bin"), l.dir.path().join("link/f.bin")] {
        let got = l.manager.enqueue(Request { connections: Some(2), ..Request::file(b.url(), &alias) });
        assert_eq!(got.as_ref().err().map(|e| e.code()), Some(ErrorCode::DestinationBusy), "{}: {got:?}", alias.display());
    }
    let info = wait(&l.manager, first.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&dest), &a.expected());
}

#[test]
fn a_part_file_replaced_by_another_managers_download_is_never_published_as_this_ones() {
    let (a, b) = (server(1), server(2));
    let l = Local::new();
    let other = Manager::open(l.dir.path().join("other-state"), test_config()).unwrap();
    let dest = l.out("f.bin");
    let first = l.manager.enqueue(Request { connections: Some(2), ..Request::file(a.url(), &dest) }).unwrap();
    until(10, "the first download's part file", || part_of(&dest).exists());
    let second = other.enqueue(Request { connections: Some(2), overwrite: true, ..Request::file(b.url(), &dest) }).unwrap();
    let (one, two) = (wait(&l.manager, first.as_str(), 60), wait(&other, second.as_str(), 60));
    let got = read(&dest);
    for (info, want) in [(&one, a.expected()), (&two, b.expected())] {
        if info.state != TaskState::Completed {
            assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::StorageIo), "{info:?}");
        }
        assert!(info.state == TaskState::Completed || got != want, "{} failed but its bytes are the file", info.id);
    }
    assert!(one.state == TaskState::Completed || two.state == TaskState::Completed, "{one:?} {two:?}");
    if two.state != TaskState::Completed {
        assert_same(&got, &a.expected());
    }
}
