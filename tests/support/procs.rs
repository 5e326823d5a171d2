//! Real processes on one state directory: the `ferry` binary, and this test binary run again as a
//! small program (a "helper") that opens a manager, enqueues what a plan file says and reports
//! what happened in a result file. A test binary that uses helpers has a test named `helper` that
//! calls [`helper_main`]; run without `FERRY_HELPER`, it does nothing.
//!
//! Every child is a [`KillOnDrop`]: killed and reaped however the test ends.

use super::*;
use ferry::engine::{runtime, Config, Limits, Manager, Request, TaskState};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `ferry --state-dir <state>`, stdin closed.
pub fn ferry(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--state-dir").arg(state).stdin(Stdio::null());
    c
}

/// `ferry list --json`, parsed.
pub fn list_json(state: &Path) -> Vec<Value> {
    let out = ferry(state).args(["list", "--json"]).output().expect("ferry list runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The task `id` in a `ferry list --json`.
pub fn listed(state: &Path, id: &str) -> Option<Value> {
    list_json(state).into_iter().find(|t| t["id"] == id)
}

/// Kills a child with SIGKILL and reaps it.
pub fn sigkill(child: &mut KillOnDrop) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGKILL);
    child.wait(10);
}

/// What a helper is asked to do.
pub struct Helper {
    pub state: PathBuf,
    /// Requests to enqueue (id, URL, destination), in one batch.
    pub plan: Vec<(String, String, PathBuf)>,
    /// Where the helper writes its results (and `<out>.ready` once its batch is enqueued).
    pub out: PathBuf,
    /// A file whose appearance starts the enqueue (so that several helpers enqueue at once).
    pub go: Option<PathBuf>,
    pub resume_on_open: bool,
    pub max_connections_per_host: u32,
    /// Connections per task (`None`: automatic).
    pub connections: Option<u32>,
    /// Stay open until every task in the table has settled (not only this helper's), and the table
    /// holds at least this many tasks.
    pub stay: Option<usize>,
    pub env: Vec<(String, String)>,
}

impl Helper {
    pub fn new(state: &Path, out: PathBuf) -> Helper {
        Helper {
            state: state.to_path_buf(),
            plan: Vec::new(),
            out,
            go: None,
            resume_on_open: false,
            max_connections_per_host: 16,
            connections: None,
            stay: None,
            env: Vec::new(),
        }
    }

    /// Starts the helper process.
    pub fn spawn(&self) -> KillOnDrop {
        let plan: Vec<Value> = self.plan.iter().map(|(id, url, dest)| json!({"id": id, "url": url, "dest": dest})).collect();
        let spec = json!({
            "state": self.state, "plan": plan, "out": self.out, "go": self.go, "resume_on_open": self.resume_on_open,
            "max_connections_per_host": self.max_connections_per_host, "connections": self.connections, "stay": self.stay,
        });
        let spec_file = self.out.with_extension("spec.json");
        std::fs::write(&spec_file, spec.to_string()).unwrap();
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["helper", "--exact", "--nocapture", "--test-threads", "1"])
            .env("FERRY_HELPER", &spec_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        KillOnDrop(c.spawn().expect("the helper starts"))
    }

    /// Waits (bounded) until the helper has enqueued its batch; returns its results, one JSON
    /// object per request: `{"id", "ok", "code"}`.
    pub fn enqueued(&self, secs: u64) -> Vec<Value> {
        let ready = self.out.with_extension("ready");
        until(secs, "the helper to enqueue", || ready.exists());
        serde_json::from_str(&std::fs::read_to_string(ready).unwrap()).unwrap()
    }
}

/// The helper's side: does what the spec file in `FERRY_HELPER` says. Returns at once without it.
pub fn helper_main() {
    let Ok(spec_file) = std::env::var("FERRY_HELPER") else { return };
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec_file).unwrap()).unwrap();
    let path = |v: &Value| PathBuf::from(v.as_str().unwrap());
    let out = path(&spec["out"]);
    let config = Config {
        resume_on_open: spec["resume_on_open"].as_bool().unwrap(),
        progress_interval: Duration::from_millis(50),
        // Eight helpers on two cores can stall a connection for seconds; one given up on while the
        // server still sends would blur what the server counts.
        idle_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(30),
        limits: Limits { max_connections_per_host: spec["max_connections_per_host"].as_u64().unwrap() as u32, ..Limits::default() },
        ..test_config()
    };
    let manager = Manager::open(path(&spec["state"]), config).expect("the helper opens the state directory");
    if let Some(go) = spec["go"].as_str() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Path::new(go).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let connections = spec["connections"].as_u64().map(|n| n as u32);
    let requests: Vec<Request> = spec["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Request {
            task_id: Some(p["id"].as_str().unwrap().to_string()),
            connections,
            ..Request::file(p["url"].as_str().unwrap(), path(&p["dest"]))
        })
        .collect();
    let results: Vec<Value> = manager
        .enqueue_batch(requests)
        .into_iter()
        .zip(spec["plan"].as_array().unwrap())
        .map(|(r, p)| match r {
            Ok(_) => json!({"id": p["id"], "ok": true}),
            Err(e) => json!({"id": p["id"], "ok": false, "code": e.code().name()}),
        })
        .collect();
    let ready = out.with_extension("ready");
    std::fs::write(out.with_extension("ready.tmp"), Value::Array(results.clone()).to_string()).unwrap();
    std::fs::rename(out.with_extension("ready.tmp"), ready).unwrap();
    // Follow: this helper's tasks, or every task of the directory (bounded by the test's kill).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let tasks = manager.list();
        let mine = |id: &str| results.iter().any(|r| r["id"] == id && r["ok"] == true);
        let stay = spec["stay"].as_u64();
        let open = tasks.iter().filter(|t| t.state.is_active() && (stay.is_some() || mine(t.id.as_str()))).count();
        let seen = stay.is_none_or(|n| tasks.len() as u64 >= n);
        if (open == 0 && seen) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done: Vec<Value> = manager.list().iter().map(|t| json!({"id": t.id.as_str(), "state": t.state.name()})).collect();
    std::fs::write(&out, Value::Array(done).to_string()).unwrap();
    let m = manager.clone();
    runtime::handle().block_on(async move { m.shutdown().await });
}

/// Waits (bounded) for the helper's final report: `{"id", "state"}` per task it saw.
pub fn finished(out: &Path, secs: u64) -> Vec<Value> {
    until(secs, "the helper to finish", || out.exists());
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Whether a task list (as [`finished`] reports it) has `id` in `state`.
pub fn has_state(tasks: &[Value], id: &str, state: TaskState) -> bool {
    tasks.iter().any(|t| t["id"] == id && t["state"] == state.name())
}
