//! The loopback test server, exported: app developers unit-test the code that drives Ferry
//! (progress UI, retry buttons, what a 404 or a dropped connection does) in-process, on
//! 127.0.0.1, with the faults the engine's own tests use. Ferry's Swift, Kotlin and Python suites
//! use it too.
//!
//! The surface is always exported, so the generated bindings are the same for every build; the
//! server itself is in builds with the `testing` cargo feature (on by default, and in the
//! XCFramework and the Python wheel). Without it, starting a server fails with an internal error
//! saying so. Conversions only; the server is `crate::loopback`.

// Each method has a body per build, one of them behind `cfg`: its early `return` is the clearest
// way to write that.
#![allow(clippy::needless_return)]

use super::error::DownloadError;
#[cfg(feature = "testing")]
use crate::engine::runtime;
#[cfg(feature = "testing")]
use crate::loopback::{content, Faults, LoopbackServer, Validators};
#[cfg(feature = "testing")]
use std::sync::atomic::Ordering;
use std::sync::Arc;
#[cfg(feature = "testing")]
use std::time::Duration;

/// Which validators the test server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum TestValidators {
    /// A strong ETag and Last-Modified.
    Both,
    /// A strong ETag only.
    ETagOnly,
    /// Last-Modified only.
    LastModifiedOnly,
    /// A weak ETag only (no resume is safe).
    WeakETag,
    /// None.
    None,
}

/// How the test server behaves. Counters ("the first n requests") count requests to the file.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TestServerConfig {
    /// Size of the served file.
    #[uniffi(default = 1048576)]
    pub size: u64,
    /// Content seed: another seed, other bytes (and validators).
    #[uniffi(default = 1)]
    pub seed: u64,
    /// Honour `Range` (else always a 200 with the whole body).
    #[uniffi(default = true)]
    pub ranges: bool,
    /// Which validators it sends (`None`: both a strong ETag and Last-Modified).
    #[uniffi(default = None)]
    pub validators: Option<TestValidators>,
    /// Per-connection rate cap, bytes per second.
    #[uniffi(default = None)]
    pub rate: Option<u64>,
    /// Extra latency before each response head, in milliseconds.
    #[uniffi(default = 0)]
    pub latency_ms: u64,
    /// The resource changes (content and validators) every n requests.
    #[uniffi(default = None)]
    pub change_every: Option<u64>,
    /// Drop the connection after this many body bytes, for the first `drop_requests` requests.
    #[uniffi(default = None)]
    pub drop_after: Option<u64>,
    /// See `drop_after`.
    #[uniffi(default = 0)]
    pub drop_requests: u64,
    /// Stop sending (connection kept open) after this many body bytes, for the first
    /// `stall_requests` requests, for `stall_ms`.
    #[uniffi(default = None)]
    pub stall_after: Option<u64>,
    /// See `stall_after`.
    #[uniffi(default = 0)]
    pub stall_requests: u64,
    /// See `stall_after`.
    #[uniffi(default = 3600000)]
    pub stall_ms: u64,
    /// Answer the first `busy_requests` requests with this status (503 or 429) and `Retry-After`.
    #[uniffi(default = 503)]
    pub busy_status: u16,
    /// See `busy_status`.
    #[uniffi(default = 0)]
    pub busy_requests: u64,
    /// `Retry-After` seconds sent with busy answers.
    #[uniffi(default = 1)]
    pub retry_after_secs: u64,
    /// Send whole bodies chunked, without `Content-Length`.
    #[uniffi(default = false)]
    pub chunked: bool,
    /// Announce this many bytes more than the body has, for the first `short_requests` requests.
    #[uniffi(default = 0)]
    pub short_by: u64,
    /// See `short_by`.
    #[uniffi(default = 0)]
    pub short_requests: u64,
}

impl Default for TestServerConfig {
    fn default() -> Self {
        TestServerConfig {
            size: 1 << 20,
            seed: 1,
            ranges: true,
            validators: None,
            rate: None,
            latency_ms: 0,
            change_every: None,
            drop_after: None,
            drop_requests: 0,
            stall_after: None,
            stall_requests: 0,
            stall_ms: 3_600_000,
            busy_status: 503,
            busy_requests: 0,
            retry_after_secs: 1,
            chunked: false,
            short_by: 0,
            short_requests: 0,
        }
    }
}

#[cfg(feature = "testing")]
impl TestServerConfig {
    fn apply(&self, f: &mut Faults) {
        f.size = self.size;
        f.seed = self.seed;
        f.ranges = self.ranges;
        f.validators = match self.validators.unwrap_or(TestValidators::Both) {
            TestValidators::Both => Validators::Both,
            TestValidators::ETagOnly => Validators::ETagOnly,
            TestValidators::LastModifiedOnly => Validators::LastModifiedOnly,
            TestValidators::WeakETag => Validators::WeakETag,
            TestValidators::None => Validators::None,
        };
        f.rate = self.rate;
        f.latency = Duration::from_millis(self.latency_ms);
        f.change_every = self.change_every;
        f.drop_after = self.drop_after;
        f.drop_requests = self.drop_requests;
        f.stall_after = self.stall_after;
        f.stall_requests = self.stall_requests;
        f.stall_for = Duration::from_millis(self.stall_ms);
        f.busy_status = self.busy_status;
        f.busy_requests = self.busy_requests;
        f.retry_after_secs = self.retry_after_secs;
        f.chunked = self.chunked;
        f.short_by = self.short_by;
        f.short_requests = self.short_requests;
    }
}

/// What the test server has sent.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TestServerStats {
    /// Requests for the file.
    pub requests: u64,
    /// Body bytes of the file handed to the network.
    pub body_bytes: u64,
    /// Requests with `Range`.
    pub ranged_requests: u64,
    /// Requests with `If-Range`.
    pub if_range_requests: u64,
    /// Bodies being sent right now.
    pub active: u64,
    /// Most bodies sent at once.
    pub max_active: u64,
}

/// An HTTP/1.1 server on 127.0.0.1 serving one generated file at `url()` (and at
/// `url_named(name)`), with switchable faults; also `status_url(code)` (an error page) and
/// `redirect_url(hops)`. It stops when dropped (or with `stop()`).
#[derive(uniffi::Object)]
pub struct TestServer {
    #[cfg(feature = "testing")]
    inner: LoopbackServer,
    #[cfg(not(feature = "testing"))]
    _none: (),
}

#[cfg(not(feature = "testing"))]
fn unavailable() -> DownloadError {
    crate::engine::Error::internal("this build of Ferry has no test server (cargo feature `testing`)").into()
}

#[uniffi::export]
impl TestServer {
    /// Starts a server on a free port of 127.0.0.1.
    #[uniffi::constructor(default(config = None))]
    pub fn start(config: Option<TestServerConfig>) -> Result<Arc<Self>, DownloadError> {
        #[cfg(feature = "testing")]
        {
            let mut faults = Faults::new(0);
            config.unwrap_or_default().apply(&mut faults);
            let inner = LoopbackServer::start(runtime::handle(), 0, faults)
                .map_err(|e| crate::engine::Error::io("starting the test server", &e))?;
            Ok(Arc::new(TestServer { inner }))
        }
        #[cfg(not(feature = "testing"))]
        {
            let _ = config;
            Err(unavailable())
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        #[cfg(feature = "testing")]
        return self.inner.base();
        #[cfg(not(feature = "testing"))]
        String::new()
    }

    /// The file's URL.
    pub fn url(&self) -> String {
        format!("{}/file", self.base())
    }

    /// The file's URL, ending in `name` (the CLI and seed APIs name files after the URL).
    pub fn url_named(&self, name: String) -> String {
        format!("{}/file/{}", self.base(), name)
    }

    /// The file's URL signed to expire `valid_ms` milliseconds from now: after that the server
    /// answers it with 403, as a CDN's signed URLs do (for credential refresh tests).
    pub fn signed_url(&self, valid_ms: u64) -> String {
        #[cfg(feature = "testing")]
        return format!("{}/file?{}", self.base(), crate::loopback::signed_query(std::time::Duration::from_millis(valid_ms)));
        #[cfg(not(feature = "testing"))]
        {
            let _ = valid_ms;
            String::new()
        }
    }

    /// A page answered with `code` (404, 503, ...).
    pub fn status_url(&self, code: u16) -> String {
        format!("{}/status/{code}", self.base())
    }

    /// A chain of `hops` redirects ending at the file.
    pub fn redirect_url(&self, hops: u32) -> String {
        format!("{}/redirect/{hops}", self.base())
    }

    /// The file's current length.
    pub fn size(&self) -> u64 {
        #[cfg(feature = "testing")]
        return self.inner.faults().size;
        #[cfg(not(feature = "testing"))]
        0
    }

    /// SHA-256 (lower-case hex) of the file as the server serves it now.
    pub fn sha256(&self) -> String {
        #[cfg(feature = "testing")]
        {
            let f = self.inner.faults();
            return if f.change_every.is_some() { hex_sha(&self.inner.expected()) } else { content::sha256(f.seed, f.size) };
        }
        #[cfg(not(feature = "testing"))]
        String::new()
    }

    /// The file's bytes as the server serves them now.
    pub fn content(&self) -> Vec<u8> {
        #[cfg(feature = "testing")]
        return self.inner.expected();
        #[cfg(not(feature = "testing"))]
        Vec::new()
    }

    /// Changes the server's behaviour from the next request on.
    pub fn set_config(&self, config: TestServerConfig) {
        #[cfg(feature = "testing")]
        self.inner.set(|f| config.apply(f));
        #[cfg(not(feature = "testing"))]
        let _ = config;
    }

    /// What the server has sent so far.
    pub fn stats(&self) -> TestServerStats {
        #[cfg(feature = "testing")]
        {
            let s = self.inner.stats();
            let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
            return TestServerStats {
                requests: load(&s.requests),
                body_bytes: load(&s.body_bytes),
                ranged_requests: load(&s.ranged_requests),
                if_range_requests: load(&s.if_range_requests),
                active: load(&s.active),
                max_active: load(&s.max_active),
            };
        }
        #[cfg(not(feature = "testing"))]
        TestServerStats { requests: 0, body_bytes: 0, ranged_requests: 0, if_range_requests: 0, active: 0, max_active: 0 }
    }

    /// One line per request for the file: its range, `If-Range`, and the status answered.
    pub fn log(&self) -> Vec<String> {
        #[cfg(feature = "testing")]
        return self.inner.log();
        #[cfg(not(feature = "testing"))]
        Vec::new()
    }
}

#[cfg(feature = "testing")]
fn hex_sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
