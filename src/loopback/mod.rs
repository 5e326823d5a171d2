//! A loopback HTTP/1.1 server with fault injection, for `ferry demo`, `ferry serve`, the Rust
//! integration tests and the Swift, Kotlin and Python test suites. It binds 127.0.0.1 only.
//!
//! It serves generated content (see [`content`]) at `/file` (and `/file/<any name>`), with switchable behaviour: ranges
//! honoured or ignored, strong/weak/no validators, validators that change between requests,
//! mid-body drops, stalls, 503/429 with `Retry-After`, lying `Content-Range`, chunked bodies without
//! length, bodies shorter than their `Content-Length`, a per-connection rate cap. Other routes:
//! `/redirect/N` (a chain of N redirects to `/file`), `/loop/a` ↔ `/loop/b`, `/status/CODE`, and
//! `/stats` (the counters below, as JSON).
//! It counts the body bytes it sent, so tests can measure what was downloaded twice.

pub mod content;
mod respond;

use respond::{accept_loop, version_seed};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which validator the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validators {
    /// Strong ETag and Last-Modified.
    Both,
    /// Only a strong ETag.
    ETagOnly,
    /// Only Last-Modified.
    LastModifiedOnly,
    /// A weak ETag only.
    WeakETag,
    /// None.
    None,
}

/// A `busy_status` that closes the connection without any answer, as servers and proxies that
/// limit clients do (nginx's `limit_conn_status 444`).
pub const HANG_UP: u16 = 0;
/// A `busy_status` that never answers: the request waits until the client gives up, as behind a
/// firewall that drops a client's extra connections.
pub const NEVER_ANSWER: u16 = 1;

/// Switchable behaviour of the server. Counters ("first n requests") count requests to `/file`.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Content length.
    pub size: u64,
    /// Content seed.
    pub seed: u64,
    /// Honour `Range` (else always 200 with the whole body).
    pub ranges: bool,
    /// Validators sent.
    pub validators: Validators,
    /// Change the resource (content and validators) every n requests.
    pub change_every: Option<u64>,
    /// Drop the connection after this many body bytes, for the first `drop_requests` requests.
    pub drop_after: Option<u64>,
    /// See `drop_after`.
    pub drop_requests: u64,
    /// Stop sending (but keep the connection open) after this many body bytes, for the first
    /// `stall_requests` requests, for `stall_for`.
    pub stall_after: Option<u64>,
    /// See `stall_after`.
    pub stall_requests: u64,
    /// See `stall_after`.
    pub stall_for: Duration,
    /// Answer the first n requests with this status and `Retry-After` (503 or 429), or, instead of
    /// a status, [`HANG_UP`] or [`NEVER_ANSWER`].
    pub busy_status: u16,
    /// See `busy_status`.
    pub busy_requests: u64,
    /// Answer `busy_status` to requests arriving while this many bodies are being sent (a server
    /// that allows each client a few connections).
    pub max_bodies: Option<u64>,
    /// `Retry-After` seconds sent with busy answers.
    pub retry_after_secs: u64,
    /// Send a `Content-Range` whose start is off by one (body unchanged) on ranged answers that do
    /// not start at 0.
    pub lie_content_range: bool,
    /// Send 200 bodies chunked, without `Content-Length`.
    pub chunked: bool,
    /// Announce this many bytes more than the body has, for the first `short_requests` requests.
    pub short_by: u64,
    /// See `short_by`.
    pub short_requests: u64,
    /// Per-connection rate cap in bytes per second.
    pub rate: Option<u64>,
    /// Rate cap in bytes per second shared by all connections (a link that one connection may
    /// already fill).
    pub link_rate: Option<u64>,
    /// Extra latency before each response head.
    pub latency: Duration,
}

impl Faults {
    /// A well-behaved server for `size` bytes.
    pub fn new(size: u64) -> Self {
        Faults {
            size,
            seed: 1,
            ranges: true,
            validators: Validators::Both,
            change_every: None,
            drop_after: None,
            drop_requests: 0,
            stall_after: None,
            stall_requests: 0,
            stall_for: Duration::from_secs(3600),
            busy_status: 503,
            busy_requests: 0,
            max_bodies: None,
            retry_after_secs: 1,
            lie_content_range: false,
            chunked: false,
            short_by: 0,
            short_requests: 0,
            rate: None,
            link_rate: None,
            latency: Duration::ZERO,
        }
    }
}

/// Counters kept by the server.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests to `/file`.
    pub requests: AtomicU64,
    /// Body bytes of `/file` handed to the socket.
    pub body_bytes: AtomicU64,
    /// Ranged requests (`Range` header present).
    pub ranged_requests: AtomicU64,
    /// Requests that carried `If-Range`.
    pub if_range_requests: AtomicU64,
    /// Bodies being sent right now.
    pub active: AtomicU64,
    /// Most bodies sent at the same time.
    pub max_active: AtomicU64,
}

struct ActiveGuard(Arc<State>);

impl ActiveGuard {
    fn new(state: Arc<State>) -> Self {
        let now = state.stats.active.fetch_add(1, Ordering::SeqCst) + 1;
        state.stats.max_active.fetch_max(now, Ordering::SeqCst);
        ActiveGuard(state)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct State {
    faults: Mutex<Faults>,
    stats: Stats,
    started: Instant,
    log: Mutex<Vec<String>>,
    /// When the shared link is free to send again (`Faults::link_rate`).
    link_free_at: Mutex<Instant>,
}

/// A running server; stops when dropped.
pub struct LoopbackServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

impl std::fmt::Debug for LoopbackServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackServer").field("addr", &self.addr).finish()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl LoopbackServer {
    /// Starts a server on 127.0.0.1 (port 0 = any) on the given runtime.
    pub fn start(rt: &tokio::runtime::Handle, port: u16, faults: Faults) -> std::io::Result<LoopbackServer> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let state = Arc::new(State {
            faults: Mutex::new(faults),
            stats: Stats::default(),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            link_free_at: Mutex::new(Instant::now()),
        });
        let stop = CancellationToken::new();
        let (s, st) = (state.clone(), stop.clone());
        let listener = {
            let _g = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        rt.spawn(async move { accept_loop(listener, s, st).await });
        Ok(LoopbackServer { addr, state, stop })
    }

    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// URL of the served file.
    pub fn url(&self) -> String {
        format!("{}/file", self.base())
    }

    /// The file's URL signed to expire `valid_for` from now: after that it answers 403, as a CDN's
    /// signed URLs and expiring tokens do.
    pub fn signed_url(&self, valid_for: Duration) -> String {
        format!("{}/file?{}", self.base(), signed_query(valid_for))
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the behaviour.
    pub fn set(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.state.faults.lock());
    }

    /// Current behaviour.
    pub fn faults(&self) -> Faults {
        self.state.faults.lock().clone()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// One line per `/file` request: method, range, if-range, status.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().clone()
    }

    /// The bytes of the current version of the file.
    pub fn expected(&self) -> Vec<u8> {
        let f = self.faults();
        content::bytes(version_seed(&f, self.state.stats.requests.load(Ordering::SeqCst).saturating_sub(1)), f.size)
    }

    /// The content of version `v` (versions change with `change_every`).
    pub fn version_bytes(&self, v: u64) -> Vec<u8> {
        let f = self.faults();
        content::bytes(f.seed.wrapping_add(v), f.size)
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// The query of a URL that expires `valid_for` from now.
pub fn signed_query(valid_for: Duration) -> String {
    format!("expires={}", unix_ms() + valid_for.as_millis())
}
