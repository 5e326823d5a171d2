//! Helpers shared by the integration tests: a loopback server per test, a manager on a temp
//! directory with test-sized timeouts, and bounded waits.
#![allow(dead_code)]

pub mod os_fetch;
pub mod procs;
pub mod proxy;
pub mod raw;
pub mod tls;

use ferry::engine::{runtime, Config, Limits, Manager, Request, RetryPolicy, TaskInfo};
use ferry::loopback::{Faults, LoopbackServer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A test's world: a server, a state directory, an output directory.
pub struct World {
    pub server: LoopbackServer,
    pub dir: tempfile::TempDir,
    pub manager: Manager,
}

/// Timeouts and retry delays small enough for tests.
pub fn test_config() -> Config {
    Config {
        idle_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        progress_interval: Duration::from_millis(50),
        retry: RetryPolicy { budget: 8, base_delay: Duration::from_millis(20), max_delay: Duration::from_secs(3) },
        min_split_bytes: 64 * 1024,
        sync_interval: Duration::from_millis(200),
        limits: Limits { max_running_tasks: 4, max_connections_per_host: 16, max_connections_per_task: 16 },
        ..Config::default()
    }
}

impl World {
    pub fn new(faults: Faults) -> World {
        Self::with_config(faults, test_config())
    }

    pub fn with_config(faults: Faults, config: Config) -> World {
        let server = LoopbackServer::start(runtime::handle(), 0, faults).expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = Manager::open(dir.path().join("state"), config).expect("manager");
        World { server, dir, manager }
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn request(&self, name: &str) -> Request {
        Request::file(self.server.url(), self.out(name))
    }

    /// Enqueues, waits for the end (bounded), returns the final status.
    pub fn download(&self, req: Request) -> TaskInfo {
        let id = self.manager.enqueue(req).expect("enqueue");
        wait(&self.manager, id.as_str(), 120)
    }
}

/// Waits until the task settles, at most `secs` seconds.
pub fn wait(m: &Manager, id: &str, secs: u64) -> TaskInfo {
    let m2 = m.clone();
    let id2 = id.to_string();
    runtime::handle()
        .block_on(async move { tokio::time::timeout(Duration::from_secs(secs), m2.wait(&id2)).await })
        .unwrap_or_else(|_| panic!("task {id} did not settle within {secs}s: {:?}", m.status(id)))
        .expect("wait")
}

/// Polls `cond` every 10 ms for at most `secs` seconds.
pub fn until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

pub fn part_of(p: &Path) -> PathBuf {
    ferry::engine::part_path(p)
}

/// Asserts that two byte strings are equal without printing megabytes on failure.
pub fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("first difference at byte {i} of {}", want.len());
    }
}

/// A manager on a temporary directory, for tests that bring their own servers.
pub struct Local {
    pub dir: tempfile::TempDir,
    pub manager: Manager,
}

impl Local {
    pub fn new() -> Local {
        Self::with_config(test_config())
    }

    pub fn with_config(config: Config) -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = Manager::open(dir.path().join("state"), config).expect("manager");
        Local { dir, manager }
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Enqueues, waits for the end (bounded), returns the final status.
    pub fn download(&self, req: Request) -> TaskInfo {
        let id = self.manager.enqueue(req).expect("enqueue");
        wait(&self.manager, id.as_str(), 120)
    }

    /// Downloads `url` to `name` and asserts the file holds exactly `want`, with no part file left.
    pub fn completes(&self, name: &str, req: Request, want: &[u8]) -> TaskInfo {
        let info = self.download(req);
        assert_eq!(info.state, ferry::engine::TaskState::Completed, "{:?}", info.error);
        assert_same(&read(&self.out(name)), want);
        assert!(!part_of(&self.out(name)).exists(), "part file left behind");
        info
    }

    /// Downloads and asserts a typed failure with `code`, no destination and no part file.
    pub fn fails(&self, name: &str, req: Request, code: ferry::engine::ErrorCode) -> TaskInfo {
        let info = self.download(req);
        assert_eq!(info.state, ferry::engine::TaskState::Failed, "{info:?}");
        assert_eq!(info.error.as_ref().map(|e| e.code), Some(code), "{:?}", info.error);
        assert!(!self.out(name).exists(), "a destination file appeared");
        assert!(!part_of(&self.out(name)).exists(), "a part file with nothing resumable was left");
        info
    }
}

/// A loopback server for `size` bytes at 1 MB/s: slow enough that a `ferry` child process is
/// still downloading when a test inspects, interrupts or kills it.
pub fn slow_server(size: u64) -> LoopbackServer {
    let mut f = Faults::new(size);
    f.rate = Some(1_000_000);
    LoopbackServer::start(runtime::handle(), 0, f).unwrap()
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);
impl KillOnDrop {
    /// Waits up to `secs` for the child to exit.
    pub fn wait(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
