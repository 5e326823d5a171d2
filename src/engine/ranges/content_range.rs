//! Parsing `Content-Range` response headers (RFC 9110 §14.4), byte unit only.
//!
//! Half-open `[start, end)` ranges are used everywhere inside the engine; HTTP speaks in inclusive
//! ends. The conversion happens here and in [`range_header`], nowhere else.

/// A parsed `Content-Range` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes first-last/total` or `bytes first-last/*`: the body holds `[start, end)`.
    Bytes {
        /// First byte offset (inclusive).
        start: u64,
        /// One past the last byte offset.
        end: u64,
        /// Complete length, when the server knows it.
        total: Option<u64>,
    },
    /// `bytes */total`: sent with 416 to tell the current length.
    Unsatisfied {
        /// Complete length.
        total: u64,
    },
}

/// Parses a `Content-Range` header value. Returns `None` for anything malformed, for other units,
/// and for ranges that contradict themselves (last < first, or last >= total).
pub fn parse(value: &str) -> Option<ContentRange> {
    let value = value.trim();
    let (unit, rest) = value.split_once([' ', '\t'])?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let rest = rest.trim_start();
    let (range, total) = rest.split_once('/')?;
    let range = range.trim();
    let total = total.trim();
    let total = if total == "*" { None } else { Some(parse_digits(total)?) };
    if range == "*" {
        return Some(ContentRange::Unsatisfied { total: total? });
    }
    let (first, last) = range.split_once('-')?;
    let first = parse_digits(first.trim())?;
    let last = parse_digits(last.trim())?;
    if last < first {
        return None;
    }
    if let Some(t) = total {
        if last >= t {
            return None;
        }
    }
    Some(ContentRange::Bytes { start: first, end: last.checked_add(1)?, total })
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The `Range` request header value for `[start, end)`; `end == None` asks for everything from `start`.
pub fn range_header(start: u64, end: Option<u64>) -> String {
    let mut n = itoa::Buffer::new();
    let mut h = String::with_capacity(48);
    h.push_str("bytes=");
    h.push_str(n.format(start));
    h.push('-');
    if let Some(end) = end {
        debug_assert!(end > start, "empty range requested");
        h.push_str(n.format(end - 1));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms() {
        assert_eq!(parse("bytes 0-499/1234"), Some(ContentRange::Bytes { start: 0, end: 500, total: Some(1234) }));
        assert_eq!(parse("bytes 500-999/*"), Some(ContentRange::Bytes { start: 500, end: 1000, total: None }));
        assert_eq!(parse("bytes */1234"), Some(ContentRange::Unsatisfied { total: 1234 }));
        assert_eq!(parse("BYTES  7-7/8"), Some(ContentRange::Bytes { start: 7, end: 8, total: Some(8) }));
    }

    #[test]
    fn rejects_contradictions_and_junk() {
        for bad in [
            "",
            "bytes",
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes 0-1",
            "bytes -1-2/3",
            "bytes 0-/10",
            "bytes 1-2/x",
            "bytes */*",
            "bytes 0-99999999999999999999/1",
            "bytes +1-2/3",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn range_header_uses_inclusive_end() {
        assert_eq!(range_header(0, Some(1)), "bytes=0-0");
        assert_eq!(range_header(100, Some(200)), "bytes=100-199");
        assert_eq!(range_header(5, None), "bytes=5-");
    }

    proptest! {
        #[test]
        fn round_trips_any_valid_range(start in 0u64..u64::MAX / 4, len in 1u64..u64::MAX / 4, extra in 0u64..1000) {
            let end = start + len;
            let total = end + extra;
            let text = format!("bytes {}-{}/{}", start, end - 1, total);
            prop_assert_eq!(parse(&text), Some(ContentRange::Bytes { start, end, total: Some(total) }));
            let header = range_header(start, Some(end));
            let inclusive_last: u64 = header.rsplit('-').next().unwrap().parse().unwrap();
            prop_assert_eq!(inclusive_last + 1, end);
        }

        #[test]
        fn never_panics_and_never_yields_empty_ranges(s in ".{0,40}") {
            if let Some(ContentRange::Bytes { start, end, total }) = parse(&s) {
                prop_assert!(end > start);
                if let Some(t) = total { prop_assert!(end <= t); }
            }
        }

        #[test]
        fn last_beyond_total_is_rejected(first in 0u64..1000, last in 0u64..1000, total in 0u64..1000) {
            let parsed = parse(&format!("bytes {first}-{last}/{total}"));
            prop_assert_eq!(parsed.is_some(), first <= last && last < total);
        }
    }
}
