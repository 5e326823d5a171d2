//! Redirects: every 3xx kind, relative locations, other hosts, unsupported schemes, loops and the
//! limit; ranged requests and `If-Range` across redirects; credentials never following a redirect
//! to another host.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use support::raw::{content, honest, reply, RawRequest, RawServer};
use support::*;

const SIZE: u64 = 600_000;
const SEED: u64 = 5;

fn quick() -> Config {
    Config {
        retry: RetryPolicy { budget: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(100) },
        ..test_config()
    }
}

fn redirect(status: u16, to: &str) -> Vec<support::raw::Part> {
    reply(status, &[("Location", to.to_string()), ("Content-Length", "0".into())], b"")
}

/// Serves `/f` honestly; `/chain/N` redirects N times with every 3xx kind and both relative and
/// absolute locations; `/hop/N` redirects N times; `/loop` to itself; `/ftp` to an ftp URL;
/// `/noloc` is a 302 without `Location`; `/to/PORT` redirects to `/f` on another port.
fn origin() -> RawServer {
    RawServer::start(|req: &RawRequest| {
        let path = req.path().to_string();
        let host = req.header("host").unwrap_or("").to_string();
        if path == "/f" {
            return honest(req, SEED, SIZE, "\"a\"");
        }
        if let Some(n) = path.strip_prefix("/chain/").and_then(|n| n.parse::<u32>().ok()) {
            let status = [301, 302, 303, 307, 308][n as usize % 5];
            return match n {
                0 => redirect(status, "../f"),
                n if n % 2 == 0 => redirect(status, &format!("http://{host}/chain/{}", n - 1)),
                n => redirect(status, &format!("{}", n - 1)),
            };
        }
        if let Some(n) = path.strip_prefix("/hop/").and_then(|n| n.parse::<u32>().ok()) {
            return if n == 0 { honest(req, SEED, SIZE, "\"a\"") } else { redirect(302, &format!("/hop/{}", n - 1)) };
        }
        if let Some(port) = path.strip_prefix("/to/") {
            return redirect(302, &format!("http://127.0.0.1:{port}/f"));
        }
        match path.as_str() {
            "/loop" => redirect(302, "/loop"),
            "/ftp" => redirect(302, "ftp://127.0.0.1/f"),
            "/file-scheme" => redirect(302, "file:///etc/passwd"),
            "/noloc" => reply(302, &[("Content-Length", "0".into())], b""),
            _ => reply(404, &[("Content-Length", "0".into())], b""),
        }
    })
}

#[test]
fn every_redirect_kind_and_relative_locations_are_followed() {
    let s = origin();
    let l = Local::new();
    let req = Request { connections: Some(3), ..Request::file(format!("{}/chain/6", s.base()), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, SIZE));
}

#[test]
fn ten_redirects_are_followed_and_eleven_are_too_many() {
    let s = origin();
    let l = Local::with_config(quick());
    l.completes("a", Request::file(format!("{}/hop/10", s.base()), l.out("a")), &content(SEED, 0, SIZE));
    let before = s.count();
    l.fails("b", Request::file(format!("{}/hop/11", s.base()), l.out("b")), ErrorCode::TooManyRedirects);
    assert_eq!(s.count() - before, 11, "too many redirects is not retried");
}

#[test]
fn a_redirect_loop_fails_typed_without_retries() {
    let s = origin();
    let l = Local::with_config(quick());
    l.fails("f", Request::file(format!("{}/loop", s.base()), l.out("f")), ErrorCode::RedirectLoop);
    assert!(s.count() <= 2, "{}", s.count());
}

#[test]
fn a_redirect_to_an_unsupported_scheme_fails_typed_without_retries() {
    let s = origin();
    let l = Local::with_config(quick());
    for path in ["ftp", "file-scheme"] {
        let before = s.count();
        let info = l.fails(path, Request::file(format!("{}/{path}", s.base()), l.out(path)), ErrorCode::UnsupportedScheme);
        assert_eq!(s.count() - before, 1, "{path}: {:?}", info.error);
    }
}

#[test]
fn a_redirect_without_location_fails_typed() {
    let s = origin();
    let l = Local::with_config(quick());
    let info = l.fails("f", Request::file(format!("{}/noloc", s.base()), l.out("f")), ErrorCode::HttpClientError);
    assert_eq!(info.error.unwrap().http_status, Some(302));
}

#[test]
fn ranged_requests_follow_a_redirect_to_another_port_with_that_servers_validator() {
    let target = RawServer::start(|req| honest(req, SEED, SIZE, "\"b\""));
    let s = origin();
    let l = Local::new();
    let req = Request { connections: Some(4), ..Request::file(format!("{}/to/{}", s.base(), target.port()), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, SIZE));
    let reqs = target.requests();
    assert!(reqs.len() >= 4, "{reqs:?}");
    for r in reqs.iter().filter(|r| r.range().is_some_and(|(s, _)| s > 0)) {
        assert_eq!(r.header("if-range"), Some("\"b\""), "If-Range must carry the validator of the server that served: {r:?}");
    }
}

/// The redirect target changes during the download to a server with other content of the same
/// length. With validators the change shows in `If-Range`, and the file is the version served
/// last. Without them the download is one answer from start to end (nothing could prove that two
/// answers carry the same bytes), so it is the first version, whole.
#[test]
fn a_redirect_target_changing_mid_download_never_mixes_two_resources() {
    for (tag_b, tag_c) in [("\"b\"", "\"c\""), ("", "")] {
        let b = RawServer::start(move |req| honest(req, 100, SIZE, tag_b));
        let c = RawServer::start(move |req| honest(req, 200, SIZE, tag_c));
        let (pb, pc) = (b.port(), c.port());
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let a = RawServer::start(move |req| {
            // The first two requests (the probe and one connection) go to b, later ones to c.
            let port = if h.fetch_add(1, SeqCst) < 2 { pb } else { pc };
            let _ = req;
            redirect(302, &format!("http://127.0.0.1:{port}/f"))
        });
        let l = Local::new();
        let req = Request { connections: Some(4), ..Request::file(format!("{}/x", a.base()), l.out("f")) };
        let seed = if tag_b.is_empty() { 100 } else { 200 };
        l.completes("f", req, &content(seed, 0, SIZE));
        if tag_b.is_empty() {
            assert_eq!(hits.load(SeqCst), 1, "one request without a validator");
        }
    }
}

#[test]
fn an_authorization_header_is_not_forwarded_to_another_host() {
    let target = RawServer::start(|req| honest(req, SEED, SIZE, "\"b\""));
    let s = origin();
    let l = Local::new();
    let req = Request {
        headers: vec![("Authorization".into(), "Bearer TOPSECRET".into()), ("Cookie".into(), "sid=COOKIESECRET".into())],
        connections: Some(2),
        ..Request::file(format!("{}/to/{}", s.base(), target.port()), l.out("f"))
    };
    l.completes("f", req, &content(SEED, 0, SIZE));
    assert!(s.requests().iter().all(|r| r.header("authorization") == Some("Bearer TOPSECRET")));
    for r in target.requests() {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert_eq!(r.header("cookie"), None, "{r:?}");
    }

    // Credentials in the URL become Basic authorization for that host only.
    let target = RawServer::start(|req| honest(req, SEED, SIZE, "\"b\""));
    let url = format!("{}/to/{}", s.base(), target.port()).replace("http://", "http://alice:pw@");
    let req = Request { connections: Some(2), ..Request::file(url, l.out("g")) };
    l.completes("g", req, &content(SEED, 0, SIZE));
    assert!(s.requests().iter().any(|r| r.header("authorization").is_some_and(|v| v.starts_with("Basic "))));
    for r in target.requests() {
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
}

#[test]
fn an_authorization_header_is_kept_on_a_same_origin_redirect() {
    let s = origin();
    let l = Local::new();
    let req = Request {
        headers: vec![("Authorization".into(), "Bearer T".into())],
        ..Request::file(format!("{}/chain/3", s.base()), l.out("f"))
    };
    l.completes("f", req, &content(SEED, 0, SIZE));
    assert!(s.requests().iter().all(|r| r.header("authorization") == Some("Bearer T")));
}

#[test]
fn each_hop_of_a_redirect_names_the_url_it_came_from() {
    let s = origin();
    let l = Local::new();
    l.completes("f", Request::file(format!("{}/hop/2", s.base()), l.out("f")), &content(SEED, 0, SIZE));
    let reqs = s.requests();
    let referer_of = |path: &str| reqs.iter().find(|r| r.target == path).map(|r| r.header("referer").map(str::to_string));
    assert_eq!(referer_of("/hop/2"), Some(None), "{reqs:?}");
    assert_eq!(referer_of("/hop/1"), Some(Some(format!("{}/hop/2", s.base()))), "{reqs:?}");
    assert_eq!(referer_of("/hop/0"), Some(Some(format!("{}/hop/1", s.base()))), "{reqs:?}");
}
