//! Bodies and heads that do not match what was announced, or never come: more bytes than asked,
//! fewer bytes than announced, bodies delimited by closing the connection, connections closed
//! before the head, servers that never answer, heads trickled a byte at a time. Each ends with the
//! exact bytes, or a typed failure in bounded time with no destination file.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy};
use std::time::{Duration, Instant};
use support::raw::{content, head, honest, reply, Part, RawServer, SCHEMES};
use support::tls::trusting;
use support::*;

const SIZE: u64 = 400_000;
const SEED: u64 = 11;

fn url(s: &RawServer) -> String {
    format!("{}/f", s.base())
}

/// Short timeouts and a small retry budget, so failures are reached quickly.
fn impatient() -> Config {
    Config {
        idle_timeout: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(400),
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) },
        ..test_config()
    }
}

#[test]
fn bytes_beyond_the_range_or_the_content_length_are_never_written() {
    // Every answer carries 5000 bytes of garbage after the announced body.
    let s = RawServer::start(|req| {
        let mut parts = honest(req, SEED, SIZE, "\"e\"");
        parts.push(Part::Write(vec![0xEE; 5000]));
        parts
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(4), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));

    // The same without Content-Length: the bodies end when the connection closes.
    let s = RawServer::start(|req| {
        let (s, e) = req.range_in(SIZE).unwrap_or((0, SIZE));
        let status = if req.range().is_some() { 206 } else { 200 };
        let mut b = head(status, &[("Content-Range", format!("bytes {}-{}/{SIZE}", s, e - 1)), ("ETag", "\"e\"".into())]);
        b.extend(content(SEED, s, e));
        b.extend(vec![0xEE; 5000]);
        vec![Part::Write(b)]
    });
    let l = Local::new();
    l.completes("g", Request { connections: Some(4), ..Request::file(url(&s), l.out("g")) }, &content(SEED, 0, SIZE));
}

#[test]
fn a_206_body_cut_short_is_resumed_where_it_stopped() {
    // The first two answers announce their full range but send half of it and close.
    let s = RawServer::start(|req| {
        let (s, e) = req.range_in(SIZE).unwrap_or((0, SIZE));
        let cut = if req.n < 2 { s + (e - s) / 2 } else { e };
        let mut b = head(206, &[("Content-Range", format!("bytes {}-{}/{SIZE}", s, e - 1)), ("ETag", "\"e\"".into())]);
        b.extend(content(SEED, s, cut));
        vec![Part::Write(b)]
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
    let reqs = s.requests();
    assert_eq!(reqs[1].range(), Some((SIZE / 2, Some(SIZE))), "resumed at the cut: {reqs:?}");
    assert_eq!(reqs[1].header("if-range"), Some("\"e\""));
}

#[test]
fn an_http_1_0_body_delimited_by_close_is_streamed_whole() {
    let s = RawServer::start(|_| {
        let mut b = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        b.extend(content(SEED, 0, SIZE));
        vec![Part::Write(b)]
    });
    let l = Local::new();
    let info = l.completes("f", Request { connections: Some(4), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
    assert_eq!(info.total, Some(SIZE));
    assert_eq!(s.count(), 1);
}

#[test]
fn a_server_closing_before_the_head_fails_typed_after_the_retry_budget() {
    let s = RawServer::start(|_| Vec::new());
    let l = Local::with_config(impatient());
    let started = Instant::now();
    let info = l.download(Request::file(url(&s), l.out("f")));
    assert_eq!(info.state, ferry::engine::TaskState::Failed, "{info:?}");
    let code = info.error.as_ref().unwrap().code;
    assert!(matches!(code, ErrorCode::Network | ErrorCode::TruncatedBody), "{:?}", info.error);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(s.count() <= 8, "{} requests for a budget of 2", s.count());
    assert!(!l.out("f").exists() && !part_of(&l.out("f")).exists());
}

#[test]
fn a_server_that_never_answers_times_out_typed() {
    let s = RawServer::start(|_| vec![Part::Hang]);
    let l = Local::with_config(impatient());
    let started = Instant::now();
    l.fails("f", Request::file(url(&s), l.out("f")), ErrorCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(s.count(), 3, "one attempt and two retries");
}

#[test]
fn a_body_that_stops_mid_way_times_out_and_resumes() {
    let s = RawServer::start(|req| {
        let mut parts = honest(req, SEED, SIZE, "\"e\"");
        if req.n == 0 {
            let Part::Write(all) = parts.remove(0) else { unreachable!() };
            parts = vec![Part::Write(all[..all.len() / 2].to_vec()), Part::Hang];
        }
        parts
    });
    let l = Local::with_config(impatient());
    l.completes("f", Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
}

#[test]
fn a_head_trickled_slowly_is_read_when_it_stays_within_the_timeouts() {
    let s = RawServer::start(|req| {
        let Part::Write(all) = honest(req, SEED, SIZE, "\"e\"").remove(0) else { unreachable!() };
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        vec![Part::Trickle(all[..split].to_vec(), Duration::from_millis(5)), Part::Write(all[split..].to_vec())]
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(2), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
}

#[test]
fn a_head_trickled_forever_fails_typed_in_bounded_time() {
    // One header byte every 100 ms, never finishing: each byte is within the idle timeout, the
    // head as a whole never is.
    let s = RawServer::start(|_| {
        let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
        h.extend(std::iter::repeat_n(b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(), 1000).flatten());
        vec![Part::Trickle(h, Duration::from_millis(100))]
    });
    let l = Local::with_config(impatient());
    let started = Instant::now();
    l.fails("f", Request::file(url(&s), l.out("f")), ErrorCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[test]
fn a_content_length_beyond_the_body_with_a_close_is_retried_then_fails_typed() {
    // Every answer announces the full length but sends 1000 bytes and closes.
    let s = RawServer::start(|_| {
        let mut b = head(200, &[("Content-Length", SIZE.to_string())]);
        b.extend(content(SEED, 0, 1000));
        vec![Part::Write(b)]
    });
    let l = Local::with_config(impatient());
    l.fails("f", Request::file(url(&s), l.out("f")), ErrorCode::TruncatedBody);
    assert!(s.count() <= 8, "{}", s.count());
}

#[test]
fn duplicate_and_conflicting_content_lengths_fail_typed() {
    let s = RawServer::start(|_| reply(200, &[("Content-Length", "10".into()), ("Content-Length", "20".into())], &[7u8; 20]));
    let l = Local::with_config(impatient());
    let info = l.download(Request::file(url(&s), l.out("f")));
    assert_eq!(info.state, ferry::engine::TaskState::Failed, "{info:?}");
    assert!(!l.out("f").exists() && !part_of(&l.out("f")).exists());
}

#[test]
fn a_server_that_sends_a_few_bytes_per_answer_fails_typed_instead_of_being_retried_for_ever() {
    // Every answer announces its whole range, sends 100 bytes of it, and closes: each attempt
    // "progresses", but never enough to count.
    let s = RawServer::start(|req| {
        let (s, e) = req.range_in(SIZE).unwrap_or((0, SIZE));
        let mut b = head(206, &[("Content-Range", format!("bytes {}-{}/{SIZE}", s, e - 1)), ("ETag", "\"e\"".into())]);
        b.extend(content(SEED, s, (s + 100).min(e)));
        vec![Part::Write(b)]
    });
    let l = Local::with_config(impatient());
    let started = Instant::now();
    let info = l.download(Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) });
    assert_eq!(info.state, ferry::engine::TaskState::Failed, "{info:?}");
    assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::TruncatedBody), "{:?}", info.error);
    assert!(!l.out("f").exists(), "a destination file appeared");
    // The verified bytes stay for a later resume.
    assert!(read(&part_of(&l.out("f"))).len() >= 100);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(s.count() <= 12, "{} requests for a server that never sends more than 100 bytes", s.count());
}

#[test]
fn a_body_trickled_below_the_minimum_speed_fails_typed_in_bounded_time() {
    // 20 bytes a second: every byte is well within the idle timeout, so without a minimum speed
    // this download would take six hours and hold its connection all along.
    for scheme in SCHEMES {
        let s = RawServer::start_on(scheme, |_| {
            let mut parts = vec![Part::Write(head(200, &[("Content-Length", SIZE.to_string())]))];
            parts.push(Part::Trickle(content(SEED, 0, SIZE), Duration::from_millis(50)));
            parts
        });
        let config = trusting(Config {
            idle_timeout: Duration::from_secs(2),
            min_speed: 1024,
            min_speed_window: Duration::from_millis(800),
            ..impatient()
        });
        let l = Local::with_config(config);
        let started = Instant::now();
        let info = l.download(Request::file(url(&s), l.out("f")));
        assert_eq!(info.state, ferry::engine::TaskState::Failed, "{scheme:?}: {info:?}");
        let error = info.error.expect("an error");
        assert_eq!(error.code, ErrorCode::Timeout, "{scheme:?}: {error:?}");
        assert!(error.message.contains("below the minimum"), "{scheme:?}: {error:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "{scheme:?}: took {:?}", started.elapsed());
        assert!(!l.out("f").exists(), "a destination file appeared");
        assert!(s.count() <= 4, "{scheme:?}: {} requests", s.count());
    }
}

#[test]
fn a_download_the_engine_throttles_is_never_judged_slow() {
    // The task's own cap (16 KiB/s) is far below the minimum speed (64 KiB/s): the time the
    // engine spends holding back is not the server's.
    let s = RawServer::start(|req| honest(req, SEED, 48 << 10, "\"e\""));
    let config = Config { min_speed: 64 << 10, min_speed_window: Duration::from_millis(500), ..impatient() };
    let l = Local::with_config(config);
    let started = Instant::now();
    let req = Request { connections: Some(1), rate_limit: Some(16 << 10), ..Request::file(url(&s), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, 48 << 10));
    assert!(started.elapsed() >= Duration::from_millis(1500), "the cap held: {:?}", started.elapsed());
    assert_eq!(s.count(), 1, "one request, never given up as slow");
}

/// The span an honest server answers `req` with, and its head (206 to a range, else 200).
fn honest_head(req: &support::raw::RawRequest, size: u64) -> (u64, u64, Part) {
    let (s, e) = req.range_in(size).unwrap_or((0, size));
    let mut headers = vec![("Content-Length", (e - s).to_string()), ("ETag", "\"e\"".to_string())];
    let status = if req.range().is_some() {
        headers.push(("Content-Range", format!("bytes {}-{}/{size}", s, e - 1)));
        206
    } else {
        200
    };
    (s, e, Part::Write(head(status, &headers)))
}

/// An honest answer whose body comes `piece` bytes at a time, `pause` apart.
fn paced(req: &support::raw::RawRequest, size: u64, piece: usize, pause: Duration) -> Vec<Part> {
    let (s, e, head) = honest_head(req, size);
    let mut parts = vec![head];
    for piece in content(SEED, s, e).chunks(piece) {
        parts.push(Part::Write(piece.to_vec()));
        parts.push(Part::Sleep(pause));
    }
    parts
}

#[test]
fn connections_that_share_a_link_fast_enough_are_not_judged_slow_one_by_one() {
    // Eight connections on a link of 8 KiB/s, each fed its eighth (1 KiB/s): each one is below
    // the minimum of 4 KiB/s, the link twice above it. Judged one by one, every connection failed
    // as a trickle (a second of waiting brought 1 KiB, no progress) and the task failed.
    const N: u64 = 8;
    let size = N * 4096;
    let s = RawServer::start(move |req| paced(req, size, 256, Duration::from_millis(250)));
    let config = Config { min_speed: 4096, min_speed_window: Duration::from_secs(1), min_split_bytes: 4096, ..impatient() };
    let l = Local::with_config(config);
    let req = Request { connections: Some(N as u32), ..Request::file(url(&s), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, size));
}

#[test]
fn a_trickle_that_brings_a_little_each_attempt_still_fails_typed() {
    // Each connection is fed 8 KiB/s, the task's minimum is 12 KiB/s a connection, judged over
    // 2.5 s: each attempt brings 20 KiB, more than the 16 KiB that counts as progress, before it is
    // judged slow. Every retry used to start the budget afresh, and the download reconnected for
    // ever (8 MiB at this pace: over four minutes on four connections).
    let size = 8u64 << 20;
    for connections in [1u64, 4] {
        let s = RawServer::start(move |req| paced(req, size, 1024, Duration::from_millis(125)));
        let config = Config { min_speed: connections * (12 << 10), min_speed_window: Duration::from_millis(2500), ..impatient() };
        let l = Local::with_config(config);
        let started = Instant::now();
        let info = l.download(Request { connections: Some(connections as u32), ..Request::file(url(&s), l.out("f")) });
        assert_eq!(info.state, ferry::engine::TaskState::Failed, "{connections} connections: {info:?}");
        let error = info.error.expect("an error");
        assert_eq!(error.code, ErrorCode::Timeout, "{error:?}");
        assert!(error.message.contains("below the minimum"), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "{connections} connections: took {:?}", started.elapsed());
        assert!(!l.out("f").exists(), "a destination file appeared");
    }
}

#[test]
fn a_download_that_dips_below_the_minimum_once_in_a_while_is_not_given_up() {
    // Fast, then below the minimum, again and again: each attempt met the minimum over a window
    // before it was judged slow, so each is progress, and the download completes across more dips
    // than the retry budget.
    let size = 2u64 << 20;
    let dips = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = dips.clone();
    let s = RawServer::start(move |req| {
        let (from, to, head) = honest_head(req, size);
        let mut parts = vec![head];
        // 400 KiB at once, then a trickle (a byte every 50 ms) that the minimum speed ends.
        let fast = (to - from).min(400 << 10);
        parts.push(Part::Write(content(SEED, from, from + fast)));
        if from + fast < to {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            parts.push(Part::Trickle(content(SEED, from + fast, to), Duration::from_millis(50)));
        }
        parts
    });
    let config =
        Config { min_speed: 32 << 10, min_speed_window: Duration::from_millis(600), idle_timeout: Duration::from_secs(10), ..impatient() };
    let l = Local::with_config(config);
    let req = Request { connections: Some(1), ..Request::file(url(&s), l.out("f")) };
    l.completes("f", req, &content(SEED, 0, size));
    assert!(dips.load(std::sync::atomic::Ordering::Relaxed) > 2, "more dips than the retry budget of 2");
    let reconnects = s.count() - 1;
    assert!(reconnects > 2, "each dip was ended by the minimum speed: {reconnects} reconnects");
}
