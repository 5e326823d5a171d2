//! One file named two ways: a destination spelled with `..`, or through a symlink to its
//! directory, is the same destination. A second live task for it is refused with
//! `destination_busy`, so that two downloads never write, name or publish one file.

mod support;

use ferry::engine::{runtime, ErrorCode, Request, TaskState};
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
