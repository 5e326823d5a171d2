//! Ferry's HTTP/1.1 client, the one path for `http://` and `https://`: it writes a GET, reads and
//! judges the response head ([`super::head`]), and the task that asked reads the body straight
//! off its connection ([`super::body`] decides where it ends and how much of it is verified).
//! Connections are plain TCP or TLS (`tokio-rustls` with the configs of [`super::tls`]), directly
//! or through an HTTP proxy ([`super::proxy`]: absolute-form requests for `http://`, a `CONNECT`
//! tunnel for `https://`), and idle ones are pooled per scheme, host and port.
//!
//! Why not hyper: its pooled client (through reqwest) runs every connection as a task and hands
//! the head and each body frame to the caller through channels, a quarter of the instructions of
//! a batch of small files; its connection-level client (`hyper::client::conn::http1`) measured the
//! same as this one on small files and used 1.7 times the CPU on one 1 GiB stream, and it hands out
//! a chunk's data before checking the CRLF after it, so it cannot tell which bytes are verified
//! (ARCHITECTURE.md, "One HTTP/1.1 client"). The framing rules here are fuzzed instead.

use super::body::{Decoder, Framing, Step, Violation};
use super::head::ResponseHead;
use super::proxy::Proxy;
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

mod connect;
mod exchange;
mod pool;
pub(crate) mod stream;
#[cfg(test)]
mod tests;

pub(crate) use connect::tls_cause;
use exchange::{exchange, request_bytes};
use pool::Pool;
use stream::Stream;

/// Idle connections kept per pool key.
const MAX_IDLE_PER_HOST: usize = 64;
/// How long an idle connection is kept.
const IDLE_KEEP: Duration = Duration::from_secs(60);
/// Most informational (1xx) responses skipped before the real one.
pub const MAX_INFORMATIONAL: usize = 16;
/// Smallest read size, and the first of a connection: a small file's response in one read. The
/// size doubles after a read that fills it (up to [`MAX_READ`]) and halves after two in a row
/// that used less than an eighth of it. A buffer with less room than half the read size gets more
/// (its own allocation again once the body bytes handed out from it are gone).
const FIRST_READ: usize = 32 << 10;
/// Largest read (bigger reads make bigger writes of the part file: a 1 GiB download took 20 %
/// more CPU with reads of at most 256 KiB). A download with many connections lowers it per
/// connection with [`Body::limit_reads`], so that their buffers share one budget.
const MAX_READ: usize = 512 << 10;

/// The client: a pool of idle connections, the TLS configuration and the timeouts.
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
    connect_timeout: Duration,
    head_timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

/// A connection and what has been read from it but not yet taken.
struct Conn {
    stream: Stream,
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
    /// The TLS handshake failed (an untrusted certificate, a wrong name, no common protocol).
    Tls(String),
    /// The proxy refused to open a tunnel.
    Proxy {
        /// Its status.
        status: u16,
        /// What it said.
        detail: String,
    },
    /// The exchange failed on an open connection.
    Exchange {
        /// The connection closed before any byte of the response head.
        incomplete: bool,
        /// What went wrong.
        detail: String,
    },
    /// The server broke HTTP/1.1 (a malformed head, a head cut off or never finished, too many
    /// informational answers).
    Protocol(String),
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
    decoder: Decoder,
    reusable: bool,
    key: String,
    pool: Weak<Pool>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("decoder", &self.decoder).finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the configuration's timeouts and the given TLS configuration.
    pub fn new(config: &Config, tls: Arc<rustls::ClientConfig>) -> Client {
        Client {
            pool: Arc::default(),
            connect_timeout: config.connect_timeout,
            head_timeout: config.head_timeout,
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }

    /// Sends a GET for `url` with `headers` (through `proxy` when given) and reads the response
    /// head. A pooled connection that turns out closed before any byte of the answer is replaced
    /// by a new one, once; with `fresh`, no pooled connection is used at all.
    pub async fn get(&self, url: &url::Url, headers: &HeaderMap, proxy: Option<&Proxy>, fresh: bool) -> Result<Answer, Failure> {
        let key = pool_key(url, proxy);
        let request = request_bytes(url, proxy, headers);
        let close_asked = headers.get_all(header::CONNECTION).iter().any(|v| super::head::has_token(v.as_bytes(), b"close"));
        if !fresh {
            if let Some(conn) = self.pool.checkout(&key) {
                match exchange(conn, &request, self.head_timeout).await {
                    Ok(answer) => return Ok(self.answer(answer, key, close_asked)),
                    Err((_, true)) => {}
                    Err((failure, false)) => return Err(failure),
                }
            }
        }
        let conn = self.connect(url, proxy).await?;
        match exchange(conn, &request, self.head_timeout).await {
            Ok(answer) => Ok(self.answer(answer, key, close_asked)),
            Err((failure, _)) => Err(failure),
        }
    }

    fn answer(&self, (head, conn): (super::head::Head, Conn), key: String, close_asked: bool) -> Answer {
        let empty = head.framing.is_none();
        let mut body = Body {
            conn: Some(conn),
            decoder: Decoder::new(head.framing.unwrap_or(Framing::Length(0))),
            reusable: head.keep_alive && !close_asked,
            key,
            pool: Arc::downgrade(&self.pool),
        };
        if empty {
            body.finish();
        }
        Answer { head: head.head, location: head.location, body }
    }
}

/// `host:port` of a URL: the `Host` header with the port, and the tunnel's target.
fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let mut key = String::with_capacity(host.len() + 6);
    key.push_str(host);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(url.port_or_known_default().unwrap_or(80)));
    key
}

/// Which idle connections can carry a request for `url`: those to its scheme, host and port, or,
/// for plain HTTP through a proxy, any to that proxy.
fn pool_key(url: &url::Url, proxy: Option<&Proxy>) -> String {
    match (url.scheme(), proxy) {
        ("https", _) => format!("tls:{}", authority(url)),
        (_, Some(p)) => format!("proxy:{}", p.authority()),
        _ => authority(url),
    }
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn { stream, buf: BytesMut::new(), read_size: FIRST_READ, small_reads: 0, max_read: MAX_READ }
    }

    /// Reads what the socket has into the buffer; 0 at the end of the stream.
    async fn read(&mut self) -> std::io::Result<usize> {
        let n = self.stream.read(&mut self.buf, self.read_size).await?;
        self.small_reads = if n < self.read_size / 8 { self.small_reads + 1 } else { 0 };
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(self.max_read);
        } else if self.small_reads >= 2 {
            self.read_size = (self.read_size / 2).max(FIRST_READ);
            self.small_reads = 0;
        }
        Ok(n)
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

    /// Body bytes whose framing is verified (see [`Decoder::verified`]).
    pub fn verified(&self) -> u64 {
        self.decoder.verified()
    }

    /// The next data of the body; `None` at its end. After an error the connection is closed.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Violation> {
        let result = self.next().await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn next(&mut self) -> Result<Option<Bytes>, Violation> {
        loop {
            let Some(conn) = self.conn.as_mut() else { return Ok(None) };
            match self.decoder.step(&mut conn.buf)? {
                Step::Data(d) => return Ok(Some(d)),
                Step::End => {
                    self.finish();
                    return Ok(None);
                }
                Step::NeedMore => match conn.read().await {
                    Ok(0) => {
                        self.decoder.at_close()?;
                        self.reusable = false;
                        self.finish();
                        return Ok(None);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Violation::Truncated(read_error(&e))),
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

impl Drop for Body {
    /// A caller that stops at the body's last byte (its segment is complete) does not read the
    /// end of the body: when that end is already in the buffer (a length reached, the last chunk
    /// and its trailers arrived), the connection still goes back to the pool. Otherwise it closes.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            if matches!(self.decoder.step(&mut conn.buf), Ok(Step::End)) {
                self.finish();
            }
        }
    }
}

/// A read error, as text: a TLS stream closed without its close_notify says so (a body read to
/// the close cannot prove its end without it).
fn read_error(e: &std::io::Error) -> String {
    match tls_cause(e) {
        Some(tls) => format!("TLS: {tls}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "the connection closed without TLS close_notify".into(),
        None => e.to_string(),
    }
}
