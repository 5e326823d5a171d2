//! One exchange on a connection: the request head written, the response head read and judged
//! ([`crate::engine::http::head::parse`]: informational answers skipped, the framing decided).

use super::*;
use crate::engine::http::head::{self, holds_blank_line, Head, Parsed, MAX_HEAD};

/// The request head of a GET: origin-form, or absolute-form to an HTTP proxy (with its
/// credentials; an `https://` request reaches its origin through a tunnel and needs neither).
pub(super) fn request_bytes(url: &url::Url, proxy: Option<&Proxy>, headers: &HeaderMap) -> Vec<u8> {
    let origin_form = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let proxy = proxy.filter(|_| url.scheme() == "http");
    let mut out = Vec::with_capacity(96 + origin_form.len() + headers.len() * 32);
    out.extend_from_slice(b"GET ");
    if proxy.is_some() {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(url[url::Position::BeforeHost..url::Position::AfterPort].as_bytes());
    }
    out.extend_from_slice(if origin_form.is_empty() { b"/" } else { origin_form.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(url[url::Position::BeforeHost..url::Position::AfterPort].as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(auth) = proxy.and_then(|p| p.authorization.as_deref()) {
        out.extend_from_slice(b"proxy-authorization: ");
        out.extend_from_slice(auth.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes the request and reads the final response head. On failure, also says whether the server
/// answered nothing at all (so that a reused connection may be replaced).
///
/// Once the first byte of a head has arrived, the rest of it must arrive within `head_timeout`:
/// a head trickling in (or never ending) is a protocol violation, not a slow network. The wait
/// for that first byte is bounded by the caller (the connect and idle timeouts together).
pub(super) async fn exchange(mut conn: Conn, request: &[u8], head_timeout: Duration) -> Result<(Head, Conn), (Failure, bool)> {
    let io = |e: std::io::Error, silent: bool| (Failure::Exchange { incomplete: false, detail: e.to_string() }, silent);
    // The request goes out after what the worker already has to do: requests started together
    // leave together, and the server (on the same machine, a process that mostly sleeps) wakes
    // once for them instead of preempting the worker after each one. On loopback, written at
    // once, half the requests of a batch of small files switched the worker out for nginx; after
    // the yield, a fifth. The cost is one turn of the scheduler.
    tokio::task::yield_now().await;
    if let Err(e) = write(&mut conn.stream, request).await {
        return Err(io(e, true));
    }
    let mut informational = 0;
    let mut answered = false;
    let mut need_read = conn.buf.is_empty();
    // When the head being read must be complete: set by its first byte.
    let mut deadline = (!conn.buf.is_empty()).then(|| tokio::time::Instant::now() + head_timeout);
    // Bytes known to hold no end of the head: a head trickling in is parsed once, not per read.
    let mut scanned: usize = 0;
    loop {
        if need_read {
            let read = match deadline {
                Some(d) => match tokio::time::timeout_at(d, conn.read()).await {
                    Ok(r) => r,
                    Err(_) => {
                        let why = format!("the response head was not complete {} s after its first byte", head_timeout.as_secs_f32());
                        return Err((Failure::Protocol(why), false));
                    }
                },
                None => conn.read().await,
            };
            match read {
                Ok(0) if conn.buf.is_empty() => {
                    let detail = "the connection closed before the response".to_string();
                    return Err((Failure::Exchange { incomplete: true, detail }, !answered));
                }
                Ok(0) => return Err((Failure::Protocol("the server closed the connection inside the response head".into()), false)),
                Ok(_) => {
                    answered = true;
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + head_timeout);
                }
                Err(e) if conn.buf.is_empty() => return Err(io(e, !answered)),
                Err(e) => return Err((Failure::Protocol(format!("the response head was cut off: {e}")), false)),
            }
        }
        if !holds_blank_line(&conn.buf[scanned.saturating_sub(3)..]) {
            scanned = conn.buf.len();
            if scanned >= MAX_HEAD {
                return Err((Failure::Protocol(format!("a response head over {} KiB", MAX_HEAD >> 10)), false));
            }
            need_read = true;
            continue;
        }
        match head::parse(&conn.buf) {
            Err(v) => return Err((Failure::Protocol(v.to_string()), false)),
            Ok(Parsed::Partial) => {
                scanned = conn.buf.len();
                need_read = true;
            }
            Ok(Parsed::Informational(len)) => {
                informational += 1;
                if informational > MAX_INFORMATIONAL {
                    return Err((Failure::Protocol(format!("more than {MAX_INFORMATIONAL} informational answers")), false));
                }
                conn.buf.advance(len);
                need_read = conn.buf.is_empty();
                deadline = (!need_read).then(|| tokio::time::Instant::now() + head_timeout);
                scanned = 0;
            }
            Ok(Parsed::Complete(h)) => {
                conn.buf.advance(h.len);
                return Ok((*h, conn));
            }
        }
    }
}

async fn write(stream: &mut Stream, request: &[u8]) -> std::io::Result<()> {
    stream.write_all(request).await
}
