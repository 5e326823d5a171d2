//! Response heads: parsed off the wire (`httparse`), held to HTTP/1.1's rules, and cut down to the
//! parts the engine reads. The one place a head is judged as a message; [`super::verdict`] judges
//! what it says about the resource.
//!
//! Refused as a protocol violation (RFC 9110, RFC 9112): a head over [`MAX_HEAD`] bytes or
//! [`MAX_HEADERS`] lines; a malformed status line, or a status outside 100–599; a header line
//! with a NUL, a bare CR or another control character, a space before its colon, or an obs-fold
//! continuation (`httparse` refuses these); an unsolicited `101`; a `Content-Range` sent twice
//! with different values; and the framing rules of [`super::body`] (transfer codings,
//! `Content-Length`).

use super::body::{content_length_of, framing_of, printable, Framing, Violation};
use crate::engine::model::retry::parse_retry_after;
use std::time::{Duration, SystemTime};

/// Largest response head accepted, informational answers each counted on their own.
pub const MAX_HEAD: usize = 64 << 10;
/// Most header lines in a response head.
pub const MAX_HEADERS: usize = 100;

/// The parts of a response head the rules look at.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Range`, if sent.
    pub content_range: Option<String>,
    /// `Content-Length`, if sent and meaningful (not for chunked bodies).
    pub content_length: Option<u64>,
    /// `ETag`, if sent.
    pub etag: Option<String>,
    /// `Last-Modified`, if sent.
    pub last_modified: Option<String>,
    /// `Date`, if sent.
    pub date: Option<String>,
    /// `Content-Encoding`, if sent: every coding of every line, comma-separated.
    pub content_encoding: Option<String>,
    /// `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
}

/// A complete final response head, and what the client needs beyond [`ResponseHead`].
#[derive(Debug)]
pub struct Head {
    /// What the rules read.
    pub head: ResponseHead,
    /// The `Location` header.
    pub location: Option<String>,
    /// How the body is delimited (`None`: no body).
    pub framing: Option<Framing>,
    /// Whether the connection can carry another request after the body.
    pub keep_alive: bool,
    /// Bytes of the head, blank line included.
    pub len: usize,
}

/// What the buffer holds.
#[derive(Debug)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An informational (1xx) answer of this many bytes, to skip.
    Informational(usize),
    /// The final answer's head.
    Complete(Box<Head>),
}

fn protocol<T>(detail: impl Into<String>) -> Result<T, Violation> {
    Err(Violation::Protocol(detail.into()))
}

/// The status line and header lines of `buf`, or why they are not a head.
fn parse_lines<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut [httparse::Header<'b>],
) -> Result<Option<(httparse::Response<'h, 'b>, usize)>, Violation> {
    let mut response = httparse::Response::new(slots);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let code = response.code.unwrap_or(0);
            if !(100..=599).contains(&code) {
                return protocol(format!("status {code} is not an HTTP status"));
            }
            Ok(Some((response, len)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => protocol(format!("a response head over {} KiB", MAX_HEAD >> 10)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => protocol(format!("more than {MAX_HEADERS} header lines")),
        Err(e) => protocol(format!("a malformed response head ({e})")),
    }
}

/// Parses the response head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Violation> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Some((response, len)) = parse_lines(buf, &mut slots)? else { return Ok(Parsed::Partial) };
    if len > MAX_HEAD {
        return protocol(format!("a response head over {} KiB", MAX_HEAD >> 10));
    }
    let code = response.code.unwrap_or(0);
    if code == 101 {
        return protocol("an unsolicited 101 Switching Protocols");
    }
    if code < 200 {
        return Ok(Parsed::Informational(len));
    }
    let (mut te, mut cl) = (Vec::new(), Vec::new());
    let (mut close, mut keep) = (false, false);
    let mut first: [Option<&[u8]>; SINGLE.len()] = [None; SINGLE.len()];
    let mut encodings: Vec<&[u8]> = Vec::new();
    for h in response.headers.iter() {
        let (name, value) = (h.name, h.value);
        if name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            cl.push(value);
        } else if name.eq_ignore_ascii_case("connection") {
            close |= has_token(value, b"close");
            keep |= has_token(value, b"keep-alive");
        } else if name.eq_ignore_ascii_case("content-encoding") {
            encodings.push(value);
        } else if let Some(i) = SINGLE.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            match first[i] {
                None => first[i] = Some(value),
                // RFC 9110 §14.4: one range per 206. Two that differ leave no way to tell which
                // bytes the body holds.
                Some(v) if i == CONTENT_RANGE && v.trim_ascii() != value.trim_ascii() => {
                    return protocol(format!("two Content-Range values ({:?} and {:?})", printable(v), printable(value)));
                }
                Some(_) => {}
            }
        }
    }
    let http10 = response.version == Some(0);
    let (framing, no_reuse) = framing_of(code, http10, &te, &cl)?;
    let text = |i: usize| first[i].and_then(|v| std::str::from_utf8(v).ok()).map(str::trim);
    let content_encoding = (!encodings.is_empty())
        .then(|| encodings.iter().map(|v| String::from_utf8_lossy(v.trim_ascii()).into_owned()).collect::<Vec<_>>().join(", "));
    let head = ResponseHead {
        status: code,
        content_range: text(CONTENT_RANGE).map(str::to_string),
        content_length: if te.is_empty() { content_length_of(&cl)? } else { None },
        etag: text(1).map(str::to_string),
        last_modified: text(2).map(str::to_string),
        date: text(3).map(str::to_string),
        content_encoding,
        retry_after: text(4).and_then(|v| parse_retry_after(v, SystemTime::now())),
    };
    let keep_alive = !close && (!http10 || keep) && !no_reuse && !matches!(framing, Some(Framing::Close));
    let location = text(5).map(str::to_string);
    Ok(Parsed::Complete(Box::new(Head { head, location, framing, keep_alive, len })))
}

/// The [`ResponseHead`] of headers that arrive already parsed: what the OS reports of a response
/// it fetched (a hand-off chunk). The first line of each single-valued header counts; a body
/// under a transfer coding has no meaningful `Content-Length`.
pub fn head_from<'a>(status: u16, headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> ResponseHead {
    let mut first: [Option<&[u8]>; SINGLE.len()] = [None; SINGLE.len()];
    let (mut coded, mut length, mut encodings) = (false, None, Vec::new());
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = length.or(Some(value));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            encodings.push(String::from_utf8_lossy(value.trim_ascii()).into_owned());
        } else if let Some(i) = SINGLE.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            first[i].get_or_insert(value);
        }
    }
    let text = |v: Option<&'a [u8]>| v.and_then(|v| std::str::from_utf8(v).ok()).map(str::trim);
    ResponseHead {
        status,
        content_range: text(first[CONTENT_RANGE]).map(str::to_string),
        content_length: if coded { None } else { text(length).and_then(|v| v.parse().ok()) },
        etag: text(first[1]).map(str::to_string),
        last_modified: text(first[2]).map(str::to_string),
        date: text(first[3]).map(str::to_string),
        content_encoding: (!encodings.is_empty()).then(|| encodings.join(", ")),
        retry_after: text(first[4]).and_then(|v| parse_retry_after(v, SystemTime::now())),
    }
}

/// The status of a proxy's answer to `CONNECT` and the length of its head (a 2xx has no body).
pub fn parse_connect(buf: &[u8]) -> Result<Option<(u16, usize)>, Violation> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    Ok(parse_lines(buf, &mut slots)?.map(|(r, len)| (r.code.unwrap_or(0), len)))
}

/// Headers read once (the first line counts), in the order of [`parse`]'s slots.
const SINGLE: [&str; 6] = ["content-range", "etag", "last-modified", "date", "retry-after", "location"];
const CONTENT_RANGE: usize = 0;

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether `bytes` hold the empty line that ends a head (CRLF CRLF, or bare LFs).
pub fn holds_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

#[cfg(test)]
mod tests;
