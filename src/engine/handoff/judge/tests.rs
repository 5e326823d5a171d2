//! Every rule of a chunk's judgement, one answer at a time.

use super::*;

const MIB: u64 = 1 << 20;

fn etag() -> Validator {
    Validator::ETag("\"v1\"".into())
}

fn meta(status: u16, headers: &[(&str, &str)]) -> ChunkMeta {
    ChunkMeta { status, headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect() }
}

fn ranged(v: &Validator) -> Terms<'_> {
    Terms { start: 32 * MIB, end: 64 * MIB, total: Some(100 * MIB), whole: false, validator: Some(v) }
}

fn cr(a: u64, b_incl: u64, t: u64) -> String {
    format!("bytes {a}-{b_incl}/{t}")
}

#[test]
fn the_exact_range_of_the_same_version_is_accepted() {
    let v = etag();
    let m = meta(
        206,
        &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB)), ("ETag", "\"v1\""), ("Content-Length", &(32 * MIB).to_string())],
    );
    assert_eq!(judge(&ranged(&v), &m, 32 * MIB), Verdict::Accept);
    let no_validator = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB))]);
    assert!(
        matches!(judge(&ranged(&v), &no_validator, 32 * MIB), Verdict::Reject { retryable: true, .. }),
        "a 206 that does not name the validator sent in If-Range is not trusted, but the download is kept"
    );
    let unvalidated = Terms { validator: None, ..ranged(&v) };
    assert_eq!(judge(&unvalidated, &no_validator, 32 * MIB), Verdict::Accept, "a lease sent without If-Range asks for no validator");
}

#[test]
fn a_self_resumed_leg_is_accepted_only_with_the_whole_lease_in_the_file() {
    let v = etag();
    let m = meta(206, &[("Content-Range", &cr(40 * MIB, 64 * MIB - 1, 100 * MIB)), ("ETag", "\"v1\"")]);
    assert_eq!(judge(&ranged(&v), &m, 32 * MIB), Verdict::Accept);
    assert!(matches!(judge(&ranged(&v), &m, 24 * MIB), Verdict::Reject { retryable: true, .. }), "only the last leg: refused");
    let before = meta(206, &[("Content-Range", &cr(31 * MIB, 64 * MIB - 1, 100 * MIB))]);
    assert!(
        matches!(judge(&ranged(&v), &before, 33 * MIB), Verdict::Restart { code: ErrorCode::RangeMismatch, .. }),
        "a start before the lease"
    );
}

#[test]
fn a_changed_resource_restarts_and_is_never_stitched() {
    let v = etag();
    let other = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB)), ("ETag", "\"v2\"")]);
    assert!(matches!(judge(&ranged(&v), &other, 32 * MIB), Verdict::Restart { code: ErrorCode::ContentChanged, .. }));
    let longer = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 101 * MIB))]);
    assert!(matches!(judge(&ranged(&v), &longer, 32 * MIB), Verdict::Restart { code: ErrorCode::ContentChanged, .. }));
    let whole = meta(200, &[("Content-Length", &(100 * MIB).to_string())]);
    assert!(matches!(judge(&ranged(&v), &whole, 100 * MIB), Verdict::Restart { code: ErrorCode::ContentChanged, .. }), "200 to a range");
    assert!(matches!(judge(&ranged(&v), &meta(416, &[("Content-Range", "bytes */10")]), 0), Verdict::Restart { .. }));
    let other_end = meta(206, &[("Content-Range", &cr(32 * MIB, 63 * MIB, 100 * MIB))]);
    assert!(matches!(judge(&ranged(&v), &other_end, 31 * MIB + 1), Verdict::Restart { code: ErrorCode::RangeMismatch, .. }));
    let coded = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB)), ("Content-Encoding", "gzip")]);
    assert!(matches!(judge(&ranged(&v), &coded, 32 * MIB), Verdict::Restart { code: ErrorCode::UnsupportedEncoding, .. }));
}

#[test]
fn contradictory_framing_and_errors_are_refused() {
    let v = etag();
    let twice = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB)), ("Content-Range", "bytes 0-99/100")]);
    assert!(matches!(judge(&ranged(&v), &twice, 32 * MIB), Verdict::Reject { retryable: true, .. }));
    let lying = meta(206, &[("Content-Range", &cr(32 * MIB, 64 * MIB - 1, 100 * MIB)), ("Content-Length", "100")]);
    assert!(matches!(judge(&ranged(&v), &lying, 32 * MIB), Verdict::Reject { .. }));
    for (status, retryable, credentials) in
        [(401, true, true), (403, true, true), (503, true, false), (429, true, false), (404, false, false)]
    {
        match judge(&ranged(&v), &meta(status, &[]), 0) {
            Verdict::Reject { retryable: r, credentials: c, error } => {
                assert_eq!((r, c), (retryable, credentials), "{status}");
                assert_eq!(error.http_status(), Some(status));
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[test]
fn a_whole_file_lease_takes_only_a_complete_200() {
    let terms = Terms { start: 0, end: 1000, total: Some(1000), whole: true, validator: None };
    assert_eq!(judge(&terms, &meta(200, &[("Content-Length", "1000")]), 1000), Verdict::Accept);
    assert!(matches!(judge(&terms, &meta(200, &[]), 999), Verdict::Reject { retryable: true, .. }));
    assert!(matches!(judge(&terms, &meta(200, &[]), 1001), Verdict::Restart { .. }));
    assert!(matches!(judge(&terms, &meta(206, &[("Content-Range", "bytes 0-999/1000")]), 1000), Verdict::Reject { .. }));
    let unknown = Terms { start: 0, end: u64::MAX, total: None, whole: true, validator: None };
    assert_eq!(judge(&unknown, &meta(200, &[]), 12345), Verdict::Accept);
    assert!(matches!(judge(&unknown, &meta(200, &[("Content-Length", "5")]), 12345), Verdict::Reject { .. }));
}
