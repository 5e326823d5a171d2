//! How the server answers: the accept loop, routing, and the file route with its faults.

use super::*;

pub(super) fn version_of(f: &Faults, request_no: u64) -> u64 {
    match f.change_every {
        Some(n) if n > 0 => request_no / n,
        _ => 0,
    }
}

pub(super) fn version_seed(f: &Faults, request_no: u64) -> u64 {
    f.seed.wrapping_add(version_of(f, request_no))
}

pub(super) async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    let r = route(req, state).await;
                    if r.extensions().get::<HangUp>().is_some() {
                        return Err(HangUp);
                    }
                    Ok(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(crate::engine::NoSigpipe(stream)), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Marks a response that must not be sent: the connection is closed without an answer.
#[derive(Debug, Clone, Copy)]
struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hung up without answering")
    }
}

impl std::error::Error for HangUp {}

pub(super) fn full(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_string())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

pub(super) async fn route(req: Request<hyper::body::Incoming>, state: Arc<State>) -> Response<Body> {
    let path = req.uri().path().to_string();
    // `/file/<any name>` serves the same file, so that tests can pick the URL's file name.
    if path == "/file" || path.starts_with("/file/") {
        if signature_expired(req.uri().query()) {
            return full(StatusCode::FORBIDDEN, "the signature has expired");
        }
        return serve_file(req, state).await;
    }
    if let Some(n) = path.strip_prefix("/redirect/") {
        let n: u32 = n.parse().unwrap_or(0);
        let to = if n <= 1 { "/file".to_string() } else { format!("/redirect/{}", n - 1) };
        let mut r = full(StatusCode::FOUND, "");
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&to).expect("ascii"));
        return r;
    }
    if path == "/loop/a" || path == "/loop/b" {
        let to = if path.ends_with('a') { "/loop/b" } else { "/loop/a" };
        let mut r = full(StatusCode::FOUND, "");
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
        return r;
    }
    if path == "/stats" {
        // What the server sent so far, for suites that run it as a process (`ferry serve`).
        let st = &state.stats;
        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        let json = serde_json::json!({
            "requests": load(&st.requests), "body_bytes": load(&st.body_bytes), "ranged_requests": load(&st.ranged_requests),
            "if_range_requests": load(&st.if_range_requests), "active": load(&st.active), "max_active": load(&st.max_active),
        });
        let mut r = full(StatusCode::OK, &json.to_string());
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return r;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let code = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
        return full(code, "status page");
    }
    full(StatusCode::NOT_FOUND, "not found")
}

/// A URL signed like a CDN's: `expires=<unix milliseconds>` in its query makes it answer 403 after
/// that moment (see [`super::signed_query`]).
fn signature_expired(query: Option<&str>) -> bool {
    let Some(at) = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("expires=")) else { return false };
    at.parse::<u128>().map_or(true, |at| super::unix_ms() >= at)
}

pub(super) fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        return Some((size.saturating_sub(n), size));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { size } else { (b.parse::<u64>().ok()? + 1).min(size) };
    Some((start, end))
}

pub(super) async fn serve_file(req: Request<hyper::body::Incoming>, state: Arc<State>) -> Response<Body> {
    let n = state.stats.requests.fetch_add(1, Ordering::SeqCst);
    let f = state.faults.lock().clone();
    if !f.latency.is_zero() {
        tokio::time::sleep(f.latency).await;
    }
    let version = version_of(&f, n);
    let seed = f.seed.wrapping_add(version);
    // The validators follow the content: a new seed (or version) is a new resource.
    let etag = format!("\"v{seed}-{}\"", f.size);
    let modified = httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + (seed % 100_000) * 3600));
    let range_hdr = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let if_range = req.headers().get(header::IF_RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    if range_hdr.is_some() {
        state.stats.ranged_requests.fetch_add(1, Ordering::SeqCst);
    }
    if if_range.is_some() {
        state.stats.if_range_requests.fetch_add(1, Ordering::SeqCst);
    }
    let log = |status: u16| {
        state.log.lock().push(format!(
            "{:>6}ms GET range={} if-range={} -> {status}",
            state.started.elapsed().as_millis(),
            range_hdr.as_deref().unwrap_or("-"),
            if_range.as_deref().unwrap_or("-")
        ));
    };
    if n < f.busy_requests || f.max_bodies.is_some_and(|m| state.stats.active.load(Ordering::SeqCst) >= m) {
        log(f.busy_status);
        if f.busy_status == NEVER_ANSWER {
            std::future::pending::<()>().await;
        }
        if f.busy_status == HANG_UP {
            let mut r = full(StatusCode::SERVICE_UNAVAILABLE, "");
            r.extensions_mut().insert(HangUp);
            return r;
        }
        let mut r = full(StatusCode::from_u16(f.busy_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), "busy");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(f.retry_after_secs));
        return r;
    }
    let validator_matches = |v: &str| match f.validators {
        Validators::Both | Validators::ETagOnly => v == etag,
        Validators::LastModifiedOnly => v == modified,
        _ => false,
    };
    let mut range = if f.ranges { range_hdr.as_deref().and_then(|r| parse_range(r, f.size)) } else { None };
    if let (Some(_), Some(v)) = (&range, &if_range) {
        if !validator_matches(v) {
            range = None;
        }
    }
    let (status, start, end) = match range {
        Some((s, _)) if s >= f.size => {
            log(416);
            let mut r = full(StatusCode::RANGE_NOT_SATISFIABLE, "");
            r.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{}", f.size)).expect("ascii"));
            return r;
        }
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e),
        None => (StatusCode::OK, 0, f.size),
    };
    log(status.as_u16());
    let len = end - start;
    let drop_after = f.drop_after.filter(|_| n < f.drop_requests);
    let stall_after = f.stall_after.filter(|_| n < f.stall_requests);
    let short = if n < f.short_requests { f.short_by.min(len) } else { 0 };
    let body_len = len - short;
    let body = make_body(state.clone(), seed, start, body_len, drop_after, stall_after, f.stall_for, f.rate, f.link_rate);
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    if f.ranges {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    match f.validators {
        Validators::Both => {
            h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
            h.insert(header::LAST_MODIFIED, HeaderValue::from_str(&modified).expect("ascii"));
        }
        Validators::ETagOnly => {
            h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
        }
        Validators::LastModifiedOnly => {
            h.insert(header::LAST_MODIFIED, HeaderValue::from_str(&modified).expect("ascii"));
        }
        Validators::WeakETag => {
            h.insert(header::ETAG, HeaderValue::from_str(&format!("W/{etag}")).expect("ascii"));
        }
        Validators::None => {}
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let shown = if f.lie_content_range && start > 0 { start + 1 } else { start };
        let cr = format!("bytes {}-{}/{}", shown, end - 1, f.size);
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&cr).expect("ascii"));
    }
    if f.chunked && status == StatusCode::OK {
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    } else {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}

#[allow(clippy::too_many_arguments)]
pub(super) fn make_body(
    state: Arc<State>,
    seed: u64,
    start: u64,
    len: u64,
    drop_after: Option<u64>,
    stall_after: Option<u64>,
    stall_for: Duration,
    rate: Option<u64>,
    link_rate: Option<u64>,
) -> Body {
    struct S {
        state: Arc<State>,
        /// Released with the last chunk, before the client can see the end of the body (hyper may
        /// drop a finished body later than the client starts its next request).
        active: Option<ActiveGuard>,
        at: u64,
        sent: u64,
        began: Instant,
        stalled: bool,
    }
    let chunk = if rate.is_some() || link_rate.is_some() { 16 * 1024 } else { 256 * 1024 };
    let s = S { active: Some(ActiveGuard::new(state.clone())), state, at: start, sent: 0, began: Instant::now(), stalled: false };
    let stream = futures_util::stream::unfold(s, move |mut s| async move {
        if s.sent >= len {
            return None;
        }
        if let Some(d) = drop_after {
            if s.sent >= d {
                return Some((Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected drop")), s));
            }
        }
        if let Some(st) = stall_after {
            if s.sent >= st && !s.stalled {
                s.stalled = true;
                tokio::time::sleep(stall_for).await;
            }
        }
        if let Some(r) = rate {
            let due = s.began + Duration::from_secs_f64(s.sent as f64 / r as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut n = (len - s.sent).min(chunk);
        if let Some(d) = drop_after {
            if s.sent < d {
                n = n.min(d - s.sent);
            }
        }
        if let Some(st) = stall_after {
            if s.sent < st {
                n = n.min(st - s.sent);
            }
        }
        if let Some(l) = link_rate {
            let due = {
                let mut free_at = s.state.link_free_at.lock();
                let due = (*free_at).max(Instant::now());
                *free_at = due + Duration::from_secs_f64(n as f64 / l as f64);
                due
            };
            tokio::time::sleep_until(due.into()).await;
        }
        let mut buf = vec![0u8; n as usize];
        content::fill(seed, s.at, &mut buf);
        s.at += n;
        s.sent += n;
        s.state.stats.body_bytes.fetch_add(n, Ordering::SeqCst);
        if s.sent >= len {
            s.active = None;
        }
        Some((Ok(Frame::data(Bytes::from(buf))), s))
    });
    StreamBody::new(stream).boxed()
}
