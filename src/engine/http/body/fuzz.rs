//! A seeded random-bytes harness for the chunked decoder (cargo fuzz is not available here):
//! well-formed bodies built from random chunks, then mutated, fed in random read sizes, and held
//! against a second, whole-buffer decoder written from the grammar. The streaming decoder must
//! never panic, never verify a byte the reference does not, decode every well-formed body exactly
//! whatever the reads, and refuse what the reference refuses.

use super::tests::run;
use super::*;
use proptest::prelude::*;

/// What the reference decoder made of a whole input.
#[derive(Debug, PartialEq, Eq)]
enum Reference {
    /// A complete body, and the bytes of input it took.
    Complete(usize),
    /// The input is a valid prefix of a body.
    Incomplete,
    /// The input breaks the grammar.
    Invalid,
}

/// The chunked grammar of RFC 9112 §7.1 with Ferry's limits, over a whole buffer by index. Returns
/// the bytes of the chunks it saw complete (data and line end), and its verdict.
fn reference(input: &[u8]) -> (Vec<u8>, Reference) {
    let mut body = Vec::new();
    let mut at = 0;
    // A line from `at`: its content, or the verdict when there is none.
    let line = |at: usize| -> Result<(&[u8], usize), Reference> {
        let rest = &input[at..];
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            return Err(if rest.len() >= MAX_LINE + 2 { Reference::Invalid } else { Reference::Incomplete });
        };
        let content = if lf > 0 && rest[lf - 1] == b'\r' { &rest[..lf - 1] } else { &rest[..lf] };
        let bad = content.len() > MAX_LINE || content.iter().any(|&b| b == 0x7f || (b < 0x20 && b != b'\t'));
        if bad {
            return Err(Reference::Invalid);
        }
        Ok((content, at + lf + 1))
    };
    loop {
        let (size_line, next) = match line(at) {
            Ok(l) => l,
            Err(r) => return (body, r),
        };
        let hex_len = size_line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(size_line.len());
        let tail = &size_line[hex_len..];
        let tail_ok = tail.iter().find(|b| **b != b' ' && **b != b'\t').is_none_or(|b| *b == b';');
        if hex_len == 0 || !tail_ok {
            return (body, Reference::Invalid);
        }
        let digits: String = size_line[..hex_len].iter().map(|b| *b as char).collect();
        let digits = digits.trim_start_matches('0');
        if digits.len() > 16 {
            return (body, Reference::Invalid);
        }
        let size = if digits.is_empty() { 0 } else { u64::from_str_radix(digits, 16).expect("hex digits") };
        at = next;
        if size == 0 {
            let mut seen = 0;
            loop {
                let (t, next) = match line(at) {
                    Ok(l) => l,
                    Err(r) => return (body, r),
                };
                at = next;
                if t.is_empty() {
                    return (body, Reference::Complete(at));
                }
                seen += t.len();
                if seen > MAX_TRAILERS || t[0] == b' ' || t[0] == b'\t' || !t.contains(&b':') {
                    return (body, Reference::Invalid);
                }
            }
        }
        let left = (input.len() - at) as u64;
        if left < size {
            return (body, Reference::Incomplete);
        }
        let end = at + size as usize;
        match &input[end..] {
            [] | [b'\r'] => return (body, Reference::Incomplete),
            [b'\n', ..] => at = end + 1,
            [b'\r', b'\n', ..] => at = end + 2,
            _ => return (body, Reference::Invalid),
        }
        body.extend_from_slice(&input[end - size as usize..end]);
    }
}

/// One chunk as a generator writes it: data, how its size is spelled, an extension, line ends.
#[derive(Clone, Debug)]
struct Chunk {
    data: Vec<u8>,
    zeros: usize,
    upper: bool,
    ext: Option<String>,
    bare_lf: bool,
}

fn chunk() -> impl Strategy<Value = Chunk> {
    (
        proptest::collection::vec(any::<u8>(), 1..300),
        0usize..4,
        any::<bool>(),
        proptest::option::of("[a-z]{1,5}(=[a-z0-9]{0,4})?"),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(data, zeros, upper, ext, bare_lf)| Chunk { data, zeros, upper, ext, bare_lf })
}

fn encode(chunks: &[Chunk], trailers: &[String]) -> (Vec<u8>, Vec<u8>) {
    let mut wire = Vec::new();
    let mut body = Vec::new();
    for c in chunks {
        let size = if c.upper { format!("{:X}", c.data.len()) } else { format!("{:x}", c.data.len()) };
        let eol: &[u8] = if c.bare_lf { b"\n" } else { b"\r\n" };
        wire.extend(std::iter::repeat_n(b'0', c.zeros));
        wire.extend_from_slice(size.as_bytes());
        if let Some(e) = &c.ext {
            wire.extend_from_slice(format!(" ;{e}").as_bytes());
        }
        wire.extend_from_slice(eol);
        wire.extend_from_slice(&c.data);
        wire.extend_from_slice(eol);
        body.extend_from_slice(&c.data);
    }
    wire.extend_from_slice(b"0\r\n");
    for t in trailers {
        wire.extend_from_slice(t.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    (wire, body)
}

/// A mutation of a well-formed body: the kind of damage a broken server or middlebox does.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'f'), any::<u8>()], 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match m {
        Mutation::Flip(i, b) if !wire.is_empty() => {
            let i = at(*i, wire.len());
            wire[i] = *b;
        }
        Mutation::Insert(i, bytes) => {
            let i = at(*i, wire.len() + 1);
            wire.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(i, n) if !wire.is_empty() => {
            let i = at(*i, wire.len());
            let end = (i + n).min(wire.len());
            wire.drain(i..end);
        }
        Mutation::Truncate(i) => {
            let i = at(*i, wire.len() + 1);
            wire.truncate(i);
        }
        _ => {}
    }
}

/// Checks the streaming decoder against the reference on `wire` read `piece` bytes at a time.
fn agrees(wire: &[u8], piece: usize) -> Result<(), TestCaseError> {
    let (want, verdict) = reference(wire);
    let (end, handed, verified) = run(Framing::Chunked(Chunked::Size), wire, piece);
    let verified = verified as usize;
    prop_assert!(verified <= handed.len());
    prop_assert!(verified <= want.len(), "verified {verified} bytes, the reference only {}", want.len());
    prop_assert_eq!(&handed[..verified], &want[..verified], "verified bytes differ from the reference's");
    match (&verdict, &end) {
        (Reference::Complete(used), Ok((body, rest))) => {
            prop_assert_eq!(body, &want);
            prop_assert_eq!(verified, want.len());
            prop_assert_eq!(rest.as_slice(), &wire[*used..(*used + rest.len()).min(wire.len())], "bytes past the body are left");
        }
        (Reference::Invalid, Err(Violation::Protocol(_))) | (Reference::Incomplete, Err(Violation::Truncated(_))) => {}
        (v, e) => prop_assert!(false, "reference {v:?}, decoder {e:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn well_formed_bodies_decode_exactly_whatever_the_reads(
        chunks in proptest::collection::vec(chunk(), 0..12),
        trailers in proptest::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,20}", 0..3),
        piece in 1usize..700,
    ) {
        let (mut wire, body) = encode(&chunks, &trailers);
        wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let (end, _, verified) = run(Framing::Chunked(Chunked::Size), &wire, piece);
        let (got, _) = end.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&got, &body);
        prop_assert_eq!(verified, body.len() as u64);
        agrees(&wire, piece)?;
    }

    #[test]
    fn damaged_bodies_never_verify_a_foreign_byte(
        chunks in proptest::collection::vec(chunk(), 1..8),
        damage in proptest::collection::vec(mutation(), 1..4),
        piece in 1usize..400,
    ) {
        let (mut wire, _) = encode(&chunks, &[]);
        for m in &damage {
            apply(&mut wire, m);
        }
        agrees(&wire, piece)?;
    }

    #[test]
    fn random_bytes_never_panic_nor_verify_what_the_reference_does_not(
        wire in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'1'), Just(b'a'), Just(b';'), Just(b':'), any::<u8>()], 0..600),
        piece in 1usize..64,
    ) {
        agrees(&wire, piece)?;
    }

    #[test]
    fn lengths_and_closes_hand_out_exactly_their_bytes(wire in proptest::collection::vec(any::<u8>(), 0..2000), len in 0u64..2500, piece in 1usize..300) {
        let (end, handed, verified) = run(Framing::Length(len), &wire, piece);
        prop_assert_eq!(verified, handed.len() as u64);
        match end {
            Ok((body, _)) => prop_assert_eq!(body.as_slice(), &wire[..len as usize]),
            Err(Violation::Truncated(_)) => prop_assert!((wire.len() as u64) < len),
            Err(e) => prop_assert!(false, "{e:?}"),
        }
        let (end, _, _) = run(Framing::Close, &wire, piece);
        prop_assert_eq!(end.map(|(b, _)| b), Ok(wire.clone()));
    }
}
