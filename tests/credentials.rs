//! Credentials that expire: a signed URL that runs out while a download is paused or under way is
//! replaced through the host's credential source (or `update_credentials`), and the download goes
//! on from its bytes, byte-exact. A source that throws, hangs or gives up ends the task with a
//! typed error in bounded time; a new URL that serves another resource restarts cleanly.

mod support;

use ferry::engine::{Config, CredentialSource, Credentials, ErrorCode, RefreshCause, Request, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

/// A source that answers with `answer` and records every call.
struct Source<F> {
    answer: F,
    calls: Mutex<Vec<(String, RefreshCause)>>,
}

impl<F: Fn() -> Result<Option<Credentials>, String> + Send + Sync> CredentialSource for Source<F> {
    fn refresh(&self, task_id: &str, cause: RefreshCause) -> Result<Option<Credentials>, String> {
        self.calls.lock().push((task_id.to_string(), cause));
        (self.answer)()
    }
}

fn source<F: Fn() -> Result<Option<Credentials>, String> + Send + Sync + 'static>(answer: F) -> Arc<Source<F>> {
    Arc::new(Source { answer, calls: Mutex::new(Vec::new()) })
}

fn signed(base: &str, valid_for: Duration) -> String {
    format!("{base}/file?{}", ferry::loopback::signed_query(valid_for))
}

fn new_url(url: String) -> Option<Credentials> {
    Some(Credentials { url: Some(url), headers: None })
}

#[test]
fn a_download_paused_past_its_urls_expiry_resumes_through_the_refresh_byte_exact() {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(8 * MIB) });
    let base = w.server.base();
    let s = source(move || Ok(new_url(signed(&base, Duration::from_secs(300)))));
    w.manager.set_credential_source(Some(s.clone()));
    let expires = Instant::now() + Duration::from_millis(1500);
    let req = Request { connections: Some(2), ..Request::file(w.server.signed_url(Duration::from_millis(1500)), w.out("p.bin")) };
    let id = w.manager.enqueue(req).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes >= 512 * 1024);
    w.manager.pause(&id).unwrap();
    let paused_at = w.manager.status(&id).unwrap().bytes;
    std::thread::sleep(expires.saturating_duration_since(Instant::now()) + Duration::from_millis(300));
    w.server.set(|f| f.rate = None);
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{:?}", st.error);
    assert_same(&read(&w.out("p.bin")), &w.server.expected());
    let calls = s.calls.lock().clone();
    assert!(!calls.is_empty() && calls.iter().all(|(t, c)| *t == id && matches!(c, RefreshCause::Denied(403))), "{calls:?}");
    let sent = w.server.stats().body_bytes.load(Ordering::SeqCst);
    assert!(sent <= 8 * MIB + MIB, "resumed from its {paused_at} bytes, not restarted: {sent} bytes sent for {}", 8 * MIB);
}

#[test]
fn a_task_whose_url_expired_before_it_started_is_refreshed_at_the_probe() {
    let w = World::new(Faults::new(3 * MIB));
    let base = w.server.base();
    let s = source(move || Ok(new_url(signed(&base, Duration::from_secs(300)))));
    w.manager.set_credential_source(Some(s.clone()));
    let st = w.download(Request::file(w.server.signed_url(Duration::ZERO), w.out("e.bin")));
    assert_eq!(st.state, TaskState::Completed, "{:?}", st.error);
    assert_same(&read(&w.out("e.bin")), &w.server.expected());
    assert_eq!(s.calls.lock().len(), 1);
}

#[test]
fn a_refresh_that_throws_fails_the_task_with_a_typed_error_and_no_file() {
    let w = World::new(Faults::new(MIB));
    w.manager.set_credential_source(Some(source(|| Err("token service down".to_string()))));
    let st = w.download(Request::file(w.server.signed_url(Duration::ZERO), w.out("t.bin")));
    assert_eq!(st.state, TaskState::Failed);
    let err = st.error.expect("an error");
    assert_eq!(err.code, ErrorCode::CredentialsRefreshFailed);
    assert!(err.message.contains("token service down"), "{}", err.message);
    assert!(!w.out("t.bin").exists());
}

#[test]
fn a_refresh_that_hangs_fails_the_task_in_bounded_time() {
    let config = Config { refresh_timeout: Duration::from_millis(300), ..test_config() };
    let w = World::with_config(Faults::new(MIB), config);
    w.manager.set_credential_source(Some(source(|| {
        std::thread::sleep(Duration::from_secs(5));
        Ok(None)
    })));
    let started = Instant::now();
    let st = w.download(Request::file(w.server.signed_url(Duration::ZERO), w.out("h.bin")));
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.error.expect("an error").code, ErrorCode::CredentialsRefreshFailed);
    assert!(started.elapsed() < Duration::from_secs(4), "failed after {:?}, not after the callback returned", started.elapsed());
    assert!(!w.out("h.bin").exists());
}

#[test]
fn a_source_that_gives_up_leaves_access_denied_and_update_credentials_then_resume_finishes() {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(4 * MIB) });
    w.manager.set_credential_source(Some(source(|| Ok(None))));
    let req = Request { connections: Some(2), ..Request::file(w.server.signed_url(Duration::from_millis(800)), w.out("g.bin")) };
    let id = w.manager.enqueue(req).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    w.manager.pause(&id).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.error.expect("an error").code, ErrorCode::AccessDenied);
    let fresh = Credentials { url: Some(w.server.signed_url(Duration::from_secs(300))), headers: None };
    w.manager.update_credentials(&id, fresh).unwrap();
    w.server.set(|f| f.rate = None);
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{:?}", st.error);
    assert_same(&read(&w.out("g.bin")), &w.server.expected());
    let done = Credentials { url: Some(w.server.url()), headers: None };
    assert_eq!(w.manager.update_credentials(&id, done).unwrap_err().code(), ErrorCode::InvalidState);
}

#[test]
fn credentials_the_server_keeps_refusing_end_the_task_after_a_few_refreshes() {
    let w = World::new(Faults::new(MIB));
    let base = w.server.base();
    let s = source(move || Ok(new_url(signed(&base, Duration::ZERO))));
    w.manager.set_credential_source(Some(s.clone()));
    let st = w.download(Request::file(w.server.signed_url(Duration::ZERO), w.out("r.bin")));
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.error.expect("an error").code, ErrorCode::AccessDenied);
    assert_eq!(s.calls.lock().len(), 3, "a bounded number of refreshes");
}

#[test]
fn a_new_url_that_serves_another_resource_restarts_cleanly_never_stitches() {
    let w = World::new(Faults { rate: Some(2 * MIB), ..Faults::new(4 * MIB) });
    let other = LoopbackServer::start(ferry::engine::runtime::handle(), 0, Faults { seed: 77, ..Faults::new(4 * MIB) }).unwrap();
    let elsewhere = other.base();
    w.manager.set_credential_source(Some(source(move || Ok(new_url(signed(&elsewhere, Duration::from_secs(300)))))));
    let req = Request { connections: Some(2), ..Request::file(w.server.signed_url(Duration::from_millis(800)), w.out("c.bin")) };
    let id = w.manager.enqueue(req).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    w.manager.pause(&id).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{:?}", st.error);
    assert_ne!(w.server.expected(), other.expected());
    assert_same(&read(&w.out("c.bin")), &other.expected());
}

#[test]
fn with_refresh_before_resume_the_source_is_asked_before_a_resumed_run() {
    let config = Config { refresh_before_resume: true, ..test_config() };
    let w = World::with_config(Faults { rate: Some(2 * MIB), ..Faults::new(4 * MIB) }, config);
    let base = w.server.base();
    let s = source(move || Ok(new_url(signed(&base, Duration::from_secs(300)))));
    w.manager.set_credential_source(Some(s.clone()));
    let req = Request::file(w.server.signed_url(Duration::from_millis(800)), w.out("b.bin"));
    let id = w.manager.enqueue(req).unwrap().to_string();
    until(30, "some bytes", || w.manager.status(&id).unwrap().bytes > 0);
    assert!(s.calls.lock().is_empty(), "a first run is not a resume");
    w.manager.pause(&id).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    w.server.set(|f| f.rate = None);
    w.manager.resume(&id).unwrap();
    let st = wait(&w.manager, &id, 60);
    assert_eq!(st.state, TaskState::Completed, "{:?}", st.error);
    assert_same(&read(&w.out("b.bin")), &w.server.expected());
    assert_eq!(s.calls.lock().clone(), vec![(id.clone(), RefreshCause::Resuming)], "asked before the resume, so never denied");
}

#[test]
fn credentials_given_in_another_process_reach_the_process_that_runs_the_task() {
    // The URL is valid for a second; the server cuts the first answer after 3 MiB (1.5 s at its
    // rate), so the URL has expired by the retry.
    let server = LoopbackServer::start(
        ferry::engine::runtime::handle(),
        0,
        Faults { rate: Some(2 * MIB), drop_after: Some(3 * MIB), drop_requests: 1, ..Faults::new(6 * MIB) },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("x.bin");
    let mut owner = KillOnDrop(
        support::procs::ferry(&state)
            .args(["get", "--quiet", "-x", "1", "--id", "x", &server.signed_url(Duration::from_secs(1)), "-o"])
            .arg(&out)
            .spawn()
            .unwrap(),
    );
    let m = ferry::engine::Manager::open(&state, Config { resume_on_open: false, ..test_config() }).unwrap();
    until(20, "the other process's task to show here", || m.status("x").is_ok());
    // No credential source in the process that runs it: only the table can bring it fresh ones.
    let fresh = Credentials { url: Some(server.signed_url(Duration::from_secs(300))), headers: None };
    m.update_credentials("x", fresh).unwrap();
    assert!(!m.runs_here("x"));
    assert!(owner.wait(60).success(), "the download ended without its bytes");
    assert_same(&read(&out), &server.expected());
    assert!(server.stats().requests.load(Ordering::SeqCst) >= 2, "the first answer was cut: a second request went out");
    m.shutdown_blocking();
}
