//! A raw-TCP HTTP/1.1 server for answers hyper's server refuses to produce: wrong headers,
//! bodies longer or shorter than announced, connections closed before the head, heads trickled a
//! byte at a time, sockets that never answer. Each connection serves one request, then closes.
//! Behind TLS ([`RawServer::start_on`] with [`Scheme::Https`], the test CA of
//! [`super::tls`]) it writes the same bytes through the TLS stream, and closes with close_notify.
//!
//! The test supplies a handler that sees every request (numbered from 0) and returns the script
//! of the answer. All requests are recorded for assertions.

use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One request as the server read it.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// Order of arrival, from 0.
    pub n: u64,
    /// Request target (path and query).
    pub target: String,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl RawRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// `Range: bytes=a-b` as `(a, Some(b + 1))`, `bytes=a-` as `(a, None)`.
    pub fn range(&self) -> Option<(u64, Option<u64>)> {
        let spec = self.header("range")?.strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let a = a.parse().ok()?;
        let b = if b.is_empty() { None } else { Some(b.parse::<u64>().ok()? + 1) };
        Some((a, b))
    }

    /// The range asked for, clamped to a resource of `size` bytes: `[start, end)`.
    pub fn range_in(&self, size: u64) -> Option<(u64, u64)> {
        let (a, b) = self.range()?;
        Some((a, b.unwrap_or(size).min(size)))
    }
}

/// One step of an answer.
#[derive(Clone, Debug)]
pub enum Part {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Write these bytes one at a time, pausing between them.
    Trickle(Vec<u8>, Duration),
    /// Wait.
    Sleep(Duration),
    /// Keep the connection open, sending nothing, until the server is dropped.
    Hang,
    /// Write these bytes straight to the TCP socket, around TLS (a truncated or forged record).
    Raw(Vec<u8>),
    /// End the connection at once; over TLS without close_notify (a truncation an attacker or a
    /// broken middlebox could cause).
    Cut,
}

type Handler = dyn Fn(&RawRequest) -> Vec<Part> + Send + Sync;

/// Plain HTTP, or HTTP over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Both, for tests that hold for each.
pub const SCHEMES: [Scheme; 2] = [Scheme::Http, Scheme::Https];

/// A running raw server; stops when dropped.
pub struct RawServer {
    addr: SocketAddr,
    scheme: Scheme,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<RawRequest>>>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl RawServer {
    /// Starts a plain HTTP server on 127.0.0.1 answering with `handler`.
    pub fn start(handler: impl Fn(&RawRequest) -> Vec<Part> + Send + Sync + 'static) -> RawServer {
        Self::start_on(Scheme::Http, handler)
    }

    /// Starts a server on 127.0.0.1 answering with `handler`, over TLS for [`Scheme::Https`].
    pub fn start_on(scheme: Scheme, handler: impl Fn(&RawRequest) -> Vec<Part> + Send + Sync + 'static) -> RawServer {
        let tls = (scheme == Scheme::Https).then(|| super::tls::test_ca().server.clone());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let counter = Arc::new(AtomicU64::new(0));
        let (st, reqs) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (st, reqs, h, c, tls) = (st.clone(), reqs.clone(), handler.clone(), counter.clone(), tls.clone());
                        std::thread::spawn(move || serve(stream, tls, &st, &reqs, &*h, &c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        RawServer { addr, scheme, stop, requests }
    }

    /// `http://127.0.0.1:port` (or `https://`).
    pub fn base(&self) -> String {
        let scheme = if self.scheme == Scheme::Https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests.lock().len()
    }
}

/// A server connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Conn {
    /// Ends the connection: close_notify first over TLS (a body read to the close needs it).
    fn close(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let tcp = match &self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        };
        let _ = tcp.shutdown(std::net::Shutdown::Both);
    }
}

fn serve(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: &AtomicBool,
    log: &Mutex<Vec<RawRequest>>,
    handler: &Handler,
    counter: &AtomicU64,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut stream = match tls {
        None => Conn::Plain(stream),
        Some(config) => match rustls::ServerConnection::new(config) {
            Ok(c) => Conn::Tls(Box::new(rustls::StreamOwned::new(c, stream))),
            Err(_) => return,
        },
    };
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let target = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("/").to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let req = RawRequest { n: counter.fetch_add(1, Ordering::SeqCst), target, headers };
    log.lock().push(req.clone());
    for part in handler(&req) {
        let ok = match part {
            Part::Write(b) => stream.write_all(&b).is_ok(),
            Part::Trickle(b, gap) => b.iter().all(|byte| {
                std::thread::sleep(gap);
                !stop.load(Ordering::SeqCst) && stream.write_all(&[*byte]).is_ok()
            }),
            Part::Sleep(d) => {
                std::thread::sleep(d);
                true
            }
            Part::Hang => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            }
            Part::Raw(b) => {
                let _ = stream.flush();
                let mut tcp = match &stream {
                    Conn::Plain(s) => s,
                    Conn::Tls(s) => &s.sock,
                };
                tcp.write_all(&b).is_ok()
            }
            Part::Cut => {
                let _ = stream.flush();
                let tcp = match &stream {
                    Conn::Plain(s) => s,
                    Conn::Tls(s) => &s.sock,
                };
                let _ = tcp.shutdown(std::net::Shutdown::Both);
                return;
            }
        };
        if !ok {
            return;
        }
    }
    let _ = stream.flush();
    stream.close();
}

/// A response head: status line, the given header lines, `Connection: close`, blank line.
pub fn head(status: u16, headers: &[(&str, String)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} X\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

/// Head and body in one write.
pub fn reply(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<Part> {
    let mut b = head(status, headers);
    b.extend_from_slice(body);
    vec![Part::Write(b)]
}

/// The bytes `[start, end)` of the deterministic content `seed`.
pub fn content(seed: u64, start: u64, end: u64) -> Vec<u8> {
    let mut v = vec![0u8; (end - start) as usize];
    ferry::loopback::content::fill(seed, start, &mut v);
    v
}

/// A well-behaved answer for the content `seed` of `size` bytes with a strong ETag (none when
/// `etag` is empty): 206 for a satisfiable `Range` whose `If-Range` (if any) matches, 200 otherwise.
pub fn honest(req: &RawRequest, seed: u64, size: u64, etag: &str) -> Vec<Part> {
    let range = match req.header("if-range") {
        Some(v) if v != etag || etag.is_empty() => None,
        _ => req.range_in(size),
    };
    let tag = |mut h: Vec<(&'static str, String)>| {
        if !etag.is_empty() {
            h.push(("ETag", etag.to_string()));
        }
        h
    };
    match range {
        Some((s, e)) if s < e => reply(
            206,
            &tag(vec![("Content-Range", format!("bytes {}-{}/{size}", s, e - 1)), ("Content-Length", (e - s).to_string())]),
            &content(seed, s, e),
        ),
        _ => reply(200, &tag(vec![("Content-Length", size.to_string())]), &content(seed, 0, size)),
    }
}
