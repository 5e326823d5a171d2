//! Bad input at the engine's front door: odd task ids, destinations that are not plain files in a
//! writable directory, URLs the engine cannot or must not fetch, headers that would corrupt a
//! request, impossible connection counts and outputs. Each gets a typed error with a stable code at
//! enqueue (before anything touches the disk or the network), or downloads correctly.

mod support;

use ferry::engine::{ChunkSink, ErrorCode, Request, TaskState};
use ferry::loopback::Faults;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use support::*;

const MIB: u64 = 1 << 20;

fn enqueue_code(w: &World, req: Request) -> ErrorCode {
    match w.manager.enqueue(req) {
        Ok(id) => panic!("accepted as {id}: {:?}", w.manager.status(id.as_str())),
        Err(e) => {
            assert!(!e.message().is_empty());
            e.code()
        }
    }
}

/// Nothing but the state directory and what the test made itself is left in the test directory.
fn nothing_written_besides(w: &World, keep: &[&str]) {
    for entry in std::fs::read_dir(w.dir.path()).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(name == "state" || keep.contains(&name.as_ref()), "unexpected file {name}");
    }
}

#[test]
fn task_ids_empty_huge_unicode_and_with_slashes() {
    let w = World::new(Faults::new(64 * 1024));
    assert_eq!(enqueue_code(&w, Request { task_id: Some(String::new()), ..w.request("a") }), ErrorCode::InvalidTaskId);
    assert_eq!(enqueue_code(&w, Request { task_id: Some("x".repeat(10_000)), ..w.request("a") }), ErrorCode::InvalidTaskId);
    assert_eq!(enqueue_code(&w, Request { task_id: Some("tab\there".into()), ..w.request("a") }), ErrorCode::InvalidTaskId);
    assert_eq!(enqueue_code(&w, Request { task_id: Some("nul\0".into()), ..w.request("a") }), ErrorCode::InvalidTaskId);
    // Ids are names in a table, never paths: slashes and dots are just characters.
    for (i, id) in ["ダウンロード/映画 #1", "../../etc/passwd", "a/b/c", "🚀", &"é".repeat(100)].into_iter().enumerate() {
        let name = format!("ok{i}");
        let info = w.download(Request { task_id: Some(id.to_string()), ..w.request(&name) });
        assert_eq!(info.state, TaskState::Completed, "{id}: {:?}", info.error);
        assert_eq!(info.id.as_str(), id);
        assert_same(&read(&w.out(&name)), &w.server.expected());
    }
    // 200 bytes is the limit, whatever the characters.
    assert_eq!(enqueue_code(&w, Request { task_id: Some("é".repeat(101)), ..w.request("b") }), ErrorCode::InvalidTaskId);
    w.manager.shutdown_blocking();
    let listed = ferry::engine::Manager::list_read_only(w.dir.path().join("state")).unwrap();
    assert!(listed.iter().any(|t| t.id.as_str() == "../../etc/passwd"), "ids survive the table unchanged");
}

#[test]
fn destinations_that_are_not_plain_new_files() {
    let w = World::new(Faults::new(64 * 1024));
    let dir = w.dir.path();
    // A directory.
    std::fs::create_dir(dir.join("sub")).unwrap();
    assert_eq!(enqueue_code(&w, w.request("sub")), ErrorCode::DestinationNotWritable);
    // Inside a directory that does not exist.
    assert_eq!(enqueue_code(&w, Request::file(w.server.url(), dir.join("nope/f"))), ErrorCode::DestinationDirMissing);
    // Inside a "directory" that is a file.
    std::fs::write(dir.join("plain"), b"x").unwrap();
    assert_eq!(enqueue_code(&w, Request::file(w.server.url(), dir.join("plain/f"))), ErrorCode::DestinationDirMissing);
    // A NUL byte in the file name.
    let nul = PathBuf::from(std::ffi::OsStr::from_bytes(&[dir.as_os_str().as_bytes(), b"/a\0b"].concat()));
    assert_eq!(enqueue_code(&w, Request::file(w.server.url(), nul)), ErrorCode::DestinationNotWritable);
    // A file name longer than the filesystem allows, and one whose `.part` companion would be.
    assert_eq!(enqueue_code(&w, w.request(&"n".repeat(256))), ErrorCode::DestinationNotWritable);
    assert_eq!(enqueue_code(&w, w.request(&"n".repeat(253))), ErrorCode::DestinationNotWritable);
    let ok = "n".repeat(250);
    let info = w.download(w.request(&ok));
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    // A symlink to a file elsewhere: it exists, and with overwrite only the link is replaced.
    std::fs::write(dir.join("target"), b"precious").unwrap();
    std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
    assert_eq!(enqueue_code(&w, w.request("link")), ErrorCode::DestinationExists);
    std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling")).unwrap();
    assert_eq!(enqueue_code(&w, w.request("dangling")), ErrorCode::DestinationExists);
    let info = w.download(Request { overwrite: true, ..w.request("link") });
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_eq!(std::fs::read(dir.join("target")).unwrap(), b"precious", "the link's target was written through");
    assert!(!std::fs::symlink_metadata(dir.join("link")).unwrap().file_type().is_symlink());
    // Relative paths and paths ending in a slash.
    assert_eq!(enqueue_code(&w, Request::file(w.server.url(), "rel/f")), ErrorCode::RelativeDestination);
    assert_eq!(enqueue_code(&w, Request::file(w.server.url(), format!("{}/", dir.join("x").display()))), ErrorCode::DestinationNotWritable);
    nothing_written_besides(&w, &["sub", "plain", &ok, "target", "link", "dangling"]);
}

#[test]
fn a_destination_never_collides_with_a_part_file() {
    let mut f = Faults::new(4 * MIB);
    f.rate = Some(1_000_000);
    let w = World::new(f);
    // Task a writes a.part; nobody may take a.part as their destination while a lives...
    let a = w.manager.enqueue(w.request("a")).unwrap();
    // (Busy as the part file of a live task, or existing once its runner created it.)
    let code = enqueue_code(&w, w.request("a.part"));
    assert!(matches!(code, ErrorCode::DestinationBusy | ErrorCode::DestinationExists), "{code:?}");
    // ...and nobody may take `x` when `x.part` is another task's destination.
    let b = w.manager.enqueue(w.request("b.part")).unwrap();
    assert_eq!(enqueue_code(&w, w.request("b")), ErrorCode::DestinationBusy);
    // Within one batch too.
    let r = w.manager.enqueue_batch(vec![w.request("c"), w.request("c.part")]);
    assert!(r[0].is_ok());
    assert_eq!(r[1].as_ref().unwrap_err().code(), ErrorCode::DestinationBusy);
    w.manager.cancel(r[0].as_ref().unwrap().as_str()).unwrap();
    // A `.part` file the engine did not make is somebody's file: never truncated.
    std::fs::write(w.out("d.part"), b"a browser's partial download").unwrap();
    assert_eq!(enqueue_code(&w, w.request("d")), ErrorCode::DestinationExists);
    assert_eq!(std::fs::read(w.out("d.part")).unwrap(), b"a browser's partial download");
    for id in [&a, &b] {
        assert_eq!(wait(&w.manager, id.as_str(), 60).state, TaskState::Completed);
    }
    assert_same(&read(&w.out("a")), &w.server.expected());
    assert_same(&read(&w.out("b.part")), &w.server.expected());
}

#[test]
fn urls_the_engine_cannot_or_must_not_fetch() {
    let w = World::new(Faults::new(64 * 1024));
    let port = w.server.addr().port();
    let code = |url: &str| enqueue_code(&w, Request::file(url, w.out("u")));
    assert_eq!(code("file:///etc/passwd"), ErrorCode::UnsupportedScheme);
    assert_eq!(code("data:text/plain,hello"), ErrorCode::UnsupportedScheme);
    assert_eq!(code("ftp://127.0.0.1/x"), ErrorCode::UnsupportedScheme);
    assert_eq!(code("http://127.0.0.1:65536/file"), ErrorCode::InvalidUrl);
    assert_eq!(code("http://127.0.0.1:0/file"), ErrorCode::InvalidUrl);
    assert_eq!(code("http://exa mple.com/file"), ErrorCode::InvalidUrl);
    assert_eq!(code(""), ErrorCode::InvalidUrl);
    // Spaces in the path are percent-encoded; the loopback server has no such file: a typed 404.
    let info = w.download(Request::file(format!("http://127.0.0.1:{port}/my file.bin"), w.out("space")));
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::NotFound);
    assert!(!w.out("space").exists() && !part_of(&w.out("space")).exists());
    // An internationalised host name that maps to a plain one (full-width letters).
    let info = w.download(Request::file(format!("http://ｌｏｃａｌｈｏｓｔ:{port}/file"), w.out("idn")));
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&w.out("idn")), &w.server.expected());
    // An IPv6 literal nobody listens on: a typed, bounded connect failure.
    let info = w.download(Request::file("http://[::1]:9/file", w.out("v6")));
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::ConnectFailed);
    assert!(!w.out("v6").exists() && !part_of(&w.out("v6")).exists());
}

#[test]
fn headers_that_would_corrupt_the_request() {
    let w = World::new(Faults::new(64 * 1024));
    let with = |name: &str, value: &str| Request { headers: vec![(name.to_string(), value.to_string())], ..w.request("h") };
    for (n, v) in [
        ("X-A", "a\r\nEvil: 1"),
        ("X-A", "a\nb"),
        ("X-A", "a\0b"),
        ("X-A", "bell\x07"),
        ("X-A", "del\x7f"),
        ("X A", "a"),
        ("X-A\r\n", "a"),
        ("", "a"),
        ("Range", "bytes=0-"),
        ("if-range", "x"),
    ] {
        assert_eq!(enqueue_code(&w, with(n, v)), ErrorCode::InvalidHeader, "{n:?}: {v:?}");
    }
    // A megabyte of header would be refused by any server and bloat the task table.
    assert_eq!(enqueue_code(&w, with("X-Big", &"v".repeat(MIB as usize))), ErrorCode::InvalidHeader);
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("X-H{i}"), "v".repeat(1000))).collect();
    assert_eq!(enqueue_code(&w, Request { headers: many, ..w.request("h") }), ErrorCode::InvalidHeader);
    // Tabs, non-ASCII text and a few kilobytes are fine.
    let info = w.download(Request {
        headers: vec![("X-Ok".into(), "a\tb".into()), ("X-Name".into(), "Zoë".into()), ("Cookie".into(), "c".repeat(4000))],
        ..w.request("h")
    });
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
}

struct Chunks;
impl ChunkSink for Chunks {
    fn on_chunk(&self, _offset: u64, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn connection_counts_and_outputs() {
    let w = World::new(Faults::new(MIB));
    for n in [0, 65, 10_000, u32::MAX] {
        assert_eq!(enqueue_code(&w, Request { connections: Some(n), ..w.request("c") }), ErrorCode::InvalidConnections, "{n}");
    }
    let stream: Arc<dyn ChunkSink> = Arc::new(Chunks);
    assert_eq!(enqueue_code(&w, Request { stream: Some(stream.clone()), ..w.request("c") }), ErrorCode::ConflictingOutputs);
    assert_eq!(
        enqueue_code(&w, Request { url: w.server.url(), stream: Some(stream), memory_limit: Some(10), ..Default::default() }),
        ErrorCode::ConflictingOutputs
    );
    assert_eq!(enqueue_code(&w, Request { url: w.server.url(), ..Default::default() }), ErrorCode::MissingOutput);
    // Memory output with a limit of zero: a typed error for a body, an empty result for an empty one.
    let m = w.manager.clone();
    let url = w.server.url();
    let err = ferry::engine::runtime::handle().block_on(async move { m.fetch_bytes(&url, vec![], 0).await }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MemoryLimitExceeded);
    let empty = World::new(Faults::new(0));
    let m = empty.manager.clone();
    let url = empty.server.url();
    let got = ferry::engine::runtime::handle().block_on(async move { m.fetch_bytes(&url, vec![], 0).await }).unwrap();
    assert!(got.is_empty());
    nothing_written_besides(&w, &[]);
}

/// A batch looks its names up in the directories it checked once (a handle on each of the first
/// 64, full paths beyond): the answers must be the same either way.
#[test]
fn a_batch_over_many_directories_refuses_the_same_destinations_as_single_requests() {
    let w = World::new(Faults::new(16 * 1024));
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for d in 0..80 {
        let dir = w.out(&format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("taken"), b"x").unwrap();
        std::fs::write(dir.join("theirs.part"), b"a browser's partial").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        for (name, code) in [
            ("new", None),
            ("taken", Some(ErrorCode::DestinationExists)),
            ("theirs", Some(ErrorCode::DestinationExists)),
            ("sub", Some(ErrorCode::DestinationNotWritable)),
        ] {
            requests.push(Request::file(w.server.url(), dir.join(name)));
            expected.push(code);
        }
    }
    let results = w.manager.enqueue_batch(requests);
    for (i, (r, want)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(r.as_ref().err().map(|e| e.code()), *want, "request {i} in directory d{:02}", i / 4);
    }
    for r in results.iter().flatten() {
        assert_eq!(wait(&w.manager, r.as_str(), 60).state, TaskState::Completed);
    }
    for d in 0..80 {
        assert_eq!(std::fs::read(w.out(&format!("d{d:02}/theirs.part"))).unwrap(), b"a browser's partial");
    }
}

#[test]
fn the_engines_own_files_are_never_a_destination() {
    // The table, its WAL, the lock files: a download must never replace them with its bytes,
    // however the path is spelled, and even with overwrite.
    let w = World::new(Faults::new(100_000));
    let state = w.dir.path().join("state");
    std::fs::create_dir(w.out("sub")).unwrap();
    std::os::unix::fs::symlink(&state, w.out("state-link")).unwrap();
    let id = w.manager.enqueue(w.request("kept.bin")).unwrap();
    for dest in
        [state.join("tasks.sqlite3"), state.join("owners"), state.join("new.bin"), w.out("sub/../state/lock"), w.out("state-link/hosts")]
    {
        let req = Request { overwrite: true, ..Request::file(w.server.url(), &dest) };
        assert_eq!(enqueue_code(&w, req), ErrorCode::DestinationNotWritable, "{}", dest.display());
    }
    assert!(!state.join("new.bin").exists());
    assert_eq!(wait(&w.manager, id.as_str(), 30).state, TaskState::Completed);
    w.manager.shutdown_blocking();
    let reopened = ferry::engine::Manager::open(&state, test_config()).unwrap();
    assert_eq!(reopened.status(id.as_str()).unwrap().state, TaskState::Completed, "the table still holds its tasks");
}
