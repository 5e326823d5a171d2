//! A small HTTP proxy on loopback: `CONNECT host:port` opens a tunnel (answered 200, then bytes
//! spliced both ways), and an absolute-form request (`GET http://host:port/path`) is forwarded to
//! its origin in origin form. It records what it saw, and may require `Proxy-Authorization`.

use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the proxy saw on one connection.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request line.
    pub line: String,
    /// Its `Proxy-Authorization`, if any.
    pub authorization: Option<String>,
}

/// A running proxy; stops accepting when dropped.
pub struct TestProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl TestProxy {
    /// Starts a proxy; with `require`, only requests carrying exactly that `Proxy-Authorization`
    /// are served (the others get 407).
    pub fn start(require: Option<&str>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, log, require) = (stop.clone(), seen.clone(), require.map(str::to_string));
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (log, require) = (log.clone(), require.clone());
                        std::thread::spawn(move || serve(client, &log, require.as_deref()));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TestProxy { addr, stop, seen }
    }

    /// `http://127.0.0.1:port`, with `userinfo@` when given.
    pub fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}{}", self.addr)
    }

    /// Every request line so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// How many tunnels were opened.
    pub fn tunnels(&self) -> usize {
        self.seen().iter().filter(|s| s.line.starts_with("CONNECT ")).count()
    }
}

fn serve(mut client: TcpStream, log: &Mutex<Vec<Seen>>, require: Option<&str>) {
    let _ = client.set_nonblocking(false);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let rest = buf[end..].to_vec();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let authorization = headers.iter().find(|(n, _)| n == "proxy-authorization").map(|(_, v)| v.clone());
    log.lock().push(Seen { line: line.clone(), authorization: authorization.clone() });
    if require.is_some() && authorization.as_deref() != require {
        let _ = client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method == "CONNECT" {
        let Ok(origin) = TcpStream::connect(target) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        if client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").is_err() {
            return;
        }
        splice(client, origin, &rest);
        return;
    }
    // Absolute form: forward in origin form, without the proxy's own header.
    let Some(after) = target.strip_prefix("http://") else { return };
    let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    let Ok(mut origin) = TcpStream::connect(authority) else { return };
    let mut forward = format!("{method} {} HTTP/1.1\r\n", if path.is_empty() { "/" } else { path });
    for (n, v) in headers.iter().filter(|(n, _)| n != "proxy-authorization") {
        forward.push_str(&format!("{n}: {v}\r\n"));
    }
    forward.push_str("\r\n");
    if origin.write_all(forward.as_bytes()).is_err() {
        return;
    }
    splice(client, origin, &rest);
}

/// Copies bytes both ways until each side has closed.
fn splice(client: TcpStream, mut origin: TcpStream, pending: &[u8]) {
    if origin.write_all(pending).is_err() {
        return;
    }
    let (Ok(mut client_r), Ok(mut origin_w)) = (client.try_clone(), origin.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut origin_w);
        let _ = origin_w.shutdown(std::net::Shutdown::Write);
    });
    let mut client_w = client;
    let _ = std::io::copy(&mut origin, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
