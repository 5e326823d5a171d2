//! TLS connections that end or break in ways plain TCP cannot: a close without close_notify after
//! a complete or an incomplete body, a record cut off by the close, bytes that are no record, tiny
//! records trickled past the idle timeout, and data a server sends on an idle kept-alive
//! connection. Each ends with the exact bytes, or a typed failure with nothing at the destination.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::raw::{content, head, Part, RawRequest, RawServer, Scheme, SCHEMES};
use support::tls::{test_ca, trusting};
use support::*;

const SIZE: u64 = 300_000;
const SEED: u64 = 31;
const ETAG: &str = "\"t\"";

fn url(s: &RawServer) -> String {
    format!("{}/f", s.base())
}

fn config() -> Config {
    trusting(test_config())
}

/// A 206 (or 200 without `Range`) head with a length, for the range asked.
fn ranged_head(req: &RawRequest) -> (Vec<u8>, u64, u64) {
    match req.range_in(SIZE) {
        Some((a, b)) => {
            let h =
                [("Content-Range", format!("bytes {a}-{}/{SIZE}", b - 1)), ("Content-Length", (b - a).to_string()), ("ETag", ETAG.into())];
            (head(206, &h), a, b)
        }
        None => (head(200, &[("Content-Length", SIZE.to_string()), ("ETag", ETAG.into())]), 0, SIZE),
    }
}

#[test]
fn a_complete_length_body_cut_without_close_notify_is_complete() {
    // Many servers close TLS without close_notify after a response with a length: the length
    // proves the end, nothing is fetched again.
    let s = RawServer::start_on(Scheme::Https, |req: &RawRequest| {
        let (mut bytes, a, b) = ranged_head(req);
        bytes.extend(content(SEED, a, b));
        vec![Part::Write(bytes), Part::Cut]
    });
    let l = Local::with_config(config());
    l.completes("f", Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
    assert_eq!(s.count(), 1, "{:?}", s.requests());
}

#[test]
fn a_length_body_cut_without_close_notify_resumes_at_the_cut() {
    for scheme in SCHEMES {
        let s = RawServer::start_on(scheme, |req: &RawRequest| {
            let (mut bytes, a, b) = ranged_head(req);
            let cut = if req.n == 0 { a + (b - a) / 2 } else { b };
            bytes.extend(content(SEED, a, cut));
            vec![Part::Write(bytes), Part::Cut]
        });
        let l = Local::with_config(config());
        l.completes("f", Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
        let reqs = s.requests();
        assert_eq!(reqs.len(), 2, "{scheme:?}: {reqs:?}");
        assert_eq!(reqs[1].range(), Some((SIZE / 2, Some(SIZE))), "{scheme:?}");
    }
}

#[test]
fn a_record_cut_off_by_the_close_or_bytes_that_are_no_record_never_reach_the_file() {
    // After half the body in good records: the header of a 16 KiB record with 100 bytes of it,
    // then the close; or a forged plaintext alert, then silence; or random bytes, then the close.
    let tails: [Vec<Part>; 3] = [
        vec![Part::Raw([&[0x17, 0x03, 0x03, 0x40, 0x00][..], &[0xAB; 100]].concat()), Part::Cut],
        vec![Part::Raw(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]), Part::Hang],
        vec![Part::Raw(content(99, 0, 3000)), Part::Cut],
    ];
    for (i, tail) in tails.into_iter().enumerate() {
        let s = RawServer::start_on(Scheme::Https, move |req: &RawRequest| {
            let (mut bytes, a, b) = ranged_head(req);
            if req.n > 0 {
                bytes.extend(content(SEED, a, b));
                return vec![Part::Write(bytes)];
            }
            bytes.extend(content(SEED, a, a + (b - a) / 2));
            let mut parts = vec![Part::Write(bytes), Part::Sleep(Duration::from_millis(50))];
            parts.extend(tail.clone());
            parts
        });
        let l = Local::with_config(config());
        let started = Instant::now();
        l.completes("f", Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
        assert!(started.elapsed() < Duration::from_secs(10), "tail {i} took {:?}", started.elapsed());
        let reqs = s.requests();
        assert_eq!(reqs.len(), 2, "tail {i}: {reqs:?}");
        assert_eq!(reqs[1].range(), Some((SIZE / 2, Some(SIZE))), "tail {i}: resumed at the last good byte");
    }
}

#[test]
fn one_byte_records_slower_than_the_idle_timeout_fail_typed_in_bounded_time() {
    let impatient = Config {
        idle_timeout: Duration::from_millis(400),
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) },
        ..config()
    };
    let s = RawServer::start_on(Scheme::Https, |req: &RawRequest| {
        let (bytes, a, b) = ranged_head(req);
        vec![Part::Write(bytes), Part::Trickle(content(SEED, a, b), Duration::from_millis(700))]
    });
    let l = Local::with_config(impatient);
    let started = Instant::now();
    let info = l.download(Request::file(url(&s), l.out("f")));
    assert_eq!(info.state, ferry::engine::TaskState::Failed, "{info:?}");
    assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::Timeout), "{:?}", info.error);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!l.out("f").exists());
}

/// A keep-alive server: each connection answers requests one after another. `/a` is followed,
/// 20 ms after its body, by a whole unasked answer; `/b` is answered correctly.
fn keep_alive_server(scheme: Scheme) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            std::thread::spawn(move || {
                let mut conn: Box<dyn ReadWrite> = match scheme {
                    Scheme::Http => Box::new(tcp),
                    Scheme::Https => {
                        let c = rustls::ServerConnection::new(test_ca().server.clone()).unwrap();
                        Box::new(rustls::StreamOwned::new(c, tcp))
                    }
                };
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let text = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let (seed, stale) = if text.starts_with("GET /a") { (1, true) } else { (2, false) };
                    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
                    out.extend(content(seed, 0, SIZE));
                    if conn.write_all(&out).and_then(|_| conn.flush()).is_err() {
                        return;
                    }
                    if stale {
                        std::thread::sleep(Duration::from_millis(20));
                        let mut evil = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
                        evil.extend(vec![0xEE; SIZE as usize]);
                        let _ = conn.write_all(&evil).and_then(|_| conn.flush());
                    }
                }
            });
        }
    });
    (port, accepted)
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

#[test]
fn an_answer_nobody_asked_for_on_an_idle_connection_is_never_taken_for_the_next_one() {
    for scheme in SCHEMES {
        let (port, accepted) = keep_alive_server(scheme);
        let base = match scheme {
            Scheme::Http => format!("http://127.0.0.1:{port}"),
            Scheme::Https => format!("https://127.0.0.1:{port}"),
        };
        let l = Local::with_config(config());
        l.completes("a", Request::file(format!("{base}/a"), l.out("a")), &content(1, 0, SIZE));
        std::thread::sleep(Duration::from_millis(300));
        l.completes("b", Request::file(format!("{base}/b"), l.out("b")), &content(2, 0, SIZE));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "{scheme:?}: the spoiled connection was not reused");
    }
}
