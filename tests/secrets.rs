//! A URL's credentials and query string (signed URLs carry secrets there) never appear in error
//! messages, task status, events or logs, whatever goes wrong.
//!
//! This file installs a process-wide tracing subscriber that records every log line of the engine
//! (target `ferry::…`), so it is a test binary of its own. Dependencies' own debug and trace logs
//! (rustls logs host names) are outside the engine's control: an app should not enable them in
//! production.

mod support;

use ferry::engine::{Config, Event, Request, RetryPolicy};
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;
use support::raw::{head, reply, Part, RawServer};
use support::*;

const SECRETS: &[&str] = &["alice7x", "hunter2pw", "s3cr3tTok", "bob9y", "pw2sig"];

/// Every log line of the engine.
static LOG: Mutex<String> = Mutex::new(String::new());

struct Capture;
struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target().starts_with("ferry")
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = String::new();
        span.record(&mut Fields(&mut line));
        LOG.lock().push_str(&line);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = String::new();
        values.record(&mut Fields(&mut line));
        LOG.lock().push_str(&line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut Fields(&mut line));
        line.push('\n');
        LOG.lock().push_str(&line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| tracing::subscriber::set_global_default(Capture).expect("subscriber"));
}

fn quick() -> Config {
    Config {
        idle_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) },
        ..test_config()
    }
}

fn secret_url(base: &str, path: &str) -> String {
    format!("{}{path}?token=s3cr3tTok&x=1", base.replace("http://", "http://alice7x:hunter2pw@"))
}

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} leaks {s}: {text}");
    }
}

/// Runs a failing download and checks its status, its events and the log.
fn check(l: &Local, name: &str, url: String) {
    capture_logs();
    let sub = l.manager.subscribe();
    let info = l.download(Request::file(url, l.out(name)));
    assert_eq!(info.state, ferry::engine::TaskState::Failed, "{name}: {info:?}");
    let e = info.error.clone().unwrap();
    assert_clean(&format!("{name}: error"), &format!("{} {:?}", e.message, e));
    let mut status = format!("{info:?}");
    status = status.replace(&format!("{:?}", info.url), "");
    assert_clean(&format!("{name}: status"), &status);
    let mut events = String::new();
    while let Some(ev) = sub.recv_timeout(Duration::from_millis(100)) {
        let _ = write!(events, "{ev:?}");
        if let Event::State(s) = &ev {
            if let Some(e) = &s.error {
                events.push_str(&e.message);
            }
        }
    }
    assert_clean(&format!("{name}: events"), &events);
    assert_clean(&format!("{name}: log"), &LOG.lock());
}

#[test]
fn secrets_never_leak_whatever_fails() {
    let s = RawServer::start(|req| {
        let to_secret = |p: &str| format!("http://bob9y:pw2sig@{}{p}?sig=pw2sig", req.header("host").unwrap_or(""));
        let redirect = |to: String| reply(302, &[("Location", to), ("Content-Length", "0".into())], b"");
        match req.path() {
            "/404" => reply(404, &[("Content-Length", "0".into())], b""),
            "/500" => reply(500, &[("Content-Length", "0".into())], b""),
            "/loop" => redirect(to_secret("/loop")),
            "/ftp" => redirect("ftp://bob9y:pw2sig@127.0.0.1/x?sig=pw2sig".into()),
            "/hop" => redirect(to_secret("/hop2")),
            "/hop2" => redirect(to_secret("/hop")),
            "/far" => redirect("http://bob9y:pw2sig@127.0.0.1:1/x?sig=pw2sig".into()),
            "/hang" => vec![Part::Hang],
            "/close" => Vec::new(),
            "/short" => {
                let mut b = head(200, &[("Content-Length", "1000".into())]);
                b.extend([1u8; 10]);
                vec![Part::Write(b)]
            }
            "/badhead" => vec![Part::Write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n".to_vec())],
            "/junk" => vec![Part::Write(b"SSH-2.0-OpenSSH_9.0\r\n\r\n".to_vec())],
            _ => reply(410, &[("Content-Length", "0".into())], b""),
        }
    });
    let l = Local::with_config(quick());
    for path in ["/404", "/500", "/loop", "/ftp", "/hop", "/far", "/hang", "/close", "/short", "/badhead", "/junk"] {
        check(&l, &path[1..], secret_url(&s.base(), path));
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    check(&l, "refused", secret_url(&format!("http://127.0.0.1:{closed}"), "/x"));
    check(&l, "tls", secret_url(&s.base().replace("http://", "https://"), "/x"));
    assert!(LOG.lock().contains("retrying"), "the engine's retry log lines were captured");
}

#[test]
fn the_status_shows_the_url_without_its_secrets() {
    let s = RawServer::start(|_| reply(404, &[("Content-Length", "0".into())], b""));
    let l = Local::with_config(quick());
    let info = l.download(Request::file(secret_url(&s.base(), "/a/b.bin"), l.out("f")));
    assert_clean("status url", &info.url);
    assert!(info.url.contains(&format!("127.0.0.1:{}/a/b.bin", s.port())), "{}", info.url);
    for t in l.manager.list() {
        assert_clean("listed url", &t.url);
    }
}
