//! Answers whose HTTP/1.1 framing is broken or contradicts itself, over plain HTTP and over TLS:
//! transfer codings Ferry did not ask for, framing fields sent twice with different values, a 206
//! whose length and range disagree, chunks whose framing fails after their bytes arrived. Each
//! ends byte-exact after a retry the server answers correctly, or as a typed `protocol_error` with
//! nothing at the destination, after one retry, in a few seconds.

mod support;

use ferry::engine::{Config, ErrorCode, Request, RetryPolicy, TaskState};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::raw::{content, honest, reply, RawRequest, RawServer, Scheme, SCHEMES};
use support::tls::trusting;
use support::*;

const SIZE: u64 = 300_000;
const SEED: u64 = 23;
const ETAG: &str = "\"f\"";

fn url(s: &RawServer) -> String {
    format!("{}/f", s.base())
}

/// Test timeouts with the default retry policy (a budget of 8, 250 ms first delay): a protocol
/// violation must fail without spending it.
fn config() -> Config {
    trusting(Config { retry: RetryPolicy::default(), ..test_config() })
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A typed `protocol_error` after exactly one retry, within seconds, with no destination and no
/// part file.
fn fails_fast(scheme: Scheme, s: &RawServer, name: &str, what: &str) {
    let l = Local::with_config(config());
    let started = Instant::now();
    let info = l.fails(name, Request::file(url(s), l.out(name)), ErrorCode::ProtocolError);
    assert!(started.elapsed() < Duration::from_secs(10), "{what} over {scheme:?} took {:?}", started.elapsed());
    assert_eq!(s.count(), 2, "{what} over {scheme:?}: one request and one retry on a new connection ({info:?})");
}

/// `body` in chunked coding, chunks of `size` bytes. With `lie_at`, the chunk starting at that
/// body offset declares 16 bytes more than it carries: the next chunk's size line and data are
/// read as its data, then the CRLF check fails.
fn chunked(body: &[u8], size: usize, lie_at: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in body.chunks(size).enumerate() {
        let declared = if lie_at == Some(i * size) { c.len() + 16 } else { c.len() };
        out.extend_from_slice(format!("{declared:x}\r\n").as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn a_transfer_coding_ferry_did_not_ask_for_is_never_saved_as_the_file() {
    for scheme in SCHEMES {
        for te in ["gzip", "gzip, chunked", "x-custom", "chunked, gzip", "identity"] {
            let s = RawServer::start_on(scheme, move |_| {
                let coded = vec![0x1f; 1000];
                let body = if te.ends_with("chunked") { chunked(&coded, 300, None) } else { coded };
                let mut h = vec![("Transfer-Encoding", te.to_string()), ("ETag", ETAG.into())];
                if te == "x-custom" {
                    h.push(("Content-Length", "1000".into()));
                }
                reply(200, &h, &body)
            });
            fails_fast(scheme, &s, "f", te);
        }
    }
}

#[test]
fn a_coded_answer_is_retried_on_a_new_connection_and_the_file_is_exact() {
    for scheme in SCHEMES {
        // The probe's answer is coded once; later, a ranged answer is coded once.
        let s = RawServer::start_on(scheme, |req: &RawRequest| match req.n {
            0 => reply(200, &[("Transfer-Encoding", "gzip, chunked".into())], &chunked(&[0x1f; 500], 100, None)),
            2 => {
                let (a, b) = req.range_in(SIZE).unwrap();
                let h =
                    [("Content-Range", format!("bytes {a}-{}/{SIZE}", b - 1)), ("Transfer-Encoding", "gzip".into()), ("ETag", ETAG.into())];
                reply(206, &h, &content(SEED, a, b))
            }
            _ => honest(req, SEED, SIZE, ETAG),
        });
        let l = Local::with_config(config());
        l.completes("f", Request { connections: Some(3), ..Request::file(url(&s), l.out("f")) }, &content(SEED, 0, SIZE));
    }
}

#[test]
fn two_different_content_ranges_are_a_protocol_error_and_never_a_short_file() {
    for scheme in SCHEMES {
        // The first range says 100 bytes, the second and the length say the whole resource.
        let s = RawServer::start_on(scheme, |_| {
            let h = [
                ("Content-Range", "bytes 0-99/100".to_string()),
                ("Content-Range", format!("bytes 0-{}/{SIZE}", SIZE - 1)),
                ("Content-Length", SIZE.to_string()),
                ("ETag", ETAG.into()),
            ];
            reply(206, &h, &content(SEED, 0, SIZE))
        });
        fails_fast(scheme, &s, "f", "two Content-Range values");
    }
}

#[test]
fn a_206_whose_length_disagrees_with_its_range_is_not_trusted() {
    for scheme in SCHEMES {
        // A 206 claiming 100 bytes of a 100-byte resource, with the whole resource as its body;
        // asked without Range, the server answers the whole resource.
        let s = RawServer::start_on(scheme, |req: &RawRequest| {
            if req.range().is_some() {
                let h = [("Content-Range", "bytes 0-99/100".to_string()), ("Content-Length", SIZE.to_string()), ("ETag", ETAG.into())];
                return reply(206, &h, &content(SEED, 0, SIZE));
            }
            honest(req, SEED, SIZE, ETAG)
        });
        let l = Local::with_config(config());
        l.completes("f", Request::file(url(&s), l.out("f")), &content(SEED, 0, SIZE));
        let reqs = s.requests();
        assert_eq!(reqs.last().unwrap().range(), None, "{scheme:?}: asked again without Range: {reqs:?}");
    }
}

#[test]
fn content_lengths_that_disagree_or_are_no_plain_number_are_protocol_errors() {
    for scheme in SCHEMES {
        for lengths in [&["10", "20"][..], &["5, 6"], &["+300000"], &["300 000"], &["-1"], &["99999999999999999999"]] {
            let s = RawServer::start_on(scheme, move |_| {
                let h: Vec<(&str, String)> = lengths.iter().map(|v| ("Content-Length", v.to_string())).collect();
                reply(200, &h, &content(SEED, 0, SIZE))
            });
            fails_fast(scheme, &s, "f", &format!("Content-Length {lengths:?}"));
        }
        // The same length repeated is one length.
        let s = RawServer::start_on(scheme, |_| {
            reply(200, &[("Content-Length", format!("{SIZE}, {SIZE}")), ("Content-Length", SIZE.to_string())], &content(SEED, 0, SIZE))
        });
        let l = Local::with_config(config());
        l.completes("f", Request::file(url(&s), l.out("f")), &content(SEED, 0, SIZE));
    }
}

/// A 206 for the asked range in chunked coding (chunks of 1000 bytes), lying at `lie_at` (an
/// offset into the resource) when the answer covers it.
fn chunked_206(req: &RawRequest, lie_at: Option<u64>) -> Vec<support::raw::Part> {
    let (a, b) = req.range_in(SIZE).unwrap_or((0, SIZE));
    let lie = lie_at.filter(|at| (a..b).contains(at)).map(|at| (at - a) as usize);
    let h = [("Content-Range", format!("bytes {a}-{}/{SIZE}", b - 1)), ("Transfer-Encoding", "chunked".into()), ("ETag", ETAG.into())];
    reply(206, &h, &chunked(&content(SEED, a, b), 1000, lie))
}

#[test]
fn the_bytes_of_a_chunk_whose_framing_fails_are_never_written_and_the_retry_resumes_before_them() {
    for scheme in SCHEMES {
        // The first answer lies in its 101st chunk; the retry is answered correctly.
        let s = RawServer::start_on(scheme, |req: &RawRequest| chunked_206(req, (req.n == 0).then_some(100_000)));
        let l = Local::with_config(config());
        let want = content(SEED, 0, SIZE);
        let req = Request { connections: Some(1), sha256: Some(sha(&want)), ..Request::file(url(&s), l.out("f")) };
        l.completes("f", req, &want);
        let reqs = s.requests();
        assert_eq!(reqs.len(), 2, "{scheme:?}: {reqs:?}");
        assert_eq!(reqs[1].range(), Some((100_000, Some(SIZE))), "{scheme:?}: resumed at the last verified byte");
        assert_eq!(reqs[1].header("if-range"), Some(ETAG));

        // The same for a plain stream (no length, chunked 200): it starts over, and the hash is of
        // the verified bytes only.
        let s = RawServer::start_on(scheme, |req: &RawRequest| {
            let lie = (req.n == 0).then_some(100_000);
            reply(200, &[("Transfer-Encoding", "chunked".into())], &chunked(&content(SEED, 0, SIZE), 1000, lie))
        });
        let req = Request { sha256: Some(sha(&want)), ..Request::file(url(&s), l.out("g")) };
        l.completes("g", req, &want);
        assert_eq!(s.count(), 2);
    }
}

#[test]
fn a_server_whose_chunks_always_lie_fails_typed_and_keeps_only_verified_bytes() {
    for scheme in SCHEMES {
        // From the start of the body: nothing verified, nothing kept.
        let s = RawServer::start_on(scheme, |req: &RawRequest| chunked_206(req, Some(req.range_in(SIZE).map_or(0, |r| r.0))));
        fails_fast(scheme, &s, "f", "a lying first chunk");

        // Further in: the verified bytes are kept for a resume, which a correct server then finishes.
        let honest_now = Arc::new(AtomicBool::new(false));
        let flag = honest_now.clone();
        let s = RawServer::start_on(scheme, move |req: &RawRequest| {
            let start = req.range_in(SIZE).map_or(0, |r| r.0);
            chunked_206(req, (!flag.load(SeqCst)).then_some(start + 50_000))
        });
        let l = Local::with_config(config());
        let want = content(SEED, 0, SIZE);
        let req = Request { connections: Some(1), sha256: Some(sha(&want)), ..Request::file(url(&s), l.out("f")) };
        let id = l.manager.enqueue(req).unwrap();
        let info = wait(&l.manager, id.as_str(), 60);
        assert_eq!(info.state, TaskState::Failed, "{scheme:?}: {info:?}");
        assert_eq!(info.error.as_ref().map(|e| e.code), Some(ErrorCode::ProtocolError));
        assert!(!l.out("f").exists());
        assert_eq!(s.count(), 2, "{scheme:?}");
        assert_eq!(info.bytes, 100_000, "{scheme:?}: two bodies, 50,000 verified bytes each");
        honest_now.store(true, SeqCst);
        l.manager.resume(id.as_str()).unwrap();
        let info = wait(&l.manager, id.as_str(), 60);
        assert_eq!(info.state, TaskState::Completed, "{scheme:?}: {:?}", info.error);
        assert_same(&read(&l.out("f")), &want);
        assert_eq!(s.requests()[2].range(), Some((100_000, Some(SIZE))), "{scheme:?}");
    }
}

#[test]
fn a_body_read_to_the_close_needs_close_notify_over_tls() {
    for scheme in SCHEMES {
        // No length: the body ends when the connection does. The first answer's connection is
        // cut without close_notify.
        let s = RawServer::start_on(scheme, |req: &RawRequest| {
            let mut bytes = support::raw::head(200, &[]);
            bytes.extend(content(SEED, 0, SIZE));
            let mut parts = vec![support::raw::Part::Write(bytes)];
            if req.n == 0 {
                parts.push(support::raw::Part::Cut);
            }
            parts
        });
        let l = Local::with_config(config());
        l.completes("f", Request::file(url(&s), l.out("f")), &content(SEED, 0, SIZE));
        let want = if scheme == Scheme::Https { 2 } else { 1 };
        assert_eq!(s.count(), want, "{scheme:?}: over TLS the cut answer proves no end and is fetched again");
    }
}

#[test]
fn an_empty_206_for_a_later_range_restarts_and_the_file_is_exact() {
    for scheme in SCHEMES {
        // The first request for a range past the probe's gets an empty 206 naming that range.
        let s = RawServer::start_on(scheme, |req: &RawRequest| match req.range_in(SIZE) {
            Some((a, b)) if a > 0 && req.n == 1 => {
                let h = [("Content-Range", format!("bytes {a}-{}/{SIZE}", b - 1)), ("Content-Length", "0".into()), ("ETag", ETAG.into())];
                reply(206, &h, b"")
            }
            _ => honest(req, SEED, SIZE, ETAG),
        });
        let l = Local::with_config(config());
        let want = content(SEED, 0, SIZE);
        let req = Request { connections: Some(3), sha256: Some(sha(&want)), ..Request::file(url(&s), l.out("f")) };
        l.completes("f", req, &want);
        let probes = s.requests().iter().filter(|r| r.range() == Some((0, None))).count();
        assert_eq!(probes, 2, "{scheme:?}: restarted from a new probe: {:?}", s.requests());
    }
}
