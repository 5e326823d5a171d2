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
use super::head::{head_from, ResponseHead};
use crate::engine::model::config::Config;
use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{self, HeaderMap};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod exchange;
mod pool;
#[cfg(test)]
mod tests;

use exchange::{exchange, has_token, request_bytes, Parsed};
use pool::Pool;

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
