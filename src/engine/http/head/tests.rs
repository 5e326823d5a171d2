//! Heads, one rule at a time, and a random-bytes harness over the parser.

use super::*;
use proptest::prelude::*;

fn complete(wire: &[u8]) -> Head {
    match parse(wire) {
        Ok(Parsed::Complete(h)) => *h,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(wire)),
    }
}

fn refused(wire: &[u8]) -> bool {
    matches!(parse(wire), Err(Violation::Protocol(_)))
}

#[test]
fn a_head_yields_what_the_rules_read() {
    let h = complete(
        b"HTTP/1.1 206 Partial\r\nContent-Length: 42\r\nETag: \"v1\"\r\nContent-Range: bytes 0-41/42\r\nContent-Range: bytes 0-41/42 \r\n\
          Retry-After: 3\r\nX-Other: y\r\nLocation: /next\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\n\r\nBODY",
    );
    assert_eq!(h.head.status, 206);
    assert_eq!(h.head.content_length, Some(42));
    assert_eq!(h.head.etag.as_deref(), Some("\"v1\""));
    assert_eq!(h.head.content_range.as_deref(), Some("bytes 0-41/42"), "the same range twice is one range");
    assert_eq!(h.head.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(h.head.content_encoding.as_deref(), Some("identity, gzip"), "every coding counts");
    assert_eq!(h.location.as_deref(), Some("/next"));
    assert_eq!(h.framing, Some(Framing::Length(42)));
    assert!(h.keep_alive);
    assert_eq!(
        &b"HTTP/1.1 206 Partial\r\nContent-Length: 42\r\nETag: \"v1\"\r\nContent-Range: bytes 0-41/42\r\nContent-Range: bytes 0-41/42 \r\n\
          Retry-After: 3\r\nX-Other: y\r\nLocation: /next\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\n\r\n"[..]
            .len(),
        &h.len
    );
    let chunked = complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n");
    assert_eq!(chunked.head.content_length, None, "a chunked body has no length");
    assert!(!chunked.keep_alive, "a length beside chunked: the connection is not reused");
    assert!(!complete(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").keep_alive);
    assert!(complete(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n").keep_alive);
    assert!(!complete(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\n").keep_alive);
    assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive, "read to the close");
    assert!(complete(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n").keep_alive, "bare LFs end lines");
}

#[test]
fn informational_answers_are_skipped_and_101_is_refused() {
    assert!(matches!(parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), Ok(Parsed::Informational(25))));
    assert!(matches!(parse(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"), Ok(Parsed::Informational(_))));
    assert!(refused(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
    assert!(matches!(parse(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(Parsed::Partial)));
}

#[test]
fn malformed_heads_are_protocol_errors() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: b\r\n\tc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n X-A: b\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 600 High\r\n\r\n",
        b"HTTP/1.1 999 High\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: \x7f\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-99/100\r\nContent-Range: bytes 0-99/4194304\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-foo\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(refused(wire), "{:?}", String::from_utf8_lossy(wire));
    }
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(refused(&many), "too many header lines");
    let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    assert!(refused(&long), "a line longer than the whole head may be, before its end arrived");
    long.extend_from_slice(b"\r\n\r\n");
    assert!(refused(&long), "and after");
}

#[test]
fn the_blank_line_scan_finds_every_end_of_head() {
    assert!(holds_blank_line(b"HTTP/1.1 200 OK\r\n\r\n"));
    assert!(holds_blank_line(b"HTTP/1.1 200 OK\n\n"));
    assert!(holds_blank_line(b"x\n\r\n"));
    assert!(!holds_blank_line(b"HTTP/1.1 200 OK\r\nA: b\r\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random damage to a valid head never panics, and whatever is accepted keeps the rules: a
    /// length only from one plain number, no transfer coding but a lone chunked, a status in range.
    #[test]
    fn damaged_heads_are_parsed_or_refused_never_misread(
        flips in proptest::collection::vec((any::<usize>(), prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b','), Just(0u8), Just(b'+'), Just(b'1'), any::<u8>()]), 0..6),
        cut in any::<usize>(),
        te in prop_oneof![Just(""), Just("chunked"), Just("gzip"), Just("gzip, chunked"), Just("chunked, chunked")],
        cl in prop_oneof![Just("".to_string()), "[0-9]{1,20}", Just("5, 5".to_string()), Just("5, 6".to_string())],
    ) {
        let mut wire = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-4/10\r\nETag: \"e\"\r\n".to_vec();
        if !te.is_empty() {
            wire.extend_from_slice(format!("Transfer-Encoding: {te}\r\n").as_bytes());
        }
        if !cl.is_empty() {
            wire.extend_from_slice(format!("Content-Length: {cl}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        for (i, b) in &flips {
            let i = i % wire.len();
            wire[i] = *b;
        }
        wire.truncate(cut % (wire.len() + 1));
        if let Ok(Parsed::Complete(h)) = parse(&wire) {
            prop_assert!((200..=599).contains(&h.head.status));
            prop_assert!(h.len <= wire.len());
            let text = String::from_utf8_lossy(&wire[..h.len]).to_ascii_lowercase();
            if let Some(Framing::Length(n)) = h.framing {
                prop_assert!(text.contains(&format!("{n}")), "{n} not in {text:?}");
                prop_assert!(!text.contains("transfer-encoding"));
            }
            if matches!(h.framing, Some(Framing::Chunked(_))) {
                prop_assert!(text.contains("chunked"));
                prop_assert!(!text.contains("gzip"));
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&wire);
        let _ = parse_connect(&wire);
        let mut with_start = b"HTTP/1.1 200 OK\r\n".to_vec();
        with_start.extend_from_slice(&wire);
        let _ = parse(&with_start);
    }
}
