//! The lean path for `http://` URLs when no proxy applies: a small HTTP/1.1 client of its own,
//! which does only what a download needs. A GET is written, its head read and parsed (`httparse`),
//! and the body read by the task that asked for it, straight off its pooled connection.
//!
//! Why not hyper's pooled client: there a response travels from a connection task to the caller
//! through channels, so every file woke two tasks on the runtime several times, and together with
//! reqwest's layers (redirect policy, proxy matching, parsing every URL again), which this path left
//! out earlier, that was the largest part of the instructions of a batch of small files.
//!
//! It takes `http://` URLs without credentials in them. Redirects are followed by the full
//! client's policy ([`super::transport`]); one that leads elsewhere (`https://`, credentials)
//! continues through the full client.

use super::body::{framing_of, Framing, Step};
use super::transport::head_from;
use super::verdict::ResponseHead;
use crate::engine::model::config::Config;
use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderValue};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 64;
/// How long an idle connection is kept.
const IDLE_KEEP: Duration = Duration::from_secs(60);
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Most header lines in a response head.
const MAX_HEADERS: usize = 100;
/// Most informational (1xx) responses skipped before the real one.
const MAX_INFORMATIONAL: usize = 16;
/// Smallest read size, and the first of a connection: a small file's response in one read. The
/// size doubles after a read that fills it (up to [`MAX_READ`]) and halves after two in a row
/// that used less than an eighth of it. A buffer with less room than half the read size gets more
/// (its own allocation again once the body bytes handed out from it are gone).
const FIRST_READ: usize = 32 << 10;
/// Largest read (bigger reads make bigger writes of the part file: a 1 GiB download took 20 %
/// more CPU with reads of at most 256 KiB). A download with many connections lowers it per
/// connection with [`Body::limit_reads`], so that their buffers share one budget.
const MAX_READ: usize = 512 << 10;

/// The client for plain HTTP: a pool of idle connections per `host:port`.
#[derive(Clone)]
pub struct PlainClient {
    pool: Arc<Pool>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainClient").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    reaper: AtomicBool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection and what has been read from it but not yet taken.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    read_size: usize,
    small_reads: u8,
    max_read: usize,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be opened.
    Connect {
        /// The connection attempts ran out of time.
        timed_out: bool,
        /// What went wrong.
        detail: String,
    },
    /// The exchange failed on an open connection.
    Exchange {
        /// The connection closed before the response head was complete.
        incomplete: bool,
        /// What went wrong.
        detail: String,
    },
}

/// A response whose head has been read; the body follows with [`Body::next_chunk`].
pub struct Answer {
    /// What the engine reads of the head.
    pub head: ResponseHead,
    /// The `Location` header.
    pub location: Option<String>,
    /// The body.
    pub body: Body,
}

/// A response body being read off its connection. Read to its end, the connection goes back to
/// the pool when it can carry another request; dropped before, the connection closes.
pub struct Body {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    key: String,
    pool: Weak<Pool>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("framing", &self.framing).finish_non_exhaustive()
    }
}

/// Builds the client with the connection settings of the full one (connect timeout, keep-alive
/// probes, user timeout, pool size and idle time).
pub fn client(config: &Config) -> PlainClient {
    PlainClient { pool: Arc::default(), connect_timeout: config.connect_timeout }
}

impl PlainClient {
    /// Sends a GET for `url` with `headers` and reads the response head. A pooled connection that
    /// turns out closed before any byte of the answer is replaced by a new one, once.
    pub async fn get(&self, url: &url::Url, headers: &HeaderMap) -> Result<Answer, Failure> {
        let key = authority(url);
        let request = request_bytes(url, &key, headers);
        let close_asked = headers.get_all(header::CONNECTION).iter().any(|v| has_token(v.as_bytes(), b"close"));
        if let Some(conn) = self.pool.checkout(&key) {
            match exchange(conn, &request).await {
                Ok(answer) => return Ok(self.answer(answer, key, close_asked)),
                Err((_, true)) => {}
                Err((failure, false)) => return Err(failure),
            }
        }
        let conn = self.connect(url).await?;
        match exchange(conn, &request).await {
            Ok(answer) => Ok(self.answer(answer, key, close_asked)),
            Err((failure, _)) => Err(failure),
        }
    }

    fn answer(&self, (head, location, framing, keep_alive, conn): Parsed, key: String, close_asked: bool) -> Answer {
        let empty = framing.is_none();
        let mut body = Body {
            conn: Some(conn),
            framing: framing.unwrap_or(Framing::Length(0)),
            reusable: keep_alive && !close_asked,
            key,
            pool: Arc::downgrade(&self.pool),
        };
        if empty {
            body.finish();
        }
        Answer { head, location, body }
    }

    /// Opens a connection to the URL's host, trying its addresses in turn within the connect
    /// timeout (each attempt gets an equal share of what is left).
    async fn connect(&self, url: &url::Url) -> Result<Conn, Failure> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let port = url.port_or_known_default().unwrap_or(80);
        let timed_out = |detail: String| Failure::Connect { timed_out: true, detail };
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(a)) => vec![SocketAddr::from((a, port))],
            Some(url::Host::Ipv6(a)) => vec![SocketAddr::from((a, port))],
            Some(url::Host::Domain(d)) => match tokio::time::timeout_at(deadline, tokio::net::lookup_host((d, port))).await {
                Err(_) => return Err(timed_out(format!("resolving {d} took too long"))),
                Ok(Err(e)) => return Err(Failure::Connect { timed_out: false, detail: format!("resolving {d}: {e}") }),
                Ok(Ok(a)) => a.collect(),
            },
            None => return Err(Failure::Connect { timed_out: false, detail: "the URL names no host".into() }),
        };
        let mut last = Failure::Connect { timed_out: false, detail: "the host has no address".into() };
        for (i, addr) in addrs.iter().enumerate() {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(timed_out(format!("connecting to {addr} took too long")));
            }
            let share = (deadline - now) / (addrs.len() - i) as u32;
            last = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    tune(&stream);
                    return Ok(Conn { stream, buf: BytesMut::new(), read_size: FIRST_READ, small_reads: 0, max_read: MAX_READ });
                }
                Ok(Err(e)) => Failure::Connect { timed_out: e.kind() == std::io::ErrorKind::TimedOut, detail: format!("{addr}: {e}") },
                Err(_) => timed_out(format!("connecting to {addr} took too long")),
            };
        }
        Err(last)
    }
}

/// Socket options of every connection: no Nagle delay, keep-alive probes, and (on Linux) a bound
/// on how long sent data may stay unacknowledged, so a dead peer is noticed.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(15));
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    let keepalive = keepalive.with_interval(Duration::from_secs(15)).with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(30)));
}

/// `host:port` of a URL: the pool's key, and the `Host` header without the default port.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let mut key = String::with_capacity(host.len() + 6);
    key.push_str(host);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(url.port_or_known_default().unwrap_or(80)));
    key
}

/// The request head of a GET.
fn request_bytes(url: &url::Url, key: &str, headers: &HeaderMap) -> Vec<u8> {
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut out = Vec::with_capacity(64 + target.len() + headers.len() * 32);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(if url.port().is_some() { key } else { url.host_str().unwrap_or_default() }.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The head, the `Location`, the framing (`None`: no body), whether the server keeps the connection
/// open, and the connection with the body bytes read so far.
type Parsed = (ResponseHead, Option<String>, Option<Framing>, bool, Conn);

/// Writes the request and reads the response head. On failure, also says whether the server
/// answered nothing at all (so that a reused connection may be replaced).
async fn exchange(mut conn: Conn, request: &[u8]) -> Result<Parsed, (Failure, bool)> {
    let io = |e: std::io::Error, silent: bool| (Failure::Exchange { incomplete: false, detail: e.to_string() }, silent);
    // The request goes out after what the worker already has to do: requests started together
    // leave together, and the server (on the same machine, a process that mostly sleeps) wakes
    // once for them instead of preempting the worker after each one. On loopback, written at
    // once, half the requests of a batch of small files switched the worker out for nginx; after
    // the yield, a fifth. The cost is one turn of the scheduler.
    tokio::task::yield_now().await;
    if let Err(e) = conn.stream.write_all(request).await {
        return Err(io(e, true));
    }
    let mut informational = 0;
    let mut need_read = conn.buf.is_empty();
    // Bytes known to hold no end of the head: a head trickling in is parsed once, not per read.
    let mut scanned: usize = 0;
    loop {
        if need_read {
            let silent = conn.buf.is_empty();
            match conn.read().await {
                Ok(0) => {
                    return Err((
                        Failure::Exchange { incomplete: true, detail: "the connection closed before the response".into() },
                        silent,
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(io(e, silent)),
            }
        }
        if !holds_blank_line(&conn.buf[scanned.saturating_sub(3)..]) {
            scanned = conn.buf.len();
            if scanned >= MAX_HEAD {
                return Err((Failure::Exchange { incomplete: false, detail: "the response head is too large".into() }, false));
            }
            need_read = true;
            continue;
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut slots);
        let parsed = response
            .parse(&conn.buf)
            .map_err(|e| (Failure::Exchange { incomplete: false, detail: format!("invalid HTTP response: {e}") }, false))?;
        let httparse::Status::Complete(head_len) = parsed else {
            // The size bound is the scan's above.
            scanned = conn.buf.len();
            need_read = true;
            continue;
        };
        let code = response.code.unwrap_or_default();
        if (100..200).contains(&code) && code != 101 {
            informational += 1;
            if informational > MAX_INFORMATIONAL {
                return Err((Failure::Exchange { incomplete: false, detail: "too many informational responses".into() }, false));
            }
            conn.buf.advance(head_len);
            need_read = conn.buf.is_empty();
            scanned = 0;
            continue;
        }
        if code == 101 {
            return Err((Failure::Exchange { incomplete: false, detail: "unexpected status 101".into() }, false));
        }
        let (mut te, mut cl, mut close, mut keep, mut location) = (Vec::new(), Vec::new(), false, false, None);
        for h in response.headers.iter() {
            let value = h.value;
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te.push(value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl.push(value);
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= has_token(value, b"close");
                keep |= has_token(value, b"keep-alive");
            } else if h.name.eq_ignore_ascii_case("location") && location.is_none() {
                location = std::str::from_utf8(value).ok().map(|v| v.trim().to_string());
            }
        }
        let head = head_from(code, response.headers.iter().map(|h| (h.name, h.value)));
        let framing = framing_of(code, &te, &cl).map_err(|detail| (Failure::Exchange { incomplete: false, detail }, false))?;
        let keep_alive = !close && (response.version == Some(1) || keep) && !matches!(framing, Some(Framing::Close));
        conn.buf.advance(head_len);
        return Ok((head, location, framing, keep_alive, conn));
    }
}

/// Whether `bytes` hold the empty line that ends a head (CRLF CRLF, or bare LFs).
fn holds_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

impl Conn {
    /// Reads what the socket has into the buffer; 0 at the end of the stream.
    async fn read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        self.small_reads = if n < self.read_size / 8 { self.small_reads + 1 } else { 0 };
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(self.max_read);
        } else if self.small_reads >= 2 {
            self.read_size = (self.read_size / 2).max(FIRST_READ);
            self.small_reads = 0;
        }
        Ok(n)
    }

    /// Whether an idle connection can carry a request: the peer has neither closed it nor sent
    /// anything unasked. Costs no system call while the runtime has seen no event on it.
    fn usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

impl Body {
    /// Caps the size of each read from now on (at least the first read size).
    pub fn limit_reads(&mut self, bytes: usize) {
        if let Some(conn) = self.conn.as_mut() {
            conn.max_read = bytes.clamp(FIRST_READ, MAX_READ);
            conn.read_size = conn.read_size.min(conn.max_read);
        }
    }

    /// The next data of the body; `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(None) };
            match self.framing.step(&mut conn.buf)? {
                Step::Data(d) => return Ok(Some(d)),
                Step::End => {
                    self.finish();
                    return Ok(None);
                }
                Step::NeedMore => match conn.read().await {
                    Ok(0) => {
                        self.framing.at_close()?;
                        self.reusable = false;
                        self.finish();
                        return Ok(None);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }

    /// The body is complete: the connection goes back to the pool if it can carry another request.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.reusable && conn.buf.is_empty() {
            if let Some(pool) = self.pool.upgrade() {
                pool.checkin(std::mem::take(&mut self.key), conn);
            }
        }
    }
}

impl Pool {
    fn checkout(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) < IDLE_KEEP && c.conn.usable() {
                return Some(c.conn);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, key: String, mut conn: Conn) {
        if conn.buf.capacity() > MAX_READ {
            conn.buf = BytesMut::new();
        }
        conn.max_read = MAX_READ;
        let mut idle = self.idle.lock();
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_HOST {
            return;
        }
        list.push(Idle { conn, since: Instant::now() });
        if !self.reaper.swap(true, Ordering::AcqRel) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            } else {
                self.reaper.store(false, Ordering::Release);
            }
        }
    }

    /// Closes the connections idle for too long, or closed by their peer; whether none is left.
    fn prune(&self) -> bool {
        let mut idle = self.idle.lock();
        let now = Instant::now();
        idle.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < IDLE_KEEP && c.conn.usable());
            !list.is_empty()
        });
        let empty = idle.is_empty();
        if empty {
            self.reaper.store(false, Ordering::Release);
        }
        empty
    }
}

/// Closes idle connections in the background while there are any; ends with the pool.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_KEEP / 4).await;
        match pool.upgrade() {
            Some(p) if !p.prune() => {}
            _ => return,
        }
    }
}

/// Proxy variables the full client reads for `http://` URLs.
const PROXY_VARIABLES: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

/// Whether plain HTTP may bypass the full client: no proxy is set in the environment, and the
/// platform has no system proxy settings that the full client would honour (Apple platforms and
/// Windows do).
pub fn usable() -> bool {
    usable_with(|k| std::env::var(k).ok())
}

fn usable_with(var: impl Fn(&str) -> Option<String>) -> bool {
    if cfg!(any(target_vendor = "apple", target_os = "windows")) {
        return false;
    }
    !PROXY_VARIABLES.iter().any(|k| var(k).is_some_and(|v| !v.is_empty()))
}

/// Whether the lean client takes `url`.
pub fn eligible(url: &url::Url) -> bool {
    url.scheme() == "http" && url.username().is_empty() && url.password().is_none()
}

/// Where a response redirects to, when it is a redirect the client follows (301, 302, 303, 307,
/// 308 with a `Location` that resolves against `at`). Any other response is the answer.
pub fn redirect_target(status: u16, location: Option<&str>, at: &url::Url) -> Option<url::Url> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    at.join(location?.trim()).ok()
}

/// Headers a request must not carry to another origin.
const CREDENTIALS: [&str; 5] = ["authorization", "cookie", "cookie2", "proxy-authorization", "www-authenticate"];

/// Adjusts the headers for the next hop of a redirect, as the full client does: credentials stay
/// with their origin (scheme, host and port), and the hop names where it came from.
pub fn prepare_redirect(headers: &mut HeaderMap, from: &url::Url, next: &url::Url) {
    let cross_origin = next.host_str() != from.host_str()
        || next.port_or_known_default() != from.port_or_known_default()
        || next.scheme() != from.scheme();
    if cross_origin {
        for name in CREDENTIALS {
            headers.remove(name);
        }
    }
    let mut referer = from.clone();
    let _ = referer.set_username("");
    let _ = referer.set_password(None);
    referer.set_fragment(None);
    if let Ok(v) = HeaderValue::from_str(referer.as_str()) {
        headers.insert(header::REFERER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    /// A server on loopback that answers the `i`-th request of every connection with
    /// `answer(i)`: the bytes to send, and whether to close the connection afterwards. Returns its
    /// URL and a counter of accepted connections.
    async fn server(answer: fn(usize) -> (Vec<u8>, bool)) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = url(&format!("http://{}/f", listener.local_addr().unwrap()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for i in 0.. {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut b = [0u8; 1024];
                            match s.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&b[..n]),
                            }
                        }
                        let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        seen.drain(..end);
                        let (bytes, close) = answer(i);
                        if s.write_all(&bytes).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (at, accepted)
    }

    fn test_client() -> PlainClient {
        client(&Config::default())
    }

    /// GETs `at` and reads the whole body.
    async fn fetch(c: &PlainClient, at: &url::Url) -> Result<(u16, Vec<u8>), String> {
        let mut answer = c.get(at, &HeaderMap::new()).await.map_err(|e| format!("{e:?}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = answer.body.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok((answer.head.status, body))
    }

    #[tokio::test]
    async fn a_kept_alive_connection_carries_every_request_whatever_the_framing() {
        let (at, accepted) = server(|i| match i % 3 {
            0 => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
            1 => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(), false),
            _ => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
        })
        .await;
        let c = test_client();
        for _ in 0..3 {
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"hello".to_vec()));
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"abc".to_vec()));
            assert_eq!(fetch(&c, &at).await.unwrap(), (204, Vec::new()), "the 100 is skipped");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_replaced_without_an_error() {
        // Keep-alive announced, then closed anyway (an idle timeout on the server's side).
        let (at, accepted) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true)).await;
        let c = test_client();
        for _ in 0..4 {
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        // The same without the pause: the closed connection is found out by the exchange itself.
        for _ in 0..4 {
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
        }
    }

    #[tokio::test]
    async fn connections_are_not_reused_after_close_http_1_0_or_a_body_read_to_the_close() {
        for answer in [
            (|_| (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)) as fn(usize) -> (Vec<u8>, bool),
            |_| (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false),
            |_| (b"HTTP/1.1 200 OK\r\n\r\nok".to_vec(), true),
        ] {
            let (at, accepted) = server(answer).await;
            let c = test_client();
            for _ in 0..3 {
                assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 3);
        }
        let (at, accepted) =
            server(|_| (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)).await;
        let c = test_client();
        for _ in 0..3 {
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "HTTP/1.0 with keep-alive is reused");
    }

    #[tokio::test]
    async fn a_short_body_or_a_bad_head_is_an_error_and_the_connection_is_dropped() {
        let (at, _) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(), true)).await;
        assert!(fetch(&test_client(), &at).await.unwrap_err().contains("5 bytes before the end"));
        let (at, _) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), false)).await;
        assert!(fetch(&test_client(), &at).await.unwrap_err().contains("conflicting Content-Length"));
        let (at, _) = server(|_| (b"HTTP/1.1 2000 Huh\r\n\r\n".to_vec(), false)).await;
        assert!(fetch(&test_client(), &at).await.unwrap_err().contains("invalid HTTP response"));
        let (at, _) = server(|_| (Vec::new(), true)).await;
        assert!(fetch(&test_client(), &at).await.unwrap_err().contains("incomplete: true"));
    }

    #[tokio::test]
    async fn a_head_arriving_byte_by_byte_is_read_whole() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = url(&format!("http://{}/f", listener.local_addr().unwrap()));
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            let wire = b"HTTP/1.1 200 OK\r\nX-Pad: 0123456789\r\nContent-Length: 3\r\n\r\nabc";
            for byte in wire {
                if s.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let _ = s.read(&mut b).await;
        });
        assert_eq!(fetch(&test_client(), &at).await.unwrap(), (200, b"abc".to_vec()));
    }

    #[test]
    fn the_request_head_names_the_host_and_the_target() {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
        let u = url("http://example.com/a%20b?x=1#frag");
        let wire = String::from_utf8(request_bytes(&u, &authority(&u), &h)).unwrap();
        assert_eq!(wire, "GET /a%20b?x=1 HTTP/1.1\r\nhost: example.com\r\nrange: bytes=0-\r\n\r\n");
        let u = url("http://[::1]:8080");
        let wire = String::from_utf8(request_bytes(&u, &authority(&u), &HeaderMap::new())).unwrap();
        assert_eq!(wire, "GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n");
        h.insert(header::HOST, HeaderValue::from_static("other"));
        let u = url("http://example.com/");
        assert!(
            String::from_utf8(request_bytes(&u, &authority(&u), &h)).unwrap().contains("\r\nhost: other\r\n"),
            "the caller's Host wins"
        );
    }

    #[test]
    fn only_plain_urls_without_credentials_take_the_lean_client() {
        assert!(eligible(&url("http://h/f")));
        assert!(!eligible(&url("https://h/f")));
        assert!(!eligible(&url("http://u@h/f")));
        assert!(!eligible(&url("http://u:p@h/f")));
    }

    #[test]
    fn a_proxy_in_the_environment_sends_plain_http_through_the_full_client() {
        let apple_or_windows = cfg!(any(target_vendor = "apple", target_os = "windows"));
        assert_eq!(usable_with(|_| None), !apple_or_windows);
        for var in PROXY_VARIABLES {
            assert!(!usable_with(|k| (k == var).then(|| "http://proxy:3128".into())), "{var}");
        }
        assert_eq!(usable_with(|_| Some(String::new())), !apple_or_windows, "an empty variable sets no proxy");
    }

    #[test]
    fn only_followed_statuses_with_a_resolvable_location_redirect() {
        let at = url("http://h/a/b");
        assert_eq!(redirect_target(302, None, &at), None, "no Location");
        for code in [301, 302, 303, 307, 308] {
            assert_eq!(redirect_target(code, Some(" ../c "), &at), Some(url("http://h/c")), "{code}");
        }
        for code in [300, 304, 305, 200] {
            assert_eq!(redirect_target(code, Some("../c"), &at), None, "{code}");
        }
    }

    #[test]
    fn credentials_stay_with_their_origin_and_the_referer_carries_none() {
        let from = url("http://u:p@h:8080/a?q=1#frag");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::COOKIE, HeaderValue::from_static("s=1"));
        prepare_redirect(&mut h, &from, &url("http://h:8080/b"));
        assert!(h.contains_key(header::AUTHORIZATION) && h.contains_key(header::COOKIE), "same origin keeps them");
        assert_eq!(h.get(header::REFERER).unwrap(), "http://h:8080/a?q=1");
        for other in ["http://h:8081/b", "http://g:8080/b", "https://h:8080/b"] {
            let mut h2 = h.clone();
            prepare_redirect(&mut h2, &from, &url(other));
            assert!(!h2.contains_key(header::AUTHORIZATION) && !h2.contains_key(header::COOKIE), "{other}");
        }
    }
}
