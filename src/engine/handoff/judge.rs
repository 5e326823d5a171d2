//! Whether a chunk the OS fetched may be written: the engine's integrity contract, applied to an
//! answer that arrived as a file and a status line.
//!
//! A ranged lease is accepted only as a `206` whose `Content-Range` ends where the lease ends, in
//! a resource of the same length, with the validator sent in `If-Range` named and unchanged, no
//! content coding, and a staged file exactly as long as the lease. The `Content-Range` may start
//! later than the lease: when the app was suspended mid-chunk, iOS re-asked for the rest, stitched
//! both legs into one file and kept the second leg's `Content-Range` (measured by dictus-ios), so
//! a later start inside the lease is accepted when the file holds the whole lease. A `200` means
//! the resource changed (If-Range) or ranges are ignored: the download starts over, never
//! appends. A whole-file lease is accepted only as a `200` of the expected length.

use crate::engine::http::head::{head_from, ResponseHead};
use crate::engine::http::verdict::Validator;
use crate::engine::model::error::{Error, ErrorCode};
use crate::engine::ranges::content_range::{self, ContentRange};

/// The status and headers of the OS's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkMeta {
    /// HTTP status.
    pub status: u16,
    /// Response headers, as the OS reported them.
    pub headers: Vec<(String, String)>,
}

/// What a lease promised.
#[derive(Clone, Debug)]
pub struct Terms<'a> {
    /// First byte.
    pub start: u64,
    /// One past the last byte (`u64::MAX`: a whole-file lease of unknown length).
    pub end: u64,
    /// The resource's length, when known.
    pub total: Option<u64>,
    /// A whole-file lease (plain `GET`).
    pub whole: bool,
    /// The validator sent in `If-Range`.
    pub validator: Option<&'a Validator>,
}

/// The judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write the staged bytes at the lease's start.
    Accept,
    /// The resource changed, or the server does not honour ranges as needed: the download starts
    /// over (the chunk is not written).
    Restart {
        /// Why.
        code: ErrorCode,
        /// Details.
        reason: String,
    },
    /// Not written; the lease goes back to the engine.
    Reject {
        /// Why.
        error: Error,
        /// Another try may succeed (a 5xx, a short file); else the task fails.
        retryable: bool,
        /// 401 or 403: the request's credentials need refreshing.
        credentials: bool,
    },
}

fn restart(code: ErrorCode, reason: impl Into<String>) -> Verdict {
    Verdict::Restart { code, reason: reason.into() }
}

fn reject(code: ErrorCode, reason: impl Into<String>, retryable: bool) -> Verdict {
    Verdict::Reject { error: Error::new(code, reason), retryable, credentials: false }
}

/// The values of header `name`, trimmed.
fn values<'a>(meta: &'a ChunkMeta, name: &str) -> Vec<&'a str> {
    meta.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()).collect()
}

/// A framing field sent twice with different values (a `Content-Length` list counts).
fn contradictory(meta: &ChunkMeta, name: &str) -> bool {
    let mut all = values(meta, name).into_iter().flat_map(|v| v.split(',')).map(str::trim);
    match all.next() {
        Some(first) => all.any(|v| v != first),
        None => false,
    }
}

fn head_of(meta: &ChunkMeta) -> ResponseHead {
    head_from(meta.status, meta.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
}

/// Judges the OS's answer for a lease whose chunk was staged as `staged_len` bytes.
pub fn judge(terms: &Terms<'_>, meta: &ChunkMeta, staged_len: u64) -> Verdict {
    for name in ["content-range", "content-length"] {
        if contradictory(meta, name) {
            return reject(ErrorCode::RangeMismatch, format!("the answer carries conflicting {name} values"), true);
        }
    }
    let head = head_of(meta);
    match head.status {
        200..=299 if !identity(&head) => restart(ErrorCode::UnsupportedEncoding, "the chunk is content-coded"),
        200 if terms.whole => judge_whole(terms, &head, staged_len),
        200 => {
            restart(ErrorCode::ContentChanged, "a ranged request was answered with the whole resource (it changed, or ranges are ignored)")
        }
        206 if terms.whole => reject(ErrorCode::RangeMismatch, "a plain request was answered with a range", true),
        206 => judge_range(terms, &head, staged_len),
        416 => restart(ErrorCode::RangeMismatch, "the server says the range is not satisfiable (the resource shrank?)"),
        s => {
            let error = Error::from_status(s, head.retry_after);
            let credentials = matches!(s, 401 | 403);
            let retryable = credentials || error.is_retryable();
            Verdict::Reject { error, retryable, credentials }
        }
    }
}

fn identity(head: &ResponseHead) -> bool {
    match head.content_encoding.as_deref().map(str::trim) {
        None | Some("") => true,
        Some(e) => e.eq_ignore_ascii_case("identity"),
    }
}

fn judge_whole(terms: &Terms<'_>, head: &ResponseHead, staged_len: u64) -> Verdict {
    if let Some(total) = terms.total {
        if staged_len != total {
            return if staged_len < total {
                reject(ErrorCode::TruncatedBody, format!("the chunk holds {staged_len} of {total} bytes"), true)
            } else {
                restart(ErrorCode::ContentChanged, format!("the resource is {staged_len} bytes now, not {total}"))
            };
        }
    }
    if head.content_length.is_some_and(|l| l != staged_len) {
        return reject(ErrorCode::TruncatedBody, format!("the chunk holds {staged_len} bytes, its Content-Length says otherwise"), true);
    }
    Verdict::Accept
}

fn judge_range(terms: &Terms<'_>, head: &ResponseHead, staged_len: u64) -> Verdict {
    if let Some(v) = terms.validator {
        if v.contradicted_by(head) {
            return restart(ErrorCode::ContentChanged, "the validator changed between requests");
        }
    }
    let Some(ContentRange::Bytes { start: a, end: b, total: t }) = head.content_range.as_deref().and_then(content_range::parse) else {
        return restart(ErrorCode::RangeMismatch, "206 without a usable Content-Range");
    };
    let Some(t) = t else { return restart(ErrorCode::RangeMismatch, "Content-Range without a length") };
    if terms.total.is_some_and(|total| total != t) {
        return restart(ErrorCode::ContentChanged, format!("length changed from {} to {t}", terms.total.unwrap_or(0)));
    }
    if head.content_length.is_some_and(|l| l != b - a) {
        return reject(ErrorCode::RangeMismatch, "Content-Length disagrees with Content-Range", true);
    }
    if b != terms.end || a < terms.start {
        return restart(ErrorCode::RangeMismatch, format!("asked for bytes {}-{}, got {}-{}", terms.start, terms.end - 1, a, b - 1));
    }
    if terms.validator.is_some_and(|v| v.echoed_by(head).is_none()) {
        // The engine's own rule (RFC 9110 §15.3.7): without the validator nothing shows that
        // If-Range was evaluated. The bytes are not trusted, but the rest of the download is kept:
        // the engine fetches the range itself, under that rule.
        return reject(ErrorCode::RangeMismatch, "206 without the validator sent in If-Range", true);
    }
    let want = terms.end - terms.start;
    if staged_len != want {
        let resumed = if a > terms.start { " (a resumed leg)" } else { "" };
        return reject(ErrorCode::TruncatedBody, format!("the chunk holds {staged_len} of {want} bytes{resumed}"), true);
    }
    Verdict::Accept
}

#[cfg(test)]
mod tests;
