//! The parts of a response head the engine reads, taken from the wire in one pass. Both
//! clients fill it; the verdict rules judge it.

use crate::engine::model::retry::parse_retry_after;
use std::time::{Duration, SystemTime};

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
    /// `Content-Encoding`, if sent.
    pub content_encoding: Option<String>,
    /// `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
}

/// The response headers the engine reads, in the order of [`head_from`]'s slots.
const HEAD_NAMES: [&str; 8] =
    ["transfer-encoding", "content-range", "content-length", "etag", "last-modified", "date", "content-encoding", "retry-after"];

/// What the engine needs of a response head: one pass over the headers, taking the first value of
/// each name as `HeaderMap::get` would (eight lookups hashed every name: 300 instructions each,
/// eight per response).
pub fn head_from<'a>(status: u16, headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> ResponseHead {
    let mut first: [Option<&[u8]>; 8] = [None; 8];
    for (name, value) in headers {
        if let Some(i) = HEAD_NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            first[i].get_or_insert(value);
        }
    }
    let text = |i: usize| first[i].and_then(|v| std::str::from_utf8(v).ok()).map(str::trim);
    let chunked = text(0).is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    ResponseHead {
        status,
        content_range: text(1).map(str::to_string),
        content_length: if chunked { None } else { text(2).and_then(|v| v.parse().ok()) },
        etag: text(3).map(str::to_string),
        last_modified: text(4).map(str::to_string),
        date: text(5).map(str::to_string),
        content_encoding: text(6).map(str::to_string),
        retry_after: text(7).and_then(|v| parse_retry_after(v, SystemTime::now())),
    }
}
