//! Sans-I/O judgement of HTTP responses: what a probe tells us, and whether a ranged answer may be
//! written into the part file.
//!
//! These rules are the engine's integrity contract, so they live apart from any transport: the
//! in-process connections use them today, and chunks fetched by the OS (iOS background sessions,
//! Android jobs) will be judged by the same functions when they are spliced back.
//!
//! The rules:
//! - A probe (`Range: bytes=0-`) answered 206 proves range support; 200 means one plain stream.
//! - A 206 whose `Content-Length` is not the length of its `Content-Range` contradicts itself, and
//!   proves no range: a probe asks again without `Range`, a ranged answer restarts (and after the
//!   restart budget, one plain `GET`). Its body is still delimited by its own framing, so the
//!   connection's bytes are intact; only the claim about which bytes they are is not.
//! - A ranged answer is accepted only as 206 whose `Content-Range` is exactly the range asked for,
//!   whose total equals the known total, which carries the validator sent in `If-Range` unchanged
//!   (a 206 without it does not show that `If-Range` was evaluated), and whose body is not
//!   content-coded.
//! - Validators are a strong ETag, else a Last-Modified date at least a second older than the
//!   response's `Date` (RFC 9110 §8.8.2.2); anything weaker is no validator at all. A 200 means the server ignored `Range`, or `If-Range` found the
//!   resource changed: either way the download restarts from zero, it never appends or stitches.

use super::head::ResponseHead;
use crate::engine::model::error::{Error, ErrorCode};
use crate::engine::ranges::content_range::{self, ContentRange};

/// What identifies one version of the remote resource, for `If-Range`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validator {
    /// A strong entity tag, quotes included (weak tags are never used).
    ETag(String),
    /// An HTTP date.
    LastModified(String),
}

impl Validator {
    /// Picks the validator to trust from a response: a strong ETag, else a strong Last-Modified.
    ///
    /// A Last-Modified date is strong only when the response's `Date` is at least one second later
    /// (RFC 9110 §8.8.2.2, required for `If-Range` by §13.1.5): a file modified in the second it
    /// was served may change again within that second and keep its date.
    pub fn from_head(head: &ResponseHead) -> Option<Validator> {
        if let Some(tag) = head.etag.as_deref().map(str::trim) {
            if is_strong_etag(tag) {
                return Some(Validator::ETag(tag.to_string()));
            }
        }
        let modified = head.last_modified.as_deref().map(str::trim)?;
        let at = httpdate::parse_http_date(modified).ok()?;
        let served = httpdate::parse_http_date(head.date.as_deref()?.trim()).ok()?;
        let settled = served.duration_since(at).is_ok_and(|d| d >= std::time::Duration::from_secs(1));
        settled.then(|| Validator::LastModified(modified.to_string()))
    }

    /// The `If-Range` header value.
    pub fn if_range(&self) -> &str {
        match self {
            Validator::ETag(t) | Validator::LastModified(t) => t,
        }
    }

    /// Whether a response contradicts this validator. A response that omits the field agrees.
    pub fn contradicted_by(&self, head: &ResponseHead) -> bool {
        self.echoed_by(head).is_some_and(|same| !same)
    }

    /// Whether a response carries this validator's field: `Some(true)` when it holds the same
    /// value, `Some(false)` when another, `None` when the field is missing.
    pub fn echoed_by(&self, head: &ResponseHead) -> Option<bool> {
        match self {
            Validator::ETag(t) => head.etag.as_deref().map(|other| other.trim() == t),
            Validator::LastModified(d) => head.last_modified.as_deref().map(|other| other.trim() == d),
        }
    }

    /// Splits into the two persisted columns (etag, last_modified).
    pub fn to_columns(v: &Option<Validator>) -> (Option<String>, Option<String>) {
        match v {
            Some(Validator::ETag(t)) => (Some(t.clone()), None),
            Some(Validator::LastModified(d)) => (None, Some(d.clone())),
            None => (None, None),
        }
    }

    /// Rebuilds from the persisted columns.
    pub fn from_columns(etag: Option<String>, last_modified: Option<String>) -> Option<Validator> {
        etag.map(Validator::ETag).or(last_modified.map(Validator::LastModified))
    }
}

/// What a response said about the version it served: its `ETag` (weak or strong) and
/// `Last-Modified`, as sent. Weaker than a [`Validator`] (it cannot go into `If-Range`), but a
/// later answer naming another version still proves the resource changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `ETag`, if sent.
    pub etag: Option<String>,
    /// `Last-Modified`, if sent.
    pub last_modified: Option<String>,
}

impl Identity {
    /// The identity a response claims.
    pub fn of(head: &ResponseHead) -> Identity {
        let field = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        Identity { etag: field(&head.etag), last_modified: field(&head.last_modified) }
    }

    /// The identity a stored validator stands for.
    pub fn of_validator(v: Option<&Validator>) -> Identity {
        match v {
            Some(Validator::ETag(t)) => Identity { etag: Some(t.clone()), last_modified: None },
            Some(Validator::LastModified(d)) => Identity { etag: None, last_modified: Some(d.clone()) },
            None => Identity::default(),
        }
    }

    /// Whether `head` names another version: a field both carry differs.
    pub fn differs(&self, head: &ResponseHead) -> bool {
        let other = Identity::of(head);
        let differ = |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        differ(&self.etag, &other.etag) || differ(&self.last_modified, &other.last_modified)
    }
}

/// A strong entity tag is a quoted string without the `W/` prefix.
pub fn is_strong_etag(tag: &str) -> bool {
    tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')
}

/// Whether every content coding named (all `Content-Encoding` lines, comma-separated) is
/// `identity`.
fn is_identity(encoding: &Option<String>) -> bool {
    encoding.as_deref().is_none_or(|e| e.split(',').map(str::trim).all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity")))
}

/// Whether a 206's `Content-Length` is not the span of its `Content-Range` (RFC 9110 §14.4,
/// §15.3.7): the 4 MiB body of a 206 claiming `bytes 0-99/100` is not a 100-byte resource.
fn contradicts_itself(head: &ResponseHead) -> bool {
    let range = head.content_range.as_deref().and_then(content_range::parse);
    matches!((range, head.content_length), (Some(ContentRange::Bytes { start, end, .. }), Some(len)) if len != end - start)
}

/// What a probe (`GET` with `Range: bytes=0-`, or a plain `GET`) revealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// 206: ranges work. The body covers `[0, body_end)`; `total` is the resource length.
    Ranged {
        /// Resource length.
        total: u64,
        /// End of what this response body carries (the server may send less than asked).
        body_end: u64,
        /// Validator for later `If-Range`.
        validator: Option<Validator>,
    },
    /// 200: one stream, no ranges. `total` when the server sent a length.
    Whole {
        /// Length, when known.
        total: Option<u64>,
        /// Validator, if any (kept for information; a restart never appends).
        validator: Option<Validator>,
    },
    /// The resource is empty (416 with `bytes */0`).
    Empty,
    /// The server refused the range in a way that says nothing useful; ask again without `Range`.
    RetryWithoutRange,
}

/// Judges a probe response. Errors carry the HTTP status (retryable or not).
pub fn judge_probe(head: &ResponseHead, asked_range: bool) -> Result<Probe, Error> {
    match head.status {
        206 if asked_range => {
            // A content-coded 206 is never used (its range counts coded bytes): nothing of it is
            // written, whatever its fields say.
            if !is_identity(&head.content_encoding) {
                return Ok(Probe::RetryWithoutRange);
            }
            if contradicts_itself(head) {
                return Ok(Probe::RetryWithoutRange);
            }
            match head.content_range.as_deref().and_then(content_range::parse) {
                Some(ContentRange::Bytes { start: 0, end, total: Some(total) }) => {
                    Ok(Probe::Ranged { total, body_end: end, validator: Validator::from_head(head) })
                }
                _ => Ok(Probe::RetryWithoutRange),
            }
        }
        200 => Ok(Probe::Whole { total: head.content_length, validator: Validator::from_head(head) }),
        416 if asked_range => match head.content_range.as_deref().and_then(content_range::parse) {
            Some(ContentRange::Unsatisfied { total: 0 }) => Ok(Probe::Empty),
            _ => Ok(Probe::RetryWithoutRange),
        },
        206 | 416 => Err(Error::new(ErrorCode::RangeMismatch, format!("server answered HTTP {} to a request without Range", head.status))),
        s => Err(Error::from_status(s, head.retry_after)),
    }
}

/// What to do with the answer to a ranged request for `[start, end)` of a resource of length `total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Exactly what was asked: write the body at `start`.
    Accept,
    /// The resource changed or the server does not honour ranges the way we need:
    /// restart the whole download from zero.
    Restart {
        /// Why, for logs and the final error if restarts run out.
        code: ErrorCode,
        /// Human explanation.
        reason: String,
    },
}

/// Judges the answer to `Range: bytes=start-(end-1)` sent with `If-Range: validator`, for a
/// resource whose first answer claimed the identity `seen`.
pub fn judge_range(
    head: &ResponseHead,
    start: u64,
    end: u64,
    total: u64,
    validator: Option<&Validator>,
    seen: &Identity,
) -> Result<RangeAnswer, Error> {
    let restart = |code: ErrorCode, reason: String| Ok(RangeAnswer::Restart { code, reason });
    match head.status {
        206 => {
            if !is_identity(&head.content_encoding) {
                return restart(ErrorCode::UnsupportedEncoding, "ranged body is content-coded".into());
            }
            if contradicts_itself(head) {
                return restart(ErrorCode::RangeMismatch, "Content-Length disagrees with Content-Range".into());
            }
            if seen.differs(head) {
                return restart(ErrorCode::ContentChanged, "ETag or Last-Modified changed between requests".into());
            }
            if let Some(v) = validator {
                match v.echoed_by(head) {
                    Some(true) => {}
                    Some(false) => return restart(ErrorCode::ContentChanged, "validator changed between requests".into()),
                    // RFC 9110 §15.3.7: a 206 carries the validator a 200 would. Without it nothing
                    // shows the server evaluated If-Range rather than ignored it.
                    None => return restart(ErrorCode::RangeMismatch, "206 without the validator sent in If-Range".into()),
                }
            }
            match head.content_range.as_deref().and_then(content_range::parse) {
                Some(ContentRange::Bytes { start: s, end: e, total: t }) => {
                    if t.is_some_and(|t| t != total) {
                        return restart(ErrorCode::ContentChanged, format!("length changed from {total} to {}", t.unwrap_or(0)));
                    }
                    if s != start || e != end {
                        return restart(ErrorCode::RangeMismatch, format!("asked for bytes {}-{}, got {}-{}", start, end - 1, s, e - 1));
                    }
                    if t.is_none() {
                        return restart(ErrorCode::RangeMismatch, "Content-Range without a length".into());
                    }
                    Ok(RangeAnswer::Accept)
                }
                _ => restart(ErrorCode::RangeMismatch, "206 without a usable Content-Range".into()),
            }
        }
        200 => restart(ErrorCode::ContentChanged, "server sent the whole resource to a ranged request".into()),
        416 => restart(ErrorCode::ContentChanged, "range not satisfiable: the resource shrank".into()),
        s => Err(Error::from_status(s, head.retry_after)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, cr: Option<&str>) -> ResponseHead {
        ResponseHead { status, content_range: cr.map(String::from), ..Default::default() }
    }

    #[test]
    fn weak_etags_are_never_validators() {
        let mut h = head(200, None);
        h.etag = Some("W/\"abc\"".into());
        assert_eq!(Validator::from_head(&h), None);
        h.last_modified = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
        assert_eq!(Validator::from_head(&h), None, "a date without the response's Date is weak");
        h.date = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
        assert_eq!(Validator::from_head(&h), None, "modified in the second it was served: weak");
        h.date = Some("Wed, 21 Oct 2015 07:28:01 GMT".into());
        assert_eq!(Validator::from_head(&h), Some(Validator::LastModified("Wed, 21 Oct 2015 07:28:00 GMT".into())));
        h.etag = Some("\"abc\"".into());
        assert_eq!(Validator::from_head(&h), Some(Validator::ETag("\"abc\"".into())));
        h.etag = None;
        h.last_modified = Some("yesterday".into());
        assert_eq!(Validator::from_head(&h), None);
    }

    #[test]
    fn probe_outcomes() {
        assert_eq!(
            judge_probe(&head(206, Some("bytes 0-99/100")), true).unwrap(),
            Probe::Ranged { total: 100, body_end: 100, validator: None }
        );
        assert_eq!(
            judge_probe(&head(206, Some("bytes 0-9/100")), true).unwrap(),
            Probe::Ranged { total: 100, body_end: 10, validator: None }
        );
        assert_eq!(judge_probe(&head(206, Some("bytes 5-9/100")), true).unwrap(), Probe::RetryWithoutRange);
        assert_eq!(judge_probe(&head(206, None), true).unwrap(), Probe::RetryWithoutRange);
        assert_eq!(judge_probe(&head(416, Some("bytes */0")), true).unwrap(), Probe::Empty);
        assert_eq!(judge_probe(&head(416, Some("bytes */10")), true).unwrap(), Probe::RetryWithoutRange);
        let mut liar = head(206, Some("bytes 0-99/4194304"));
        liar.content_length = Some(4194304);
        assert_eq!(judge_probe(&liar, true).unwrap(), Probe::RetryWithoutRange, "a length the range does not span");
        let mut whole = head(200, None);
        whole.content_length = Some(42);
        assert_eq!(judge_probe(&whole, true).unwrap(), Probe::Whole { total: Some(42), validator: None });
        assert_eq!(judge_probe(&head(404, None), true).unwrap_err().code(), ErrorCode::NotFound);
        assert!(judge_probe(&head(503, None), true).unwrap_err().is_retryable());
    }

    #[test]
    fn another_identity_means_another_version_even_without_a_validator() {
        let mut first = head(206, Some("bytes 0-9/100"));
        first.etag = Some("W/\"1\"".into());
        first.last_modified = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
        let seen = Identity::of(&first);
        let mut later = head(206, Some("bytes 10-19/100"));
        assert_eq!(judge_range(&later, 10, 20, 100, None, &seen).unwrap(), RangeAnswer::Accept, "missing fields agree");
        later.etag = Some("W/\"1\"".into());
        assert_eq!(judge_range(&later, 10, 20, 100, None, &seen).unwrap(), RangeAnswer::Accept);
        later.last_modified = Some("Wed, 21 Oct 2015 07:29:00 GMT".into());
        assert!(matches!(
            judge_range(&later, 10, 20, 100, None, &seen).unwrap(),
            RangeAnswer::Restart { code: ErrorCode::ContentChanged, .. }
        ));
        later.last_modified = None;
        later.etag = Some("W/\"2\"".into());
        assert!(matches!(
            judge_range(&later, 10, 20, 100, None, &seen).unwrap(),
            RangeAnswer::Restart { code: ErrorCode::ContentChanged, .. }
        ));
    }

    #[test]
    fn range_answers_must_match_exactly() {
        let v = Validator::ETag("\"v1\"".into());
        let mut ok = head(206, Some("bytes 10-19/100"));
        assert!(matches!(
            judge_range(&ok, 10, 20, 100, Some(&v), &Identity::default()).unwrap(),
            RangeAnswer::Restart { code: ErrorCode::RangeMismatch, .. }
        ));
        assert_eq!(judge_range(&ok, 10, 20, 100, None, &Identity::default()).unwrap(), RangeAnswer::Accept);
        ok.etag = Some("\"v1\"".into());
        assert_eq!(judge_range(&ok, 10, 20, 100, Some(&v), &Identity::default()).unwrap(), RangeAnswer::Accept);
        for (cr, code) in [
            ("bytes 11-19/100", ErrorCode::RangeMismatch),
            ("bytes 10-20/100", ErrorCode::RangeMismatch),
            ("bytes 10-19/101", ErrorCode::ContentChanged),
            ("bytes 10-19/*", ErrorCode::RangeMismatch),
        ] {
            let mut h = head(206, Some(cr));
            h.etag = Some("\"v1\"".into());
            match judge_range(&h, 10, 20, 100, Some(&v), &Identity::default()).unwrap() {
                RangeAnswer::Restart { code: c, .. } => assert_eq!(c, code, "{cr}"),
                other => panic!("{cr}: {other:?}"),
            }
        }
        let mut changed = ok.clone();
        changed.etag = Some("\"v2\"".into());
        assert!(matches!(
            judge_range(&changed, 10, 20, 100, Some(&v), &Identity::default()).unwrap(),
            RangeAnswer::Restart { code: ErrorCode::ContentChanged, .. }
        ));
        let mut gz = ok.clone();
        gz.content_encoding = Some("gzip".into());
        assert!(matches!(judge_range(&gz, 10, 20, 100, Some(&v), &Identity::default()).unwrap(), RangeAnswer::Restart { .. }));
        let mut bad_len = ok.clone();
        bad_len.content_length = Some(5);
        assert!(matches!(
            judge_range(&bad_len, 10, 20, 100, Some(&v), &Identity::default()).unwrap(),
            RangeAnswer::Restart { code: ErrorCode::RangeMismatch, .. }
        ));
        bad_len.content_length = Some(10);
        assert_eq!(judge_range(&bad_len, 10, 20, 100, Some(&v), &Identity::default()).unwrap(), RangeAnswer::Accept);
        let mut gz_listed = ok.clone();
        gz_listed.content_encoding = Some("identity, gzip".into());
        assert!(matches!(judge_range(&gz_listed, 10, 20, 100, Some(&v), &Identity::default()).unwrap(), RangeAnswer::Restart { .. }));
        assert!(matches!(judge_range(&head(200, None), 10, 20, 100, Some(&v), &Identity::default()).unwrap(), RangeAnswer::Restart { .. }));
        assert_eq!(judge_range(&head(410, None), 10, 20, 100, Some(&v), &Identity::default()).unwrap_err().code(), ErrorCode::NotFound);
    }
}
