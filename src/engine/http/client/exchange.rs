//! One exchange on a connection: the request head written, the response head read and parsed
//! (1xx answers skipped), and the body's framing decided.

use super::*;

/// The request head of a GET.
pub(super) fn request_bytes(url: &url::Url, key: &str, headers: &HeaderMap) -> Vec<u8> {
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
pub(super) type Parsed = (ResponseHead, Option<String>, Option<Framing>, bool, Conn);

/// Writes the request and reads the response head. On failure, also says whether the server
/// answered nothing at all (so that a reused connection may be replaced).
pub(super) async fn exchange(mut conn: Conn, request: &[u8]) -> Result<Parsed, (Failure, bool)> {
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
pub(super) fn holds_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}
