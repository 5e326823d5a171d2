//! Containers that move: destinations under a declared root are stored relative to it, so a whole
//! tree (state directory, roots, part files) moved elsewhere resumes from its bytes and reports the
//! new paths; a root an open does not declare leaves its tasks listed and untouched.

mod support;

use ferry::engine::{Config, ErrorCode, Limits, Manager, Request, TaskInfo, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use support::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 4 * MIB;

/// One task running at a time, so that a task enqueued behind another stays queued.
fn config(roots: &[(&str, PathBuf)]) -> Config {
    Config {
        limits: Limits { max_running_tasks: 1, ..test_config().limits },
        roots: roots.iter().map(|(n, p)| (n.to_string(), p.clone())).collect(),
        ..test_config()
    }
}

fn server() -> LoopbackServer {
    let mut f = Faults::new(SIZE);
    f.rate = Some(2_000_000);
    LoopbackServer::start(ferry::engine::runtime::handle(), 0, f).expect("server")
}

fn file(server: &LoopbackServer, id: &str, dest: PathBuf) -> Request {
    Request { task_id: Some(id.into()), connections: Some(2), ..Request::file(server.url(), dest) }
}

/// A tree: `state/`, and the roots `docs/` and `caches/`.
fn tree(at: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (state, docs, caches) = (at.join("state"), at.join("docs"), at.join("caches"));
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::create_dir_all(&caches).unwrap();
    (state, docs, caches)
}

fn shut(m: Manager) {
    m.shutdown_blocking();
    drop(m);
}

fn done(info: &TaskInfo) {
    assert_eq!(info.state, TaskState::Completed, "{info:?}");
}

#[test]
fn a_moved_tree_resumes_from_its_bytes_and_reports_the_new_paths() {
    let base = tempfile::tempdir().unwrap();
    let server = server();
    let old = base.path().join("container-1");
    let (state, docs, caches) = tree(&old);
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let m = Manager::open(&state, config(&[("docs", docs.clone()), ("caches", caches.clone())])).unwrap();

    // Completed, under a root and outside every root.
    done(&wait(&m, m.enqueue(file(&server, "done", docs.join("done.bin"))).unwrap().as_str(), 60));
    done(&wait(&m, m.enqueue(file(&server, "outside", outside.join("outside.bin"))).unwrap().as_str(), 60));
    // Paused mid-download.
    m.enqueue(file(&server, "paused", docs.join("sub/paused.bin"))).unwrap();
    until(30, "the paused one's bytes", || m.status("paused").unwrap().bytes > MIB);
    m.pause("paused").unwrap();
    until(10, "its runner to stop", || m.running_count() == 0);
    // Partly downloaded, then the manager shuts down; and one queued behind it, never started.
    m.enqueue(file(&server, "partial", caches.join("partial.bin"))).unwrap();
    until(30, "the partial one's bytes", || m.status("partial").unwrap().bytes > MIB);
    m.enqueue(file(&server, "queued", docs.join("queued.bin"))).unwrap();
    assert_eq!(m.status("queued").unwrap().state, TaskState::Queued);
    shut(m);
    let paused_bytes = std::fs::metadata(part_of(&docs.join("sub/paused.bin"))).unwrap().len();
    assert!(paused_bytes > MIB, "the paused one kept its part file");
    assert!(part_of(&caches.join("partial.bin")).exists(), "the partial one kept its part file");
    let sent_before = server.stats().body_bytes.load(SeqCst);

    // The whole tree moves (as iOS moves an app's container after an update), by a rename.
    let new = base.path().join("moved").join("container-2");
    std::fs::create_dir_all(new.parent().unwrap()).unwrap();
    std::fs::rename(&old, &new).unwrap();
    assert!(!old.exists());
    let (state, docs, caches) = (new.join("state"), new.join("docs"), new.join("caches"));
    let m = Manager::open(&state, config(&[("docs", docs.clone()), ("caches", caches.clone())])).unwrap();

    let completed = m.status("done").unwrap();
    done(&completed);
    assert_eq!(completed.destination.as_deref(), Some(docs.join("done.bin").as_path()), "a completed task reports its new path");
    assert_eq!(m.status("outside").unwrap().destination.as_deref(), Some(outside.join("outside.bin").as_path()));
    let paused = m.status("paused").unwrap();
    assert_eq!(paused.state, TaskState::Paused);
    assert!(paused.bytes > MIB, "the paused one still knows its bytes: {paused:?}");
    assert_eq!(paused.error, None);
    m.resume("paused").unwrap();
    for (id, dest) in
        [("partial", caches.join("partial.bin")), ("queued", docs.join("queued.bin")), ("paused", docs.join("sub/paused.bin"))]
    {
        let info = wait(&m, id, 60);
        done(&info);
        assert_eq!(info.destination.as_deref(), Some(dest.as_path()), "{id}");
        assert_same(&read(&dest), &server.expected());
        assert!(!part_of(&dest).exists(), "{id}: part file left behind");
    }
    for done_file in [docs.join("done.bin"), outside.join("outside.bin")] {
        assert_same(&read(&done_file), &server.expected());
    }
    // Five files, each fetched about once: the paused and the partial ones went on from their bytes.
    let sent = server.stats().body_bytes.load(SeqCst);
    assert!(sent < 5 * SIZE + MIB, "fetched {sent} bytes for {} (before the move: {sent_before})", 5 * SIZE);
    // Nothing of the old tree came back.
    assert!(!old.exists());
    shut(m);
}

#[test]
fn a_root_that_is_not_declared_leaves_its_tasks_listed_and_untouched() {
    let base = tempfile::tempdir().unwrap();
    let server = server();
    let (state, docs, caches) = tree(base.path());
    let roots = [("docs", docs.clone()), ("caches", caches.clone())];
    let m = Manager::open(&state, config(&roots)).unwrap();
    done(&wait(&m, m.enqueue(file(&server, "done", docs.join("done.bin"))).unwrap().as_str(), 60));
    m.enqueue(file(&server, "paused", docs.join("paused.bin"))).unwrap();
    until(30, "some bytes", || m.status("paused").unwrap().bytes > MIB);
    m.pause("paused").unwrap();
    m.enqueue(file(&server, "queued", docs.join("queued.bin"))).unwrap();
    m.enqueue(file(&server, "cached", caches.join("cached.bin"))).unwrap();
    until(30, "the queued one's bytes", || m.status("queued").unwrap().bytes > 0);
    shut(m);

    // Opened with `caches` only: `docs` is unknown, and nothing of it is read as a path.
    let m = Manager::open(&state, config(&roots[1..])).unwrap();
    let requests = server.stats().requests.load(SeqCst);
    for (id, state, stored) in [
        ("done", TaskState::Completed, "@docs/done.bin"),
        ("paused", TaskState::Paused, "@docs/paused.bin"),
        ("queued", TaskState::Queued, "@docs/queued.bin"),
    ] {
        let info = m.status(id).unwrap();
        assert_eq!(info.state, state, "{id}");
        assert_eq!(info.destination.as_deref(), Some(Path::new(stored)), "{id}: listed with its stored path");
        assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::RootUnknown), "{id}");
        // `wait` does not hang on a task that cannot move here.
        assert_eq!(wait(&m, id, 5).state, state);
    }
    assert_eq!(m.resume("paused").unwrap_err().code(), ErrorCode::RootUnknown);
    assert_eq!(m.pause("queued").unwrap_err().code(), ErrorCode::RootUnknown);
    assert_eq!(m.cancel("queued").unwrap_err().code(), ErrorCode::RootUnknown);
    assert_eq!(m.remove("done", true).unwrap_err().code(), ErrorCode::RootUnknown);
    assert_eq!(m.enqueue(file(&server, "queued", docs.join("queued.bin"))).unwrap_err().code(), ErrorCode::RootUnknown);
    assert_eq!(m.resume_all(), 0);
    // The task under the declared root runs.
    done(&wait(&m, "cached", 60));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(m.running_count(), 0);
    assert!(!m.is_busy());
    let fetched: u64 = server.stats().requests.load(SeqCst) - requests;
    assert!(fetched <= 2 + 1, "only the cached task fetched: {fetched} requests");
    assert_eq!(m.status("queued").unwrap().state, TaskState::Queued);
    // Removing forgets the row; the files stay where they are.
    m.remove("paused", false).unwrap();
    assert_eq!(m.status("paused").unwrap_err().code(), ErrorCode::TaskNotFound);
    assert!(part_of(&docs.join("paused.bin")).exists());
    shut(m);

    // Declared again: the queued task resumes from its bytes, the completed one is where it was.
    let m = Manager::open(&state, config(&roots)).unwrap();
    let info = wait(&m, "queued", 60);
    done(&info);
    assert_eq!(info.destination.as_deref(), Some(docs.join("queued.bin").as_path()));
    assert_same(&read(&docs.join("queued.bin")), &server.expected());
    let completed = m.status("done").unwrap();
    assert_eq!((completed.state, completed.error), (TaskState::Completed, None));
    assert_eq!(completed.destination.as_deref(), Some(docs.join("done.bin").as_path()));
    shut(m);
}

#[test]
fn a_destination_under_a_root_reads_the_same_however_it_was_spelled() {
    let base = tempfile::tempdir().unwrap();
    let server = server();
    let (state, docs, _) = tree(base.path());
    let m = Manager::open(&state, config(&[("docs", docs.clone())])).unwrap();
    let odd = PathBuf::from(format!("{}//./sub//a.bin", docs.display()));
    let id = m.enqueue(file(&server, "a", odd)).unwrap();
    assert_eq!(m.status(id.as_str()).unwrap().destination.as_deref(), Some(docs.join("sub/a.bin").as_path()));
    // The same file, spelled plainly, is the same claim.
    let err = m.enqueue(file(&server, "b", docs.join("sub/a.bin"))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::DestinationBusy);
    done(&wait(&m, "a", 60));
    shut(m);
}

#[test]
fn bad_roots_refuse_to_open() {
    let base = tempfile::tempdir().unwrap();
    let state = base.path().join("state");
    for roots in [
        vec![("docs", base.path().join("missing"))],
        vec![("docs", PathBuf::from("relative"))],
        vec![("no/slash", base.path().to_path_buf())],
        vec![("a", base.path().to_path_buf()), ("a", base.path().join("state"))],
    ] {
        std::fs::create_dir_all(&state).unwrap();
        let err = Manager::open(&state, config(&roots)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidConfig, "{roots:?}");
    }
}
