//! Caller-supplied headers. The rule: headers the engine or HTTP itself owns (ranges and their
//! validators, encoding, framing, connection management, `Host`, conditionals) are refused at
//! enqueue with `invalid_header`, in any letter case; every other header is sent on every request,
//! the probe and each ranged request alike.

mod support;

use ferry::engine::{ErrorCode, Request};
use support::raw::{content, honest, RawServer};
use support::*;

#[test]
fn headers_the_engine_owns_are_refused_at_enqueue() {
    let l = Local::new();
    for name in [
        "Range",
        "rAnGe",
        "If-Range",
        "Accept-Encoding",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Host",
        "HOST",
        "TE",
        "Upgrade",
        "Expect",
        "Keep-Alive",
        "If-None-Match",
        "If-Modified-Since",
        "If-Match",
        "If-Unmodified-Since",
    ] {
        let req = Request { headers: vec![(name.into(), "x".into())], ..Request::file("http://127.0.0.1:9/f", l.out("f")) };
        let err = l.manager.enqueue(req).expect_err(name);
        assert_eq!(err.code(), ErrorCode::InvalidHeader, "{name}: {err}");
    }
    assert!(l.manager.list().is_empty());
}

#[test]
fn other_headers_reach_every_request() {
    let s = RawServer::start(|req| honest(req, 3, 500_000, "\"h\""));
    let l = Local::new();
    let req = Request {
        headers: vec![
            ("Authorization".into(), "Bearer abc".into()),
            ("User-Agent".into(), "custom-agent/1".into()),
            ("X-Trace".into(), "42".into()),
            ("Accept".into(), "application/octet-stream".into()),
        ],
        connections: Some(4),
        ..Request::file(format!("{}/f", s.base()), l.out("f"))
    };
    l.completes("f", req, &content(3, 0, 500_000));
    let reqs = s.requests();
    assert!(reqs.len() >= 4, "{reqs:?}");
    for r in reqs {
        assert_eq!(r.header("authorization"), Some("Bearer abc"));
        assert_eq!(r.header("user-agent"), Some("custom-agent/1"), "the caller's User-Agent wins");
        assert_eq!(r.header("x-trace"), Some("42"));
        assert_eq!(r.header("accept-encoding"), Some("identity"));
        assert!(r.header("range").is_some(), "every request of a ranged download asks for a range: {r:?}");
    }
}

#[test]
fn without_caller_headers_every_request_names_the_engine_and_accepts_anything() {
    let s = RawServer::start(|req| honest(req, 4, 300_000, "\"h\""));
    let l = Local::new();
    l.completes("f", Request { connections: Some(3), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(4, 0, 300_000));
    let reqs = s.requests();
    assert!(!reqs.is_empty());
    for r in reqs {
        assert!(r.header("user-agent").is_some_and(|ua| ua.starts_with("ferry")), "{r:?}");
        assert_eq!(r.header("accept"), Some("*/*"), "{r:?}");
        assert_eq!(r.header("accept-encoding"), Some("identity"), "{r:?}");
        assert_eq!(r.header("referer"), None, "no redirect, no referer: {r:?}");
    }
}

#[test]
fn credentials_in_the_url_become_basic_authorization_without_a_redirect() {
    let s = RawServer::start(|req| honest(req, 5, 200_000, "\"h\""));
    let l = Local::new();
    let url = format!("{}/f", s.base()).replace("http://", "http://alice:pw@");
    l.completes("f", Request { connections: Some(2), ..Request::file(url, l.out("f")) }, &content(5, 0, 200_000));
    let reqs = s.requests();
    assert!(!reqs.is_empty());
    // base64("alice:pw")
    assert!(reqs.iter().all(|r| r.header("authorization") == Some("Basic YWxpY2U6cHc=")), "{reqs:?}");
}
