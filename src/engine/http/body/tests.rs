//! The framing rules and the decoder, case by case.

use super::*;

/// How a run ended (the body and what stayed in the buffer, or the violation), the bytes handed
/// out, and how many of them were verified.
pub(super) type Run = (Result<(Vec<u8>, Vec<u8>), Violation>, Vec<u8>, u64);

/// Feeds `wire` in pieces of `piece` bytes and collects the body, as the reader would; also returns
/// what stayed in the buffer and how many body bytes were verified.
pub(super) fn run(framing: Framing, wire: &[u8], piece: usize) -> Run {
    let mut d = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        let step = match d.step(&mut buf) {
            Ok(s) => s,
            Err(e) => return (Err(e), body, d.verified()),
        };
        match step {
            Step::Data(data) => body.extend_from_slice(&data),
            Step::End => return (Ok((body.clone(), buf.to_vec())), body, d.verified()),
            Step::NeedMore if fed < wire.len() => {
                let n = piece.max(1).min(wire.len() - fed);
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
            }
            Step::NeedMore => {
                let end = d.at_close().map(|_| (body.clone(), buf.to_vec()));
                return (end, body, d.verified());
            }
        }
    }
}

fn chunked() -> Framing {
    Framing::Chunked(Chunked::Size)
}

fn ok(framing: Framing, wire: &[u8], piece: usize) -> (Vec<u8>, Vec<u8>) {
    run(framing, wire, piece).0.unwrap_or_else(|e| panic!("{e:?} for {:?}", String::from_utf8_lossy(wire)))
}

fn protocol_error(framing: Framing, wire: &[u8], piece: usize) -> bool {
    matches!(run(framing, wire, piece).0, Err(Violation::Protocol(_)))
}

#[test]
fn chunked_bodies_decode_whatever_the_reads_look_like() {
    let wire = b"5;ext=1\r\nhello\r\n6 \r\n world\r\n00A\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
    for piece in [1, 2, 3, 7, 64] {
        let (body, rest) = ok(chunked(), wire, piece);
        assert_eq!(body, b"hello world0123456789", "pieces of {piece}");
        assert!(rest.is_empty() || b"NEXT".starts_with(&rest), "nothing past the body is taken: {rest:?}");
    }
    assert_eq!(ok(chunked(), b"3\nabc\n0\n\n", 1).0, b"abc", "bare LF line ends are accepted");
    assert_eq!(ok(chunked(), b"00000000000000000000003\r\nabc\r\n0\r\n\r\n", 5).0, b"abc", "leading zeros are not overflow");
}

#[test]
fn broken_chunking_is_a_protocol_error_not_a_short_file() {
    for wire in [
        &b"zz\r\nab\r\n0\r\n\r\n"[..],
        b"3\r\nabcX\r\n0\r\n\r\n",
        b";x\r\n",
        b"11111111111111111\r\n",
        b"-1\r\n",
        b"0x3\r\nabc\r\n",
        b"+3\r\nabc\r\n",
        b"3 3\r\nabc\r\n",
        b"3\0\r\nabc\r\n",
        b"3\rx\r\nabc\r\n",
        b"3\r\nabc\r\n0\r\n bad fold\r\n\r\n",
        b"3\r\nabc\r\n0\r\nno colon\r\n\r\n",
    ] {
        for piece in [1, 4, 100] {
            assert!(protocol_error(chunked(), wire, piece), "{:?} in pieces of {piece}", String::from_utf8_lossy(wire));
        }
    }
    assert!(protocol_error(chunked(), &[b'1'; MAX_LINE + 10], 512), "an endless size line");
    let mut long = vec![b'3'];
    long.extend(std::iter::repeat_n(b' ', MAX_LINE));
    long.extend_from_slice(b"\r\nabc\r\n0\r\n\r\n");
    for piece in [1, 7, MAX_LINE * 2] {
        assert!(protocol_error(chunked(), &long, piece), "a line just over the limit, in pieces of {piece}");
    }
}

#[test]
fn a_connection_closed_inside_a_body_is_a_truncation() {
    for wire in [&b"5\r\nhel"[..], b"5\r\nhello\r\n", b"5\r\nhello\r\n0\r\n"] {
        assert!(matches!(run(chunked(), wire, 4).0, Err(Violation::Truncated(_))), "{:?}", String::from_utf8_lossy(wire));
    }
}

#[test]
fn only_bytes_of_chunks_whose_crlf_was_read_are_verified() {
    // The second chunk declares 8 bytes and carries 3: its data runs into the next size line.
    let wire = b"4\r\nabcd\r\n8\r\nxyz\r\n2\r\nuv\r\n0\r\n\r\n";
    for piece in [1, 3, 64] {
        let (end, body, verified) = run(chunked(), wire, piece);
        assert!(matches!(end, Err(Violation::Protocol(_))), "pieces of {piece}: {end:?}");
        assert_eq!(&body[..4], b"abcd");
        assert!(body.len() > 4, "the bad chunk's bytes were handed out");
        assert_eq!(verified, 4, "only the first chunk is verified, pieces of {piece}");
    }
    // A chunk whose CRLF comes with its data is verified at once; one split from it, by the next step.
    let mut d = Decoder::new(chunked());
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n5\r\nhe"[..]);
    assert_eq!(d.step(&mut buf), Ok(Step::Data(Bytes::from_static(b"abc"))));
    assert_eq!(d.verified(), 3);
    assert_eq!(d.step(&mut buf), Ok(Step::Data(Bytes::from_static(b"he"))));
    assert_eq!((d.handed(), d.verified()), (5, 3));
    buf.extend_from_slice(b"llo");
    assert_eq!(d.step(&mut buf), Ok(Step::Data(Bytes::from_static(b"llo"))));
    assert_eq!(d.verified(), 3, "the CRLF after it has not arrived");
    buf.extend_from_slice(b"\r");
    assert_eq!(d.step(&mut buf), Ok(Step::NeedMore));
    buf.extend_from_slice(b"\n0\r\n\r\n");
    assert_eq!(d.step(&mut buf), Ok(Step::End));
    assert_eq!(d.verified(), 8);
    // Lengths and bodies read to the close: every byte handed out is verified.
    let (_, body, verified) = run(Framing::Length(10), b"0123456789", 3);
    assert_eq!(verified, body.len() as u64);
    let (_, _, verified) = run(Framing::Close, b"abc", 1);
    assert_eq!(verified, 3);
}

#[test]
fn a_length_is_exact_and_a_close_delimited_body_runs_to_the_close() {
    let (body, rest) = ok(Framing::Length(5), b"helloEXTRA", 3);
    assert_eq!(body, b"hello");
    assert_eq!(rest, b"EXTRA"[..rest.len()].to_vec(), "bytes past the length stay in the buffer");
    assert!(matches!(run(Framing::Length(10), b"short", 2).0, Err(Violation::Truncated(_))));
    assert_eq!(ok(Framing::Close, b"all of it", 4).0, b"all of it");
}

fn framing(status: u16, te: &[&[u8]], cl: &[&[u8]]) -> Result<(Option<Framing>, bool), Violation> {
    framing_of(status, false, te, cl)
}

#[test]
fn the_framing_follows_the_status_and_headers() {
    assert_eq!(framing(204, &[], &[b"10"]), Ok((None, false)));
    assert_eq!(framing(304, &[b"chunked"], &[]), Ok((None, false)));
    assert_eq!(framing(200, &[], &[b"0"]), Ok((None, false)));
    assert_eq!(framing(200, &[], &[b"10"]), Ok((Some(Framing::Length(10)), false)));
    assert_eq!(framing(200, &[], &[b" 10 ", b"10"]), Ok((Some(Framing::Length(10)), false)), "repeated equal values");
    assert_eq!(framing(200, &[], &[b"10, 10"]), Ok((Some(Framing::Length(10)), false)));
    assert_eq!(framing(200, &[], &[b"18446744073709551615"]), Ok((Some(Framing::Length(u64::MAX)), false)));
    assert_eq!(framing(200, &[], &[]), Ok((Some(Framing::Close), true)));
    assert_eq!(framing(200, &[b"Chunked"], &[]), Ok((Some(Framing::Chunked(Chunked::Size)), false)));
    assert_eq!(framing(200, &[b"chunked"], &[b"10"]), Ok((Some(Framing::Chunked(Chunked::Size)), true)), "chunked governs, no reuse");
    assert_eq!(framing(200, &[b"chunked"], &[b"+5"]), Ok((Some(Framing::Chunked(Chunked::Size)), true)), "the length is not read");
}

#[test]
fn a_length_that_is_not_one_plain_number_is_a_protocol_error() {
    for cl in [
        &[&b"10"[..], b"11"][..],
        &[b"10, 11"],
        &[b"+5"],
        &[b"1 0"],
        &[b"-1"],
        &[b"18446744073709551616"],
        &[b"99999999999999999999999"],
        &[b""],
        &[b","],
        &[b"0x10"],
        &[b"5;"],
        &[b"\xd9\xa3"],
    ] {
        assert!(matches!(framing(200, &[], cl), Err(Violation::Protocol(_))), "{cl:?}");
        assert!(matches!(framing(206, &[], cl), Err(Violation::Protocol(_))), "{cl:?}");
    }
}

#[test]
fn a_transfer_coding_other_than_a_lone_chunked_is_a_protocol_error() {
    for te in [
        &[&b"gzip"[..]][..],
        &[b"gzip, chunked"],
        &[b"gzip", b"chunked"],
        &[b"chunked, gzip"],
        &[b"chunked", b"chunked"],
        &[b"identity"],
        &[b"x-unknown"],
        &[b"chunked;q=1"],
        &[b""],
    ] {
        assert!(matches!(framing(200, te, &[]), Err(Violation::Protocol(_))), "{te:?}");
        assert!(matches!(framing(200, te, &[b"100"]), Err(Violation::Protocol(_))), "{te:?} with a length beside it");
    }
    assert!(matches!(framing_of(200, true, &[b"chunked"], &[b"5"]), Err(Violation::Protocol(_))), "HTTP/1.0 with a transfer coding");
}
