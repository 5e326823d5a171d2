//! HTTP transport: one client for `http://` and `https://` ([`client`](super::client)), requests
//! with the engine's headers, the redirect policy, proxies, timeouts, and the mapping of
//! transport failures to error codes.
//!
//! HTTP/1.1 only, on purpose: a segmented download wants one TCP connection per segment (servers
//! and CDNs cap throughput per connection); HTTP/2 would multiplex them onto one.

use super::body::Violation;
use super::client::{self, Client};
use super::head::ResponseHead;
use super::proxy::{basic_credentials, Proxies};
use super::redirect;
use crate::engine::model::config::Config;
use crate::engine::model::error::{redact_url, Error, ErrorCode, Result};
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// The shared HTTP client.
#[derive(Clone, Debug)]
pub struct Transport {
    client: Client,
    proxies: Arc<Proxies>,
    user_agent: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
    min_speed: MinSpeed,
    /// Bodies open through this transport (its clones share the count).
    open_bodies: Arc<AtomicU64>,
}

/// The slowest a server may feed a connection (see `Config::min_speed`).
#[derive(Clone, Copy, Debug)]
struct MinSpeed {
    bytes_per_second: u64,
    window: Duration,
}

/// What a body delivered over the current judging window.
#[derive(Debug, Default)]
struct Pace {
    waited: Duration,
    bytes: u64,
    /// The most bodies open at once during the window: connections that share a link each get a
    /// share of it, so each is held to that share of the minimum.
    sharing: u64,
}

/// One open body, counted in [`Transport`]'s `open_bodies` while it lives.
#[derive(Debug)]
struct OpenBody(Arc<AtomicU64>);

impl OpenBody {
    fn new(count: &Arc<AtomicU64>) -> OpenBody {
        count.fetch_add(1, Ordering::Relaxed);
        OpenBody(count.clone())
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for OpenBody {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response whose head has been read.
#[derive(Debug)]
pub struct Response {
    /// The head, as the verdict rules see it.
    pub head: ResponseHead,
    /// The URL that answered, after redirects.
    pub url: url::Url,
    body: client::Body,
    idle_timeout: Duration,
    min_speed: MinSpeed,
    pace: Pace,
    /// A judged window of this answer met the minimum speed.
    met_min_speed: bool,
    open: OpenBody,
}

/// A request to send.
#[derive(Clone, Copy, Debug)]
pub struct Get<'a> {
    /// URL.
    pub url: &'a url::Url,
    /// The caller's headers.
    pub headers: &'a [(String, String)],
    /// `Some((start, end))` asks for `[start, end)`; `end == None` means "to the end".
    pub range: Option<(u64, Option<u64>)>,
    /// `If-Range` value.
    pub if_range: Option<&'a str>,
    /// Open a new connection instead of reusing an idle one (the retry after a protocol
    /// violation: a broken middlebox or captive portal may have answered on the old one).
    pub fresh: bool,
}

impl Transport {
    /// Builds the client from the configuration: TLS roots, proxies (the configuration's, else the
    /// environment's), timeouts.
    pub fn new(config: &Config) -> Result<Transport> {
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| Error::new(ErrorCode::InvalidConfig, "the user agent is not a valid header value"))?;
        let tls = if config.bundled_tls_roots {
            super::tls::bundled_roots_config(&config.extra_root_certificates_pem)?
        } else {
            super::tls::platform_config(&config.extra_root_certificates_pem)?
        };
        let proxies = Proxies::new(config.proxy.as_deref(), config.no_proxy.as_deref(), |k| std::env::var(k).ok())?;
        Ok(Transport {
            client: Client::new(config, Arc::new(tls)),
            proxies: Arc::new(proxies),
            user_agent,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            min_speed: MinSpeed { bytes_per_second: config.min_speed, window: config.min_speed_window },
            open_bodies: Arc::default(),
        })
    }

    /// Sends a GET and waits for the final response head, following redirects: at most
    /// [`MAX_REDIRECTS`], no loops, only to `http:` and `https:`, credentials kept to their origin,
    /// a `Referer` on each hop. The whole chain is bounded by the connect and idle timeouts
    /// together; each head, once begun, by the head timeout.
    pub async fn get(&self, req: Get<'_>) -> Result<Response> {
        let mut headers = Self::headers(&req)?;
        headers.entry(header::USER_AGENT).or_insert_with(|| self.user_agent.clone());
        headers.entry(header::ACCEPT).or_insert_with(|| HeaderValue::from_static("*/*"));
        let wait = self.connect_timeout + self.idle_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let mut at = req.url.clone();
        let mut previous: Vec<url::Url> = Vec::new();
        loop {
            let proxy = self.proxies.for_url(&at)?;
            if !headers.contains_key(header::AUTHORIZATION) {
                if let Some(v) = basic_credentials(&at).and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.insert(header::AUTHORIZATION, v);
                }
            }
            let resp = match tokio::time::timeout_at(deadline, self.client.get(&at, &headers, proxy, req.fresh)).await {
                Err(_) => return Err(no_response(req.url, wait)),
                Ok(Err(e)) => return Err(map_failure(e, req.url)),
                Ok(Ok(r)) => r,
            };
            let Some(next) = redirect::redirect_target(resp.head.status, resp.location.as_deref(), &at) else {
                return Ok(Response {
                    head: resp.head,
                    url: at,
                    body: resp.body,
                    idle_timeout: self.idle_timeout,
                    min_speed: self.min_speed,
                    pace: Pace::default(),
                    met_min_speed: false,
                    open: OpenBody::new(&self.open_bodies),
                });
            };
            if let Some(scheme) = unsupported_scheme(&next) {
                return Err(redirected_to_scheme(req.url, &scheme, Some(resp.head.status)));
            }
            if previous.len() + 1 > MAX_REDIRECTS {
                return Err(too_many_redirects(req.url));
            }
            if next == at || previous.contains(&next) {
                return Err(redirect_loop(req.url));
            }
            redirect::prepare_redirect(&mut headers, &at, &next);
            previous.push(std::mem::replace(&mut at, next));
        }
    }

    /// The request's headers: the caller's, then the engine's.
    fn headers(req: &Get<'_>) -> Result<HeaderMap> {
        let mut headers = HeaderMap::with_capacity(req.headers.len() + 5);
        for (name, value) in req.headers {
            let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
                return Err(Error::new(ErrorCode::InvalidHeader, format!("invalid header {name}")));
            };
            headers.append(n, v);
        }
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Some((start, end)) = req.range {
            let value = crate::engine::ranges::content_range::range_header(start, end);
            headers.insert(header::RANGE, HeaderValue::from_str(&value).map_err(|_| Error::internal("range header"))?);
            if let Some(v) = req.if_range {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.insert(header::IF_RANGE, v);
                }
            }
        }
        Ok(headers)
    }
}

fn no_response(url: &url::Url, wait: Duration) -> Error {
    Error::new(ErrorCode::Timeout, format!("no response from {} within {}s", redact_url(url.as_str()), wait.as_secs()))
}

/// The scheme of a redirect target the client cannot fetch, cut to something printable.
fn unsupported_scheme(next: &url::Url) -> Option<String> {
    let scheme = next.scheme();
    (scheme != "http" && scheme != "https").then(|| scheme.chars().filter(char::is_ascii_alphanumeric).take(16).collect())
}

fn redirected_to_scheme(url: &url::Url, scheme: &str, status: Option<u16>) -> Error {
    Error::with_status(
        ErrorCode::UnsupportedScheme,
        format!("{} redirected to an unsupported scheme '{scheme}'", redact_url(url.as_str())),
        status,
    )
}

fn too_many_redirects(url: &url::Url) -> Error {
    Error::new(ErrorCode::TooManyRedirects, format!("more than {MAX_REDIRECTS} redirects from {}", redact_url(url.as_str())))
}

fn redirect_loop(url: &url::Url) -> Error {
    Error::new(ErrorCode::RedirectLoop, format!("redirect loop starting at {}", redact_url(url.as_str())))
}

/// The failure of a request, coded.
fn map_failure(e: client::Failure, url: &url::Url) -> Error {
    let where_ = redact_url(url.as_str());
    match e {
        client::Failure::Connect { timed_out: true, detail } => {
            Error::new(ErrorCode::Timeout, format!("timed out talking to {where_} ({detail})"))
        }
        client::Failure::Connect { timed_out: false, detail } => {
            Error::new(ErrorCode::ConnectFailed, format!("could not connect to {where_} ({detail})"))
        }
        client::Failure::Tls(detail) => Error::new(ErrorCode::Tls, format!("TLS with {where_} failed: {detail}")),
        client::Failure::Proxy { status, detail } => {
            Error::with_status(Error::from_status(status, None).code(), format!("{detail} (for {where_})"), Some(status))
        }
        client::Failure::Exchange { incomplete: true, .. } => {
            Error::new(ErrorCode::TruncatedBody, format!("response from {where_} ended early"))
        }
        client::Failure::Exchange { incomplete: false, detail } => {
            Error::new(ErrorCode::Network, format!("request to {where_} failed: {detail}"))
        }
        client::Failure::Protocol(detail) => protocol_error(&where_, &detail),
    }
}

fn protocol_error(where_: &str, detail: &str) -> Error {
    Error::new(ErrorCode::ProtocolError, format!("{where_} broke HTTP/1.1: {detail}"))
}

impl Response {
    /// Caps the size of each read of the body.
    pub fn limit_reads(&mut self, bytes: usize) {
        self.body.limit_reads(bytes);
    }

    /// Body bytes whose framing is verified so far: only these may count as written (a chunk's
    /// bytes before the CRLF after it has been read are not).
    pub fn verified(&self) -> u64 {
        self.body.verified()
    }

    /// The next body chunk; `None` at a clean end of body. Fails if nothing arrives within the idle
    /// timeout, if the body ends early (shorter than its `Content-Length`, a chunked body cut
    /// off), or if its framing breaks (`protocol_error`).
    ///
    /// Also fails (`timeout`) when the server feeds it slower than the configured minimum speed,
    /// judged over the time spent waiting here only, and shared by the bodies open at once.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let asked = std::time::Instant::now();
        let next = tokio::time::timeout(self.idle_timeout, self.body.next_chunk()).await;
        if let Ok(Ok(Some(c))) = &next {
            self.too_slow(asked.elapsed(), c.len() as u64)?;
        }
        match next {
            Err(_) => Err(Error::new(ErrorCode::Timeout, format!("no data for {}s", self.idle_timeout.as_secs_f32()))),
            Ok(Ok(c)) => Ok(c),
            Ok(Err(Violation::Truncated(e))) => Err(Error::new(ErrorCode::TruncatedBody, format!("body ended early: {e}"))),
            Ok(Err(Violation::Protocol(e))) => Err(protocol_error(&redact_url(self.url.as_str()), &e)),
        }
    }

    /// Counts a wait of `waited` that brought `bytes`; an error once a whole window of waiting
    /// brought less than the minimum speed allows.
    fn too_slow(&mut self, waited: Duration, bytes: u64) -> Result<()> {
        let MinSpeed { bytes_per_second, window } = self.min_speed;
        if bytes_per_second == 0 {
            return Ok(());
        }
        self.pace.waited += waited;
        self.pace.bytes += bytes;
        self.pace.sharing = self.pace.sharing.max(self.open.count());
        if self.pace.waited < window {
            return Ok(());
        }
        let waited = std::mem::take(&mut self.pace);
        let floor = (bytes_per_second as f64 * waited.waited.as_secs_f64() / waited.sharing.max(1) as f64) as u64;
        if waited.bytes >= floor {
            self.met_min_speed = true;
            return Ok(());
        }
        let shared = if waited.sharing > 1 { format!(" shared by {} connections", waited.sharing) } else { String::new() };
        Err(Error::too_slow(
            format!(
                "{} sent {} bytes in {:.0} s, below the minimum of {bytes_per_second} bytes a second{shared}",
                redact_url(self.url.as_str()),
                waited.bytes,
                waited.waited.as_secs_f64()
            ),
            self.met_min_speed,
        ))
    }
}
