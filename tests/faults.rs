//! The engine against a fault-injecting server on 127.0.0.1. Every case ends with the exact source
//! bytes, or with a typed failure and no destination file.

mod support;

use ferry::engine::{ErrorCode, Request, TaskState};
use ferry::loopback::{Faults, Validators, HANG_UP, NEVER_ANSWER};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1 << 20;

fn completes_exactly(w: &World, name: &str, req: Request) -> ferry::engine::TaskInfo {
    let info = w.download(req);
    assert_eq!(info.state, TaskState::Completed, "{:?}\nserver log:\n{}", info.error, w.server.log().join("\n"));
    assert_same(&read(&w.out(name)), &w.server.expected());
    assert!(!part_of(&w.out(name)).exists(), "part file left behind");
    info
}

fn fails_cleanly(w: &World, name: &str, req: Request, code: ErrorCode) {
    let info = w.download(req);
    assert_eq!(info.state, TaskState::Failed, "{info:?}");
    assert_eq!(info.error.as_ref().map(|e| e.code), Some(code), "{:?}", info.error);
    assert!(!w.out(name).exists(), "a destination file appeared");
}

#[test]
fn a_healthy_server_gives_the_exact_bytes_with_any_connection_count() {
    for x in [None, Some(1), Some(3), Some(8)] {
        let w = World::new(Faults::new(3 * MIB + 7));
        let name = format!("f{x:?}");
        let info = completes_exactly(&w, &name, Request { connections: x, ..w.request(&name) });
        assert_eq!(info.bytes, 3 * MIB + 7);
        // One request per planned segment: nothing was retried or restarted.
        assert_eq!(w.server.stats().requests.load(SeqCst), u64::from(x.unwrap_or(1)), "{:?}", w.server.log());
    }
}

#[test]
fn mid_body_drops_resume_instead_of_restarting() {
    let mut f = Faults::new(6 * MIB);
    f.drop_after = Some(700_000);
    f.drop_requests = 4;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(2), ..w.request("a") });
    let sent = w.server.stats().body_bytes.load(SeqCst);
    assert!(sent < 6 * MIB + 2 * MIB, "resumed ranges should not re-fetch much: sent {sent}");
    assert!(w.server.stats().requests.load(SeqCst) >= 5);
}

#[test]
fn a_stall_past_the_idle_timeout_is_retried() {
    let mut f = Faults::new(2 * MIB);
    f.stall_after = Some(300_000);
    f.stall_requests = 1;
    f.stall_for = std::time::Duration::from_secs(60);
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(1), ..w.request("a") });
    assert!(w.server.stats().requests.load(SeqCst) >= 2);
}

#[test]
fn an_outage_that_stalls_every_connection_is_ridden_out() {
    // The first 30 answers send their head and then nothing, as when a phone loses its network
    // under a 12-connection download: every connection idles out, twice or three times, before the
    // network comes back. A one-connection task rides that out on its retry budget; one with
    // twelve connections must too.
    let mut f = Faults::new(24 * MIB);
    f.stall_after = Some(0);
    f.stall_requests = 30;
    f.stall_for = std::time::Duration::from_secs(60);
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(12), ..w.request("a") });
}

#[test]
fn busy_answers_with_retry_after_are_waited_out() {
    for status in [503u16, 429] {
        let mut f = Faults::new(MIB);
        f.busy_status = status;
        f.busy_requests = 2;
        f.retry_after_secs = 1;
        let w = World::new(f);
        completes_exactly(&w, "a", w.request("a"));
        let log = w.server.log();
        assert!(log.len() >= 3, "{log:?}");
        let ms = |l: &str| l.split("ms").next().unwrap().trim().parse::<u64>().unwrap();
        assert!(ms(&log[1]) - ms(&log[0]) >= 900, "Retry-After was not honoured: {log:?}");
    }
}

#[test]
fn a_server_ignoring_range_restarts_from_zero_after_a_drop() {
    let mut f = Faults::new(3 * MIB);
    f.ranges = false;
    f.drop_after = Some(MIB);
    f.drop_requests = 1;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(4), ..w.request("a") });
    assert_eq!(w.server.stats().max_active.load(SeqCst), 1, "no ranges means one stream");
}

#[test]
fn a_lying_content_range_is_never_written() {
    let mut f = Faults::new(4 * MIB);
    f.lie_content_range = true;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(4), ..w.request("a") });
    assert!(w.server.log().iter().any(|l| l.contains("range=-")), "expected a fallback to a plain GET");
}

#[test]
fn an_etag_changing_between_requests_never_mixes_versions() {
    let mut f = Faults::new(2 * MIB);
    f.change_every = Some(1);
    let w = World::new(f);
    let info = w.download(Request { connections: Some(4), ..w.request("a") });
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    let got = read(&w.out("a"));
    let requests = w.server.stats().requests.load(SeqCst);
    assert!((0..requests).any(|v| got == w.server.version_bytes(v)), "the file is not one consistent version");
}

#[test]
fn a_last_modified_only_server_resumes_with_if_range() {
    let mut f = Faults::new(3 * MIB);
    f.validators = Validators::LastModifiedOnly;
    f.drop_after = Some(MIB);
    f.drop_requests = 1;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(1), ..w.request("a") });
    assert!(w.server.stats().if_range_requests.load(SeqCst) >= 1);
    assert!(w.server.stats().body_bytes.load(SeqCst) < 4 * MIB);
}

#[test]
fn chunked_bodies_without_length_are_streamed_whole() {
    let mut f = Faults::new(2 * MIB + 3);
    f.chunked = true;
    f.ranges = false;
    let w = World::new(f);
    let info = completes_exactly(&w, "a", w.request("a"));
    assert_eq!(info.total, Some(2 * MIB + 3));

    let mut f = Faults::new(2 * MIB);
    f.chunked = true;
    f.ranges = false;
    f.drop_after = Some(MIB);
    f.drop_requests = 1;
    let w = World::new(f);
    completes_exactly(&w, "b", w.request("b"));
}

#[test]
fn a_content_length_longer_than_the_body_is_retried_or_fails_cleanly() {
    let mut f = Faults::new(2 * MIB);
    f.short_by = 1000;
    f.short_requests = 2;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(1), ..w.request("a") });

    let mut f = Faults::new(2 * MIB);
    f.short_by = 3 * MIB;
    f.short_requests = u64::MAX;
    let w = World::new(f);
    fails_cleanly(&w, "b", Request { connections: Some(1), ..w.request("b") }, ErrorCode::TruncatedBody);
}

#[test]
fn redirect_chains_are_followed_and_loops_fail() {
    let w = World::new(Faults::new(MIB));
    let req = Request::file(format!("{}/redirect/3", w.server.base()), w.out("a"));
    completes_exactly(&w, "a", Request { connections: Some(2), ..req });

    let req = Request::file(format!("{}/loop/a", w.server.base()), w.out("b"));
    fails_cleanly(&w, "b", req, ErrorCode::RedirectLoop);
    assert!(!part_of(&w.out("b")).exists());
}

#[test]
fn gone_resources_fail_with_not_found_and_leave_nothing() {
    let w = World::new(Faults::new(MIB));
    for code in [404, 410] {
        let name = format!("s{code}");
        let req = Request::file(format!("{}/status/{code}", w.server.base()), w.out(&name));
        fails_cleanly(&w, &name, req, ErrorCode::NotFound);
        assert!(!part_of(&w.out(&name)).exists(), "an empty part file was left");
    }
    let req = Request::file(format!("{}/status/403", w.server.base()), w.out("f"));
    fails_cleanly(&w, "f", req, ErrorCode::AccessDenied);
}

#[test]
fn a_per_connection_rate_cap_makes_the_engine_add_connections() {
    let mut f = Faults::new(24 * MIB);
    f.rate = Some(2_000_000);
    let w = World::new(f);
    completes_exactly(&w, "a", w.request("a"));
    let peak = w.server.stats().max_active.load(SeqCst);
    assert!(peak >= 4, "automatic mode should have grown past one connection, peak was {peak}");
}

#[test]
fn connections_that_do_not_pay_are_shed() {
    // A link that one connection already fills: more connections are tried, bring nothing, and are
    // ended; the two that stay fetch the rest of their ranges.
    let mut f = Faults::new(12 * MIB);
    f.link_rate = Some(6_000_000);
    let w = World::new(f);
    let done = AtomicBool::new(false);
    let samples = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            let began = Instant::now();
            while !done.load(SeqCst) && began.elapsed() < Duration::from_secs(60) {
                samples.push(w.server.stats().active.load(SeqCst));
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        completes_exactly(&w, "a", w.request("a"));
        done.store(true, SeqCst);
        sampler.join().unwrap()
    });
    let peak = w.server.stats().max_active.load(SeqCst);
    assert!(peak >= 8, "automatic mode should have tried more connections, peak was {peak}");
    let late = &samples[samples.len() / 2..];
    assert!(late.iter().all(|&n| n <= 2), "connections that did not pay were kept: {samples:?}");
}

#[test]
fn a_server_allowing_few_connections_gets_no_more() {
    // Each connection is capped, so the engine tries more; the server turns away any beyond
    // three: with 503, with 429, or by closing the connection without an answer. The download
    // must complete on the three, not wear out its retries on the others.
    for status in [503, 429, HANG_UP] {
        let mut f = Faults::new(12 * MIB);
        f.rate = Some(2_000_000);
        f.max_bodies = Some(3);
        f.busy_status = status;
        f.retry_after_secs = 1;
        let w = World::new(f);
        completes_exactly(&w, "a", w.request("a"));
        // One step to 16 connections can be refused 15 times; asking again after that is not
        // taking the hint (35 refusals before connections turned away ended for good).
        let refused = w.server.log().iter().filter(|l| l.ends_with(&format!("-> {status}"))).count();
        assert!(refused <= 15, "{status}: {refused} requests refused; the engine kept asking:\n{}", w.server.log().join("\n"));
    }
}

#[test]
fn a_server_that_never_answers_extra_connections_is_not_asked_again() {
    // Beyond three bodies the server takes the request and never answers, as a firewall dropping a
    // client's extra connections would. Those connections time out after the other three
    // delivered bytes meanwhile, so they end instead of asking again (the download failed on its
    // spent retry budget before). At 40 MiB the three still stream when the others time out; at
    // 24 MiB they have fetched all they could and the unanswered ones hold what is left.
    for size in [40 * MIB, 24 * MIB] {
        let mut f = Faults::new(size);
        f.rate = Some(2_000_000);
        f.max_bodies = Some(3);
        f.busy_status = NEVER_ANSWER;
        let w = World::new(f);
        completes_exactly(&w, "a", w.request("a"));
        let unanswered = w.server.log().iter().filter(|l| l.ends_with(&format!("-> {NEVER_ANSWER}"))).count();
        assert!(unanswered <= 15, "{unanswered} requests left unanswered; the engine kept asking:\n{}", w.server.log().join("\n"));
    }
}

#[test]
fn weak_etags_are_not_trusted_for_if_range() {
    let mut f = Faults::new(2 * MIB);
    f.validators = Validators::WeakETag;
    f.drop_after = Some(MIB / 2);
    f.drop_requests = 1;
    let w = World::new(f);
    completes_exactly(&w, "a", Request { connections: Some(2), ..w.request("a") });
    assert_eq!(w.server.stats().if_range_requests.load(SeqCst), 0);
}

#[test]
fn checksums_gate_the_destination() {
    let w = World::new(Faults::new(MIB + 1));
    let good = ferry::loopback::content::sha256(1, MIB + 1);
    completes_exactly(&w, "a", Request { sha256: Some(good.clone()), connections: Some(3), ..w.request("a") });
    fails_cleanly(&w, "b", Request { sha256: Some("ab".repeat(32)), ..w.request("b") }, ErrorCode::ChecksumMismatch);
    assert!(!part_of(&w.out("b")).exists(), "a corrupt part file was kept");
}

#[test]
fn empty_and_one_byte_resources() {
    let w = World::new(Faults::new(0));
    let info = completes_exactly(&w, "a", w.request("a"));
    assert_eq!(info.bytes, 0);
    let w = World::new(Faults::new(1));
    completes_exactly(&w, "b", Request { connections: Some(4), ..w.request("b") });
}

#[test]
fn memory_and_stream_outputs() {
    let w = World::new(Faults::new(MIB / 2));
    let m = w.manager.clone();
    let url = w.server.url();
    let bytes = ferry::engine::runtime::handle().block_on(async move { m.fetch_bytes(&url, vec![], MIB).await }).unwrap();
    assert_same(&bytes, &w.server.expected());
    assert!(w.manager.list().is_empty(), "fetch_bytes forgets its task");

    let m = w.manager.clone();
    let url = w.server.url();
    let err = ferry::engine::runtime::handle().block_on(async move { m.fetch_bytes(&url, vec![], 1000).await }).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MemoryLimitExceeded);

    struct Collect(parking_lot::Mutex<Vec<u8>>);
    impl ferry::engine::ChunkSink for Collect {
        fn on_chunk(&self, offset: u64, data: &[u8]) -> Result<(), String> {
            let mut v = self.0.lock();
            if offset == 0 {
                v.clear();
            }
            assert_eq!(offset as usize, v.len(), "chunks arrive in order");
            v.extend_from_slice(data);
            Ok(())
        }
    }
    let sink = std::sync::Arc::new(Collect(parking_lot::Mutex::new(Vec::new())));
    let info = w.download(Request { url: w.server.url(), stream: Some(sink.clone()), connections: Some(4), ..Default::default() });
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&sink.0.lock(), &w.server.expected());
}

#[test]
fn a_stream_that_refuses_data_fails_the_task() {
    struct No;
    impl ferry::engine::ChunkSink for No {
        fn on_chunk(&self, _: u64, _: &[u8]) -> Result<(), String> {
            Err("full".into())
        }
    }
    let w = World::new(Faults::new(MIB));
    let info = w.download(Request { url: w.server.url(), stream: Some(std::sync::Arc::new(No)), ..Default::default() });
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::SinkRejected);
}

#[test]
fn an_unreachable_server_fails_with_connect_failed_after_retries() {
    let w = World::new(Faults::new(1));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let req = Request::file(format!("http://127.0.0.1:{port}/x"), w.out("a"));
    fails_cleanly(&w, "a", req, ErrorCode::ConnectFailed);
}

#[test]
fn error_messages_never_leak_query_strings() {
    let w = World::new(Faults::new(1));
    let req = Request::file(format!("{}/loop/a?token=SECRET", w.server.base()), w.out("a"));
    let info = w.download(req);
    let e = info.error.expect("failed");
    assert!(!e.message.contains("SECRET"), "{}", e.message);
}

#[test]
fn fetch_errors_keep_the_http_status() {
    let w = World::new(Faults::new(1));
    let m = w.manager.clone();
    let url = format!("{}/status/404", w.server.base());
    let err = ferry::engine::runtime::handle().block_on(async move { m.fetch_bytes(&url, vec![], 1000).await }).unwrap_err();
    assert_eq!((err.code(), err.http_status()), (ErrorCode::NotFound, Some(404)));
    let info = w.download(Request::file(format!("{}/status/410", w.server.base()), w.out("x")));
    assert_eq!(info.error.unwrap().http_status, Some(410));
}

/// Many slow connections that start and finish at different times: each connection switches
/// between its buffering strategies while bytes are pending, and must never reorder them.
#[test]
fn many_connections_coming_and_going_never_reorder_bytes() {
    for x in [5u32, 8, 12] {
        let mut f = Faults::new(6 * MIB + 12345);
        f.rate = Some(1_500_000);
        let w = World::new(f);
        let name = format!("x{x}");
        completes_exactly(&w, &name, Request { connections: Some(x), ..w.request(&name) });
    }
}
