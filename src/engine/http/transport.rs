//! HTTP transport: one shared reqwest client (connection pool, TLS on rustls + ring), requests
//! with the engine's headers, idle timeouts, and the mapping of transport failures to error codes.
//!
//! Plain `http://` without a proxy takes the lean client of [`client`](super::client); everything else the
//! full one. Both hand back the same [`Response`].
//!
//! HTTP/1.1 only, on purpose: a segmented download wants one TCP connection per segment (servers
//! and CDNs cap throughput per connection); HTTP/2 would multiplex them onto one.

use super::client::{self, PlainClient};
use super::head::{head_from, ResponseHead};
use super::redirect;
use crate::engine::model::config::Config;
use crate::engine::model::error::{redact_url, Error, ErrorCode, Result};
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

#[derive(Debug)]
struct RedirectLoop;
impl std::fmt::Display for RedirectLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redirect loop")
    }
}
impl std::error::Error for RedirectLoop {}

#[derive(Debug)]
struct TooManyRedirects;
impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many redirects")
    }
}
impl std::error::Error for TooManyRedirects {}

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// The shared HTTP client.
#[derive(Clone, Debug)]
pub struct Transport {
    client: reqwest::Client,
    /// The lean client for plain HTTP, when no proxy applies.
    plain: Option<PlainClient>,
    user_agent: HeaderValue,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

/// A response whose head has been read.
#[derive(Debug)]
pub struct Response {
    /// The head, as the verdict rules see it.
    pub head: ResponseHead,
    /// The URL that answered, after redirects.
    pub url: url::Url,
    body: Body,
    idle_timeout: Duration,
}

#[derive(Debug)]
enum Body {
    Full(reqwest::Response),
    Plain(client::Body),
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
}

impl Transport {
    /// Builds the client from the configuration.
    pub fn new(config: &Config) -> Result<Transport> {
        // reqwest is built without a default crypto provider; ring is ours. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(TooManyRedirects)
            } else if attempt.previous().iter().any(|u| u == attempt.url()) {
                attempt.error(RedirectLoop)
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .redirect(policy)
            // The engine retries by its own rules (retry.rs); reqwest's layer would only clone
            // every request in case an HTTP/2 stream is refused, and this client speaks HTTP/1.1.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(config.user_agent.clone());
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| Error::new(ErrorCode::InvalidConfig, "the user agent is not a valid header value"))?;
        let tls = if config.bundled_tls_roots {
            super::tls::bundled_roots_config(&config.extra_root_certificates_pem)?
        } else {
            super::tls::platform_config(&config.extra_root_certificates_pem)?
        };
        builder = builder.tls_backend_preconfigured(tls);
        let client = builder.build().map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("HTTP client: {e}")))?;
        let plain = redirect::usable().then(|| client::client(config));
        Ok(Transport { client, plain, user_agent, connect_timeout: config.connect_timeout, idle_timeout: config.idle_timeout })
    }

    /// Sends a GET and waits for the response head (bounded by the connect and idle timeouts).
    pub async fn get(&self, req: Get<'_>) -> Result<Response> {
        let headers = Self::headers(&req)?;
        match &self.plain {
            Some(plain) if redirect::eligible(req.url) => self.get_lean(plain, req.url, headers).await,
            _ => self.get_full(req.url, headers).await,
        }
    }

    /// The request's headers: the caller's, then the engine's.
    fn headers(req: &Get<'_>) -> Result<HeaderMap> {
        let mut headers = HeaderMap::with_capacity(req.headers.len() + 3);
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

    /// A GET through the lean client, following redirects by the same policy as the full client
    /// (at most [`MAX_REDIRECTS`], no loops, credentials kept to their origin, a `Referer`). A
    /// redirect to a URL the lean client does not take continues through the full client.
    async fn get_lean(&self, plain: &PlainClient, url: &url::Url, mut headers: HeaderMap) -> Result<Response> {
        headers.entry(header::USER_AGENT).or_insert_with(|| self.user_agent.clone());
        headers.entry(header::ACCEPT).or_insert_with(|| HeaderValue::from_static("*/*"));
        // One deadline for the whole chain, as the full client has.
        let wait = self.connect_timeout + self.idle_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let mut at = url.clone();
        let mut previous: Vec<url::Url> = Vec::new();
        loop {
            let resp = match tokio::time::timeout_at(deadline, plain.get(&at, &headers)).await {
                Err(_) => return Err(no_response(url, wait)),
                Ok(Err(e)) => return Err(map_plain_error(e, url)),
                Ok(Ok(r)) => r,
            };
            let Some(next) = redirect::redirect_target(resp.head.status, resp.location.as_deref(), &at) else {
                return Ok(Response { head: resp.head, url: at, body: Body::Plain(resp.body), idle_timeout: self.idle_timeout });
            };
            if let Some(scheme) = unsupported_scheme(&next) {
                return Err(redirected_to_scheme(url, &scheme, Some(resp.head.status)));
            }
            if previous.len() + 1 > MAX_REDIRECTS {
                return Err(too_many_redirects(url));
            }
            if next == at || previous.contains(&next) {
                return Err(redirect_loop(url));
            }
            redirect::prepare_redirect(&mut headers, &at, &next);
            previous.push(std::mem::replace(&mut at, next));
            if !redirect::eligible(&at) {
                return self.get_full(&at, headers).await;
            }
        }
    }

    /// A GET through the full client, which follows redirects.
    async fn get_full(&self, url: &url::Url, headers: HeaderMap) -> Result<Response> {
        let send = self.client.get(url.clone()).headers(headers).send();
        let wait = self.connect_timeout + self.idle_timeout;
        let resp = match tokio::time::timeout(wait, send).await {
            Err(_) => return Err(no_response(url, wait)),
            Ok(Err(e)) => return Err(map_reqwest_error(&e, url)),
            Ok(Ok(r)) => r,
        };
        if resp.status().is_redirection() {
            if let Some(scheme) = unfollowed_scheme(&resp) {
                return Err(redirected_to_scheme(url, &scheme, Some(resp.status().as_u16())));
            }
        }
        let head = head_of(resp.status(), resp.headers());
        Ok(Response { head, url: resp.url().clone(), body: Body::Full(resp), idle_timeout: self.idle_timeout })
    }
}

fn no_response(url: &url::Url, wait: Duration) -> Error {
    Error::new(ErrorCode::Timeout, format!("no response from {} within {}s", redact_url(url.as_str()), wait.as_secs()))
}

/// The scheme of a redirect the client handed back instead of following, when that is why: the
/// Location names a scheme the HTTP client cannot follow (`file:`, `data:`, ...).
fn unfollowed_scheme(resp: &reqwest::Response) -> Option<String> {
    let location = resp.headers().get(header::LOCATION)?.to_str().ok()?;
    unsupported_scheme(&resp.url().join(location.trim()).ok()?)
}

/// The scheme of a redirect target neither client can fetch, cut to something printable.
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

/// What the engine needs of a response head from the full client.
fn head_of(status: reqwest::StatusCode, h: &HeaderMap) -> ResponseHead {
    head_from(status.as_u16(), h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
}

impl Response {
    /// Caps the size of each read of the body (the lean client reads as much as it may hold;
    /// the full client chooses its own sizes).
    pub fn limit_reads(&mut self, bytes: usize) {
        if let Body::Plain(inner) = &mut self.body {
            inner.limit_reads(bytes);
        }
    }

    /// The next body chunk; `None` at a clean end of body. Fails if nothing arrives within the idle
    /// timeout, or if the body ends early (shorter than its `Content-Length`, broken chunking).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let idle = || Error::new(ErrorCode::Timeout, format!("no data for {}s", self.idle_timeout.as_secs_f32()));
        match &mut self.body {
            Body::Full(inner) => match tokio::time::timeout(self.idle_timeout, inner.chunk()).await {
                Err(_) => Err(idle()),
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(map_body_error(&e)),
            },
            Body::Plain(inner) => match tokio::time::timeout(self.idle_timeout, inner.next_chunk()).await {
                Err(_) => Err(idle()),
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(Error::new(ErrorCode::TruncatedBody, format!("body ended early: {e}"))),
            },
        }
    }
}

fn source_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// The rustls error behind a failure, if any. `io::Error::source` skips the error it wraps, so
/// wrapped errors are looked at through `get_ref` too.
fn tls_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    source_chain(e).find_map(|s| {
        let mut at: Option<&(dyn std::error::Error + 'static)> = Some(s);
        while let Some(err) = at {
            if let Some(r) = err.downcast_ref::<rustls::Error>() {
                return Some(r.to_string());
            }
            at = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|b| b as &(dyn std::error::Error + 'static));
        }
        None
    })
}

fn map_reqwest_error(e: &reqwest::Error, url: &url::Url) -> Error {
    let where_ = redact_url(url.as_str());
    if e.is_redirect() {
        if source_chain(e).any(|s| s.is::<RedirectLoop>()) {
            return redirect_loop(url);
        }
        return too_many_redirects(url);
    }
    if e.is_builder() {
        // The request URL was validated at enqueue, so this is where a redirect led.
        return match e.url().map(url::Url::scheme) {
            Some(scheme) if scheme != "http" && scheme != "https" => redirected_to_scheme(url, scheme, None),
            _ => Error::new(ErrorCode::InvalidUrl, format!("{where_} redirected to an unusable URL")),
        };
    }
    if let Some(tls) = tls_error(e) {
        return Error::new(ErrorCode::Tls, format!("TLS with {where_} failed: {tls}"));
    }
    if e.is_timeout() {
        return Error::new(ErrorCode::Timeout, format!("timed out talking to {where_}"));
    }
    if e.is_connect() {
        return Error::new(ErrorCode::ConnectFailed, format!("could not connect to {where_}"));
    }
    if e.is_body() || e.is_decode() {
        return Error::new(ErrorCode::TruncatedBody, format!("response from {where_} ended early"));
    }
    exchange_failed(e, &where_)
}

/// A request that failed after connecting: a response cut short, or anything else on the wire.
fn exchange_failed(e: &(dyn std::error::Error + 'static), where_: &str) -> Error {
    if source_chain(e).any(|s| s.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message)) {
        return Error::new(ErrorCode::TruncatedBody, format!("response from {where_} ended early"));
    }
    Error::new(ErrorCode::Network, format!("request to {where_} failed: {}", last_source(e)))
}

/// The innermost cause of an error, as text.
fn last_source(e: &(dyn std::error::Error + 'static)) -> String {
    source_chain(e).last().map(|s| s.to_string()).unwrap_or_default()
}

/// The failure of a request through the lean client, coded as the full client's would be.
fn map_plain_error(e: client::Failure, url: &url::Url) -> Error {
    let where_ = redact_url(url.as_str());
    match e {
        client::Failure::Connect { timed_out: true, detail } => {
            Error::new(ErrorCode::Timeout, format!("timed out talking to {where_} ({detail})"))
        }
        client::Failure::Connect { timed_out: false, detail } => {
            Error::new(ErrorCode::ConnectFailed, format!("could not connect to {where_} ({detail})"))
        }
        client::Failure::Exchange { incomplete: true, .. } => {
            Error::new(ErrorCode::TruncatedBody, format!("response from {where_} ended early"))
        }
        client::Failure::Exchange { incomplete: false, detail } => {
            Error::new(ErrorCode::Network, format!("request to {where_} failed: {detail}"))
        }
    }
}

fn map_body_error(e: &reqwest::Error) -> Error {
    if e.is_timeout() {
        return Error::new(ErrorCode::Timeout, "connection went idle");
    }
    Error::new(ErrorCode::TruncatedBody, format!("body ended early: {}", last_source(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_head_takes_the_first_value_of_each_header_trimmed() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static(" 42 "));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes 0-41/42"));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        h.insert(HeaderName::from_static("x-other"), HeaderValue::from_static("ignored"));
        let head = head_of(reqwest::StatusCode::PARTIAL_CONTENT, &h);
        assert_eq!(head.status, 206);
        assert_eq!(head.content_length, Some(42));
        assert_eq!(head.etag.as_deref(), Some("\"v1\""));
        assert_eq!(head.content_range.as_deref(), Some("bytes 0-41/42"));
        assert_eq!(head.retry_after, Some(Duration::from_secs(3)));
        assert_eq!((head.last_modified, head.date, head.content_encoding), (None, None, None));

        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip, Chunked"));
        assert_eq!(head_of(reqwest::StatusCode::OK, &h).content_length, None, "a chunked body has no length");
    }
}
