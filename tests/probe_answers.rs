//! Probes (`GET` with `Range: bytes=0-`) answered in ways that prove nothing about range support:
//! the engine must fall back to one plain `GET` and end with the exact bytes, never write a body
//! it cannot place.

mod support;

use ferry::engine::Request;
use support::raw::{content, reply, RawRequest, RawServer};
use support::*;

const SIZE: u64 = 300_000;
const SEED: u64 = 7;

/// A server that answers a plain `GET` honestly (200, the whole body) and lets `ranged` answer
/// requests carrying `Range`.
fn server(ranged: impl Fn(&RawRequest) -> Vec<u8> + Send + Sync + 'static) -> RawServer {
    RawServer::start(move |req| {
        if req.range().is_some() {
            vec![support::raw::Part::Write(ranged(req))]
        } else {
            reply(200, &[("Content-Length", SIZE.to_string())], &content(SEED, 0, SIZE))
        }
    })
}

fn bytes_of(parts: Vec<support::raw::Part>) -> Vec<u8> {
    match parts.into_iter().next() {
        Some(support::raw::Part::Write(b)) => b,
        _ => unreachable!(),
    }
}

/// Runs a download against `s` with 4 connections and checks the exact bytes and that the last
/// request was a plain `GET` (the fallback).
fn falls_back_to_plain(s: &RawServer) {
    let l = Local::new();
    let req = Request { connections: Some(4), ..Request::file(format!("{}/f", s.base()), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, SIZE));
    let reqs = s.requests();
    assert!(reqs.iter().any(|r| r.range().is_none()), "expected a plain GET: {reqs:?}");
    assert!(
        reqs.iter().filter(|r| r.range().is_some()).all(|r| r.range() == Some((0, None))),
        "no ranged request beyond the probe should be made: {reqs:?}"
    );
}

#[test]
fn a_206_with_an_unknown_total_falls_back_to_one_stream() {
    let s = server(|_| {
        bytes_of(reply(206, &[("Content-Range", "bytes 0-99/*".into()), ("Content-Length", "100".into())], &content(SEED, 0, 100)))
    });
    falls_back_to_plain(&s);
}

#[test]
fn a_206_without_content_range_falls_back_to_one_stream() {
    let s = server(|_| bytes_of(reply(206, &[("Content-Length", SIZE.to_string())], &content(SEED, 0, SIZE))));
    falls_back_to_plain(&s);
}

#[test]
fn a_multipart_byteranges_answer_falls_back_to_one_stream() {
    let s = server(|_| {
        let mut body = Vec::new();
        body.extend_from_slice(b"--SEP\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-99/300000\r\n\r\n");
        body.extend_from_slice(&content(SEED, 0, 100));
        body.extend_from_slice(b"\r\n--SEP--\r\n");
        bytes_of(reply(
            206,
            &[("Content-Type", "multipart/byteranges; boundary=SEP".into()), ("Content-Length", body.len().to_string())],
            &body,
        ))
    });
    falls_back_to_plain(&s);
}

#[test]
fn a_206_not_starting_at_zero_falls_back_to_one_stream() {
    let s = server(|_| {
        bytes_of(reply(
            206,
            &[("Content-Range", format!("bytes 100-{}/{SIZE}", SIZE - 1)), ("Content-Length", (SIZE - 100).to_string())],
            &content(SEED, 100, SIZE),
        ))
    });
    falls_back_to_plain(&s);
}

#[test]
fn a_gzip_coded_206_falls_back_to_one_stream() {
    let s = server(|_| {
        bytes_of(reply(
            206,
            &[
                ("Content-Range", format!("bytes 0-{}/{SIZE}", SIZE - 1)),
                ("Content-Length", "1000".into()),
                ("Content-Encoding", "gzip".into()),
                ("ETag", "\"z\"".into()),
            ],
            &[0x1f; 1000],
        ))
    });
    falls_back_to_plain(&s);
}

#[test]
fn a_content_range_contradicting_itself_falls_back_to_one_stream() {
    for cr in ["bytes 99-0/300000", "bytes 0-300000/300000", "bytes 0-18446744073709551615/18446744073709551615", "bytes 0-x/300000"] {
        let s = server(move |_| {
            bytes_of(reply(206, &[("Content-Range", cr.into()), ("Content-Length", "100".into())], &content(SEED, 0, 100)))
        });
        falls_back_to_plain(&s);
    }
}

/// Decision: a `200` whose body is content-coded although `identity` was asked for is saved exactly
/// as sent (what curl and wget do, and what a `.tar.gz` served with `Content-Encoding: gzip`
/// needs); ranges are never used on it.
#[test]
fn a_gzip_coded_200_is_saved_as_sent() {
    let body = content(SEED, 0, SIZE);
    let sent = body.clone();
    let s = RawServer::start(move |_| {
        reply(200, &[("Content-Length", SIZE.to_string()), ("Content-Encoding", "gzip".into()), ("ETag", "\"g\"".into())], &sent)
    });
    let l = Local::new();
    let req = Request { connections: Some(4), ..Request::file(format!("{}/f.tar.gz", s.base()), l.out("f")) };
    l.completes("f", req, &body);
    assert_eq!(s.count(), 1, "{:?}", s.requests());
}

#[test]
fn a_416_to_the_probe_that_names_no_empty_resource_falls_back_to_one_stream() {
    // A server without HEAD or ranges refusing `bytes=0-`: no Content-Range, or the real length.
    for range in [None, Some(format!("bytes */{SIZE}"))] {
        let s = server(move |_| {
            let h: Vec<(&str, String)> =
                range.iter().map(|r| ("Content-Range", r.clone())).chain([("Content-Length", "0".into())]).collect();
            bytes_of(reply(416, &h, b""))
        });
        falls_back_to_plain(&s);
    }
}

#[test]
fn a_206_with_an_empty_body_for_a_whole_range_falls_back_to_one_stream() {
    let s =
        server(|_| bytes_of(reply(206, &[("Content-Range", format!("bytes 0-{}/{SIZE}", SIZE - 1)), ("Content-Length", "0".into())], b"")));
    falls_back_to_plain(&s);
}
