//! The resource changes under the download: it shrinks (416 on a resumed range), its length
//! changes between the probe and the other connections, its validator disappears from later
//! answers, its Last-Modified date moves, `If-Range` is answered with the new version, it has no
//! validator and changes with every answer. The file must always be exactly one version: the one
//! served last, or with no validator the one answer it came from.

mod support;

use ferry::engine::{Request, TaskState};
use ferry::loopback::{Faults, Validators};
use std::time::Duration;
use support::raw::{content, head, honest, reply, Part, RawRequest, RawServer};
use support::*;

const SIZE: u64 = 600_000;

/// Waits until the task has some bytes, pauses it and waits until it is paused.
fn pause_after(m: &ferry::engine::Manager, id: &str, bytes: u64) {
    until(30, "bytes before pausing", || m.status(id).unwrap().bytes >= bytes);
    m.pause(id).unwrap();
    until(30, "paused", || m.status(id).unwrap().state == TaskState::Paused);
}

/// Downloads over `connections`, pauses after `paused_at` bytes, shrinks the resource to
/// `new_size` (Last-Modified only: the date does not change with the length, so If-Range still
/// matches), resumes, and checks that the file is exactly the new version. Returns the server's
/// log of the resumed run.
fn shrink_while_paused(connections: u32, paused_at: u64, new_size: u64) -> Vec<String> {
    let mut f = Faults::new(8 << 20);
    f.validators = Validators::LastModifiedOnly;
    f.rate = Some(1_000_000);
    let w = World::new(f);
    let id = w.manager.enqueue(Request { connections: Some(connections), ..w.request("a") }).unwrap();
    pause_after(&w.manager, id.as_str(), paused_at);
    w.server.set(|f| {
        f.size = new_size;
        f.rate = None;
    });
    let before = w.server.log().len();
    w.manager.resume(id.as_str()).unwrap();
    let info = wait(&w.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}\n{}", info.error, w.server.log().join("\n"));
    assert_same(&read(&w.out("a")), &w.server.expected());
    w.server.log().split_off(before)
}

#[test]
fn a_resource_that_shrank_below_the_resumed_offset_is_answered_416_and_restarts_cleanly() {
    // The resumed range now starts beyond the end: the server answers 416.
    let after = shrink_while_paused(1, 300_000, 100_000);
    assert!(after.first().is_some_and(|l| l.ends_with("416")), "{after:?}");
}

#[test]
fn a_resource_that_shrank_under_several_connections_restarts_cleanly() {
    // Which answer tells first is a race: a resumed range still below the new end gets a 206
    // whose Content-Range names the new length, one beyond it gets 416. Either must restart.
    shrink_while_paused(4, 400_000, 3 << 20);
}

#[test]
fn a_length_that_changes_after_the_probe_restarts_with_the_new_length() {
    // Same ETag throughout (a broken server), but the length grows after the probe.
    let s = RawServer::start(|req: &RawRequest| {
        let size = if req.n == 0 { SIZE } else { SIZE + 1000 };
        honest(req, 9, size, "\"same\"")
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(4), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(9, 0, SIZE + 1000));
}

#[test]
fn a_206_without_the_validator_is_not_trusted() {
    // The probe carries an ETag; later 206s drop it and ignore If-Range, serving a new version of
    // the same length. Only the missing ETag tells.
    let s = RawServer::start(|req: &RawRequest| {
        let seed = if req.n == 0 { 1 } else { 2 };
        match req.range_in(SIZE) {
            Some((0, e)) if req.range() == Some((0, None)) => reply(
                206,
                &[
                    ("Content-Range", format!("bytes 0-{}/{SIZE}", e - 1)),
                    ("Content-Length", e.to_string()),
                    ("ETag", format!("\"v{seed}\"")),
                ],
                &content(seed, 0, e),
            ),
            Some((a, e)) => reply(
                206,
                &[("Content-Range", format!("bytes {a}-{}/{SIZE}", e - 1)), ("Content-Length", (e - a).to_string())],
                &content(seed, a, e),
            ),
            None => honest(req, seed, SIZE, &format!("\"v{seed}\"")),
        }
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(4), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(2, 0, SIZE));
}

#[test]
fn a_last_modified_date_that_moves_restarts_the_download() {
    // Last-Modified only; the server ignores If-Range but sends the new date with the new version.
    let s = RawServer::start(|req: &RawRequest| {
        let v = if req.n == 0 { 1 } else { 2 };
        let lm = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + v * 60));
        let (a, e, status) = match req.range_in(SIZE) {
            Some((a, e)) => (a, e, 206),
            None => (0, SIZE, 200),
        };
        reply(
            status,
            &[
                ("Content-Range", format!("bytes {a}-{}/{SIZE}", e - 1)),
                ("Content-Length", (e - a).to_string()),
                ("Last-Modified", lm),
                // A date makes Last-Modified a validator (rule 3): without one, the download is a
                // single answer and never sees the date move.
                ("Date", httpdate::fmt_http_date(std::time::SystemTime::now())),
            ],
            &content(v, a, e),
        )
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(4), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(2, 0, SIZE));
}

#[test]
fn a_200_to_if_range_mid_download_restarts_with_the_new_version() {
    // The resource changes after the probe and one more request; If-Range is honoured (200 with
    // the whole new version).
    let s = RawServer::start(|req: &RawRequest| {
        let v = if req.n < 2 { 1 } else { 2 };
        let mut parts = honest(req, v, SIZE, &format!("\"v{v}\""));
        parts.insert(0, Part::Sleep(Duration::from_millis(20)));
        parts
    });
    let l = Local::new();
    l.completes("f", Request { connections: Some(4), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(2, 0, SIZE));
    assert!(s.requests().iter().filter(|r| r.range() == Some((0, None))).count() >= 2, "expected a second probe");
}

#[test]
fn a_last_modified_in_the_second_it_was_served_is_not_a_validator_across_runs() {
    // Last-Modified equals Date: the file may change again within that second and keep its date.
    // The content changes while the download is paused; the date does not.
    const DATE: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    let version = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    let v = version.clone();
    let s = RawServer::start(move |req: &RawRequest| {
        let seed = v.load(std::sync::atomic::Ordering::SeqCst);
        let if_range_ok = req.header("if-range").is_none_or(|d| d == DATE);
        let (a, e, status) = match req.range_in(SIZE) {
            Some((a, e)) if if_range_ok => (a, e, 206),
            _ => (0, SIZE, 200),
        };
        let mut parts = vec![Part::Write(head(
            status,
            &[
                ("Content-Range", format!("bytes {a}-{}/{SIZE}", e - 1)),
                ("Content-Length", (e - a).to_string()),
                ("Last-Modified", DATE.into()),
                ("Date", DATE.into()),
            ],
        ))];
        // Slowly: 30 pieces, 30 ms apart.
        let body = content(seed, a, e);
        for piece in body.chunks(body.len().div_ceil(30)) {
            parts.push(Part::Write(piece.to_vec()));
            parts.push(Part::Sleep(Duration::from_millis(30)));
        }
        parts
    });
    let l = Local::new();
    let id = l.manager.enqueue(Request { connections: Some(2), ..Request::file(format!("{}/f", s.base()), l.out("f")) }).unwrap();
    pause_after(&l.manager, id.as_str(), 50_000);
    version.store(2, std::sync::atomic::Ordering::SeqCst);
    l.manager.resume(id.as_str()).unwrap();
    let info = wait(&l.manager, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&l.out("f")), &content(2, 0, SIZE));
}

#[test]
fn without_a_validator_the_file_is_one_answer_whole() {
    // No ETag, no Last-Modified, and new bytes in every answer: ranges of several answers could
    // only be stitched blindly (the file used to be pieced together from up to eight versions).
    let s = RawServer::start(|req: &RawRequest| honest(req, 10 + req.n, SIZE, ""));
    let l = Local::new();
    l.completes("f", Request { connections: Some(8), ..Request::file(format!("{}/f", s.base()), l.out("f")) }, &content(10, 0, SIZE));
    assert_eq!(s.count(), 1, "one answer");

    // The answer breaks off half-way: the retry starts over and keeps none of the first version.
    let s = RawServer::start(|req: &RawRequest| {
        if req.n == 0 {
            let headers = [("Content-Range", format!("bytes 0-{}/{SIZE}", SIZE - 1)), ("Content-Length", SIZE.to_string())];
            vec![Part::Write(head(206, &headers)), Part::Write(content(1, 0, SIZE / 2))]
        } else {
            honest(req, 2, SIZE, "")
        }
    });
    l.completes("g", Request { connections: Some(8), ..Request::file(format!("{}/f", s.base()), l.out("g")) }, &content(2, 0, SIZE));
    for r in s.requests().iter().skip(1) {
        assert!(r.range().is_none_or(|(from, _)| from == 0), "no request resumed mid-way: {r:?}");
    }
}
