//! Answers that can never succeed fail fast, over plain HTTP and over TLS: malformed heads,
//! contradictory lengths, chunk sizes that overflow, informational answers that never end, heads
//! cut off or trickled. Each is a typed `protocol_error` after one retry on a new connection,
//! within seconds, with the engine's default timeouts and retry budget (which took 10-50 s per
//! case before, eight attempts with backoff). Informational answers before the real one are
//! skipped, and a 206 is done at its last byte even when its server keeps the connection open.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy, TaskState};
use std::time::{Duration, Instant};
use support::raw::{content, honest, Part, RawServer, Scheme, SCHEMES};
use support::tls::trusting;
use support::*;

const SIZE: u64 = 200_000;
const SEED: u64 = 31;
const ETAG: &str = "\"p\"";

/// The engine's default timeouts and retry policy (15 s to connect, 30 s of silence, a budget of
/// eight with backoff from 250 ms), the test CA trusted.
fn defaults() -> Config {
    let d = Config::default();
    trusting(Config { connect_timeout: d.connect_timeout, idle_timeout: d.idle_timeout, retry: RetryPolicy::default(), ..test_config() })
}

/// Serves `head` (then keeps the connection open, so that only the bytes can be the reason) and
/// expects a `protocol_error` after one retry, in under ten seconds, with nothing left behind.
fn refused(scheme: Scheme, what: &str, bytes: Vec<u8>) {
    let s = RawServer::start_on(scheme, move |_| vec![Part::Write(bytes.clone()), Part::Hang]);
    let l = Local::with_config(defaults());
    let started = Instant::now();
    let info = l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), ErrorCode::ProtocolError);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{what} over {scheme:?} took {took:?}");
    assert_eq!(s.count(), 2, "{what} over {scheme:?}: {info:?}");
}

fn with_body(head: &str) -> Vec<u8> {
    let mut b = head.as_bytes().to_vec();
    b.extend(content(SEED, 0, 5));
    b
}

#[test]
fn malformed_heads_fail_fast() {
    let mut huge_line = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    huge_line.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge_line.extend_from_slice(b"\r\nContent-Length: 5\r\n\r\nhello");
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..10_000 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a NUL in a header", with_body("HTTP/1.1 200 OK\r\nX-A: b\0c\r\nContent-Length: 5\r\n\r\n")),
        ("a bare CR in a header", with_body("HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 5\r\n\r\n")),
        ("a space before the colon", with_body("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n")),
        ("obs-fold", with_body("HTTP/1.1 200 OK\r\nX-A: b\r\n  c\r\nContent-Length: 5\r\n\r\n")),
        ("a 1 MB header line", huge_line),
        ("10,000 headers", many),
        ("a non-numeric status", with_body("HTTP/1.1 2OO OK\r\nContent-Length: 5\r\n\r\n")),
        ("status 600", with_body("HTTP/1.1 600 Beyond\r\nContent-Length: 5\r\n\r\n")),
        ("status 099", with_body("HTTP/1.1 099 Below\r\nContent-Length: 5\r\n\r\n")),
        ("HTTP/2 over HTTP/1.1", with_body("HTTP/2 200\r\nContent-Length: 5\r\n\r\n")),
    ];
    for scheme in SCHEMES {
        for (what, bytes) in &cases {
            refused(scheme, what, bytes.clone());
        }
    }
}

#[test]
fn contradictory_lengths_and_broken_chunk_sizes_fail_fast() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Content-Length: +5", with_body("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n")),
        ("Content-Length: 1 0", with_body("HTTP/1.1 200 OK\r\nContent-Length: 1 0\r\n\r\n")),
        ("a negative length", with_body("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")),
        ("a length past u64", with_body("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n")),
        ("a chunk size past u64", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n".to_vec()),
        ("a chunk size that is no number", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n".to_vec()),
        ("a chunk without its CRLF", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n".to_vec()),
    ];
    for scheme in SCHEMES {
        for (what, bytes) in &cases {
            refused(scheme, what, bytes.clone());
        }
    }
}

#[test]
fn informational_answers_are_skipped_within_bounds() {
    for scheme in SCHEMES {
        let s = RawServer::start_on(scheme, |req| {
            let mut pre = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            for _ in 0..3 {
                pre.extend_from_slice(
                    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </a.js>; rel=preload\r\n\r\n",
                );
            }
            let mut parts = vec![Part::Write(pre)];
            parts.extend(honest(req, SEED, SIZE, ETAG));
            parts
        });
        let l = Local::with_config(defaults());
        l.completes("f", Request { connections: Some(2), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(SEED, 0, SIZE));

        refused(
            scheme,
            "an unsolicited 101",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec(),
        );
        refused(scheme, "a flood of 100s", b"HTTP/1.1 100 Continue\r\n\r\n".repeat(10_000));
    }
}

#[test]
fn a_head_cut_off_by_the_server_is_a_protocol_error_but_silence_is_not() {
    for scheme in SCHEMES {
        let s = RawServer::start_on(scheme, |_| vec![Part::Write(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec())]);
        let l = Local::with_config(defaults());
        let started = Instant::now();
        l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), ErrorCode::ProtocolError);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert_eq!(s.count(), 2);

        // A connection closed before any byte of an answer stays a network failure, retried on
        // the usual budget (a server turning a client away says so this way).
        let s = RawServer::start_on(scheme, |_| Vec::new());
        let quick = RetryPolicy { budget: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
        let l = Local::with_config(Config { retry: quick, ..defaults() });
        let info = l.download(Request::file(format!("{}/f", s.base()), l.out("f")));
        assert_eq!(info.state, TaskState::Failed);
        let code = info.error.as_ref().unwrap().code;
        assert!(matches!(code, ErrorCode::Network | ErrorCode::TruncatedBody), "{scheme:?}: {:?}", info.error);
        assert_eq!(s.count(), 4, "{scheme:?}: one request and three retries");
    }
}

#[test]
fn a_head_trickled_forever_is_bounded_by_the_head_timeout() {
    for scheme in SCHEMES {
        let s = RawServer::start_on(scheme, |_| {
            let mut h = b"HTTP/1.1 200 OK\r\nX-Slow: ".to_vec();
            h.extend(std::iter::repeat_n(b'a', 10_000));
            vec![Part::Trickle(h, Duration::from_millis(50))]
        });
        let l = Local::with_config(Config { head_timeout: Duration::from_secs(1), ..defaults() });
        let started = Instant::now();
        l.fails("f", Request::file(format!("{}/f", s.base()), l.out("f")), ErrorCode::ProtocolError);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{scheme:?}: {took:?}");
        assert_eq!(s.count(), 2);
    }
}

#[test]
fn a_complete_206_is_done_at_its_last_byte_even_if_the_connection_stays_open() {
    for scheme in SCHEMES {
        for connections in [1, 3] {
            // No Content-Length: the body would end only when the connection closes, which it
            // never does. The range says where it ends.
            let s = RawServer::start_on(scheme, |req| {
                let (a, b) = req.range_in(SIZE).unwrap_or((0, SIZE));
                let mut bytes =
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{}/{SIZE}\r\nETag: {ETAG}\r\n\r\n", b - 1)
                        .into_bytes();
                bytes.extend(content(SEED, a, b));
                vec![Part::Write(bytes), Part::Hang]
            });
            let l = Local::with_config(defaults());
            let started = Instant::now();
            let req = Request { connections: Some(connections), ..Request::file(format!("{}/f", s.base()), l.out("f")) };
            l.completes("f", req, &content(SEED, 0, SIZE));
            assert!(started.elapsed() < Duration::from_secs(5), "{scheme:?}, {connections} connections: {:?}", started.elapsed());
        }
    }
}
