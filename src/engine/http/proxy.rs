//! Which proxy a request goes through: the engine's configuration, else the environment
//! (`https_proxy`, `http_proxy`, `all_proxy` and their upper-case forms, `no_proxy`), as curl and
//! most HTTP clients read them. Pure functions of a lookup, so the rules are tested without
//! touching the process's environment.
//!
//! A proxy is an `http://` URL (`host:port` alone means that too), with optional credentials sent
//! as `Proxy-Authorization: Basic`. Plain `http://` requests go to it in absolute form; `https://`
//! requests open a `CONNECT` tunnel through it, and TLS to the origin runs inside the tunnel.
//!
//! Exceptions (`no_proxy`) are separated by commas or spaces: `*` (every host), a domain (itself
//! and every subdomain; a leading `.` or `*.` is the same), an IP address, an IPv4 or IPv6 network
//! in CIDR form, each optionally with `:port` (then only that port bypasses the proxy).
//!
//! Platform proxy settings (macOS and iOS System Configuration, Windows, Android) are not read
//! here: the Swift and Kotlin facades pass them in `Config::proxy` and `Config::no_proxy`.

use crate::engine::model::error::{redact, Error, ErrorCode, Result};
use std::net::IpAddr;

/// One proxy server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or IP address (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Proxy-Authorization` value, from the URL's credentials.
    pub authorization: Option<String>,
    /// The proxy's URL without credentials, for messages.
    pub shown: String,
}

impl Proxy {
    /// `host:port` (IPv6 in brackets), as the pool key and the `CONNECT` log shows it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses a proxy URL; `host:port` without a scheme is taken as `http://`.
    pub fn parse(text: &str) -> Result<Proxy> {
        let text = text.trim();
        let with_scheme = if text.contains("://") { text.to_string() } else { format!("http://{text}") };
        let bad = |why: &str| Error::new(ErrorCode::InvalidConfig, format!("proxy {}: {why}", redact_shown(&with_scheme)));
        let url = url::Url::parse(&with_scheme).map_err(|_| bad("not a URL"))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// proxies are supported"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(bad("no host")),
        };
        let authorization = basic_credentials(&url);
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Proxy { host, port, authorization, shown: redact(&url) })
    }
}

fn redact_shown(text: &str) -> String {
    url::Url::parse(text).map(|u| redact(&u)).unwrap_or_else(|_| "(unparsable)".into())
}

/// The proxies of a transport, and their exceptions.
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    http: Option<Result<Proxy, Error>>,
    https: Option<Result<Proxy, Error>>,
    bypass: Vec<Exception>,
}

impl Proxies {
    /// The proxies from the configuration, else from the environment as `var` reads it. A
    /// configured proxy of `none`, `direct` or an empty string means no proxy at all. Exceptions
    /// come from `no_proxy` when given, else (with a proxy from the environment) from `no_proxy` /
    /// `NO_PROXY`. A proxy in the configuration that cannot be used is an error now; one in the
    /// environment fails the requests that would go through it.
    pub fn new(proxy: Option<&str>, no_proxy: Option<&str>, var: impl Fn(&str) -> Option<String>) -> Result<Proxies> {
        let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let (http, https, env_exceptions) = match proxy.map(str::trim) {
            Some("" | "none" | "direct" | "DIRECT") => return Ok(Proxies::default()),
            Some(text) => {
                let p = Proxy::parse(text)?;
                (Some(Ok(p.clone())), Some(Ok(p)), None)
            }
            None => {
                // Upper-case HTTP_PROXY is ignored in a CGI process, where a request header
                // named `Proxy` would arrive as that variable (httpoxy).
                let cgi = var("REQUEST_METHOD").is_some();
                let first = |names: &[&str]| names.iter().find_map(|n| var(n)).map(|v| Proxy::parse(&v));
                let all = ["all_proxy", "ALL_PROXY"];
                let http = if cgi { first(&["http_proxy"]) } else { first(&["http_proxy", "HTTP_PROXY"]) }.or_else(|| first(&all));
                let https = first(&["https_proxy", "HTTPS_PROXY"]).or_else(|| first(&all));
                (http, https, var("no_proxy").or_else(|| var("NO_PROXY")))
            }
        };
        let exceptions = no_proxy.map(str::to_string).or(env_exceptions).unwrap_or_default();
        Ok(Proxies { http, https, bypass: exceptions.split([',', ' ', '\t']).filter_map(Exception::parse).collect() })
    }

    /// The proxy for `url`: `None` to connect directly.
    pub fn for_url(&self, url: &url::Url) -> Result<Option<&Proxy>> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        };
        let Some(proxy) = proxy else { return Ok(None) };
        let port = url.port_or_known_default().unwrap_or(0);
        if self.bypass.iter().any(|e| e.matches(url.host(), port)) {
            return Ok(None);
        }
        proxy.as_ref().map(Some).map_err(Clone::clone)
    }

    /// Whether any request may go through a proxy.
    pub fn any(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }
}

/// One `no_proxy` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Exception {
    Everything,
    /// A domain and its subdomains (lower case, no leading dot).
    Domain(String, Option<u16>),
    /// An address or a network: the address and the prefix length.
    Network(IpAddr, u8, Option<u16>),
}

impl Exception {
    fn parse(entry: &str) -> Option<Exception> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(Exception::Everything);
        }
        // An address or network, bare or bracketed IPv6, with an optional port.
        let (host, port) = split_port(&entry);
        let (addr, prefix) = match host.split_once('/') {
            Some((a, p)) => (a, p.parse::<u8>().ok()),
            None => (host, None),
        };
        if let Ok(ip) = addr.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            return Some(Exception::Network(ip, prefix.unwrap_or(max).min(max), port));
        }
        let domain = host.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.');
        (!domain.is_empty()).then(|| Exception::Domain(domain.to_string(), port))
    }

    fn matches(&self, host: Option<url::Host<&str>>, port: u16) -> bool {
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        match (self, host) {
            (Exception::Everything, _) => true,
            (Exception::Domain(d, p), Some(url::Host::Domain(h))) => {
                let h = h.trim_end_matches('.');
                port_ok(p) && (h.eq_ignore_ascii_case(d) || (h.len() > d.len() && h.to_ascii_lowercase().ends_with(&format!(".{d}"))))
            }
            (Exception::Network(net, bits, p), Some(url::Host::Ipv4(a))) => port_ok(p) && in_network(IpAddr::V4(a), *net, *bits),
            (Exception::Network(net, bits, p), Some(url::Host::Ipv6(a))) => port_ok(p) && in_network(IpAddr::V6(a), *net, *bits),
            _ => false,
        }
    }
}

/// `host:port` into the host and the port; an IPv6 address without brackets has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((inside, after)) = rest.split_once(']') {
            return (inside, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= 128 || (a >> shift) == (b >> shift)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// `Basic` credentials from a URL's user name and password (percent-decoded), as browsers and
/// curl send them.
pub fn basic_credentials(url: &url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let mut pair = percent_decode(url.username());
    pair.push(b':');
    pair.extend_from_slice(&percent_decode(url.password().unwrap_or("")));
    Some(format!("Basic {}", base64(&pair)))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
