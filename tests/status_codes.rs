//! Status codes a download cannot use: each is a typed failure with its HTTP status, retried only
//! when retrying can help and then within the retry budget, never a hang or a destination file.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy};
use std::time::{Duration, Instant};
use support::raw::{reply, RawServer};
use support::*;

fn quick() -> Config {
    Config {
        retry: RetryPolicy { budget: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(100) },
        ..test_config()
    }
}

/// A server answering every request with `status` (and `extra` headers).
fn always(status: u16, extra: &'static [(&'static str, &'static str)]) -> RawServer {
    RawServer::start(move |_| {
        let mut h: Vec<(&str, String)> = extra.iter().map(|(n, v)| (*n, v.to_string())).collect();
        h.push(("Content-Length", "4".into()));
        reply(status, &h, if status == 204 || status == 304 { b"" } else { b"body" })
    })
}

fn fails_once(status: u16, code: ErrorCode) {
    let s = always(status, &[]);
    let l = Local::with_config(quick());
    let info = l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), code);
    assert_eq!(info.error.unwrap().http_status, Some(status));
    assert_eq!(s.count(), 1, "HTTP {status} must not be retried");
}

#[test]
fn no_content_is_not_a_download() {
    fails_once(204, ErrorCode::HttpClientError);
}

#[test]
fn not_modified_without_a_conditional_request_is_not_a_download() {
    fails_once(304, ErrorCode::HttpClientError);
}

#[test]
fn unauthorized_and_forbidden_are_fatal_without_retries() {
    fails_once(401, ErrorCode::AccessDenied);
    fails_once(403, ErrorCode::AccessDenied);
}

#[test]
fn other_client_errors_are_fatal_without_retries() {
    fails_once(400, ErrorCode::HttpClientError);
    fails_once(405, ErrorCode::HttpClientError);
    fails_once(451, ErrorCode::HttpClientError);
}

#[test]
fn a_server_error_forever_is_bounded_by_the_retry_budget() {
    for status in [500, 502, 503] {
        let s = always(status, &[]);
        let l = Local::with_config(quick());
        let started = Instant::now();
        let info = l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), ErrorCode::ServerError);
        assert_eq!(info.error.unwrap().http_status, Some(status));
        assert_eq!(s.count(), 4, "one attempt and a budget of 3 retries");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn a_retry_after_beyond_the_ceiling_fails_at_once() {
    let s = always(503, &[("Retry-After", "86400")]);
    let l = Local::with_config(quick());
    let started = Instant::now();
    l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), ErrorCode::ServerError);
    assert_eq!(s.count(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_unknown_informational_or_success_status_is_typed() {
    for status in [202u16, 299] {
        let s = always(status, &[]);
        let l = Local::with_config(quick());
        let info = l.download(Request::file(format!("{}/f", s.base()), l.out("f")));
        assert_eq!(info.state, ferry::engine::TaskState::Failed, "HTTP {status}: {info:?}");
        assert!(!l.out("f").exists());
    }
}
