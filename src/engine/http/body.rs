//! How an HTTP/1.1 response body is delimited (RFC 9112 §6), and the decoder of chunked transfer
//! coding. Pure byte handling over the connection's read buffer, so that every rule is tested
//! without a socket; [`super::client`] does the reading.

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 64 << 10;

/// Where a body ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// Chunked transfer coding, in the given decoder state.
    Chunked(Chunked),
    /// When the server closes the connection.
    Close,
}

/// State of the chunked decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk, in the trailer section (bytes of it seen so far).
    Trailers(usize),
    /// The body ended.
    Done,
}

/// One step of taking body bytes out of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The buffer holds too little: read more from the connection.
    NeedMore,
    /// The body is complete.
    End,
}

/// How the body of a response is delimited: `None` when it has no body at all.
/// `transfer_encoding` and `content_length` are every value of those headers, in order.
pub fn framing_of(status: u16, transfer_encoding: &[&[u8]], content_length: &[&[u8]]) -> Result<Option<Framing>, String> {
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(None);
    }
    if !transfer_encoding.is_empty() {
        // The final coding decides: chunked ends itself; anything else runs to the close.
        let last = transfer_encoding.iter().flat_map(|v| v.split(|b| *b == b',')).map(trim).rfind(|c| !c.is_empty());
        return Ok(Some(match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => Framing::Chunked(Chunked::Size),
            _ => Framing::Close,
        }));
    }
    let mut length: Option<u64> = None;
    for value in content_length.iter().flat_map(|v| v.split(|b| *b == b',')) {
        let n = parse_decimal(trim(value)).ok_or_else(|| "invalid Content-Length".to_string())?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length values".into());
        }
        length = Some(n);
    }
    Ok(Some(match length {
        Some(0) => return Ok(None),
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    }))
}

impl Framing {
    /// Takes the next body bytes out of `buf`. `Step::End` leaves in `buf` whatever followed the
    /// body (which a reused connection must not have).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        match self {
            Framing::Length(0) => Ok(Step::End),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                Ok(Step::Data(buf.split().freeze()))
            }
            Framing::Chunked(state) => decode(state, buf),
        }
    }

    /// What the connection closing now means: the end of the body, or an error.
    pub fn at_close(&self) -> Result<(), String> {
        match self {
            Framing::Close | Framing::Length(0) | Framing::Chunked(Chunked::Done) => Ok(()),
            Framing::Length(left) => Err(format!("the connection closed {left} bytes before the end of the body")),
            Framing::Chunked(_) => Err("the connection closed inside a chunked body".into()),
        }
    }
}

fn decode(state: &mut Chunked, buf: &mut BytesMut) -> Result<Step, String> {
    loop {
        match *state {
            Chunked::Size => {
                let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                let size = parse_chunk_size(&line)?;
                *state = if size == 0 { Chunked::Trailers(0) } else { Chunked::Data(size) };
            }
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = left.min(buf.len() as u64) as usize;
                *state = if left == n as u64 { Chunked::DataEnd } else { Chunked::Data(left - n as u64) };
                return Ok(Step::Data(buf.split_to(n).freeze()));
            }
            Chunked::DataEnd => match buf.first() {
                None => return Ok(Step::NeedMore),
                Some(b'\n') => {
                    buf.advance(1);
                    *state = Chunked::Size;
                }
                Some(b'\r') => match buf.get(1) {
                    None => return Ok(Step::NeedMore),
                    Some(b'\n') => {
                        buf.advance(2);
                        *state = Chunked::Size;
                    }
                    Some(_) => return Err("a chunk's data is not followed by CRLF".into()),
                },
                Some(_) => return Err("a chunk's data is not followed by CRLF".into()),
            },
            Chunked::Trailers(seen) => {
                let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                if line.is_empty() {
                    *state = Chunked::Done;
                } else if seen + line.len() > MAX_TRAILERS {
                    return Err("the trailer section is too large".into());
                } else {
                    *state = Chunked::Trailers(seen + line.len());
                }
            }
            Chunked::Done => return Ok(Step::End),
        }
    }
}

/// Takes one line (without its CRLF or LF) out of `buf`, or `None` when it is not complete yet.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    match buf.iter().take(MAX_LINE + 2).position(|b| *b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err("a chunk-size or trailer line is too long".into()),
        None => Ok(None),
    }
}

/// The size of a chunk-size line: hex digits, then optional whitespace and `;` extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = trim(&line[digits..]);
    if digits == 0 || digits > 16 || !(rest.is_empty() || rest[0] == b';') {
        return Err(format!("invalid chunk size line {:?}", String::from_utf8_lossy(&line[..line.len().min(40)])));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| "invalid chunk size".to_string())?;
    u64::from_str_radix(text, 16).map_err(|_| "invalid chunk size".to_string())
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `piece` bytes and collects the body, as the reader would.
    fn run(mut framing: Framing, wire: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match framing.step(&mut buf)? {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::End => return Ok((body, buf.to_vec())),
                Step::NeedMore if fed < wire.len() => {
                    let n = piece.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
                Step::NeedMore => return framing.at_close().map(|_| (body, buf.to_vec())),
            }
        }
    }

    fn chunked() -> Framing {
        Framing::Chunked(Chunked::Size)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads_look_like() {
        let wire = b"5;ext=1\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 64] {
            let (body, rest) = run(chunked(), wire, piece).unwrap();
            assert_eq!(body, b"hello world0123456789", "pieces of {piece}");
            assert!(rest.is_empty() || b"NEXT".starts_with(&rest), "nothing past the body is taken: {rest:?}");
        }
        let (body, _) = run(chunked(), b"3\nabc\n0\n\n", 1).unwrap();
        assert_eq!(body, b"abc", "bare LF line ends are accepted");
    }

    #[test]
    fn broken_chunking_is_an_error_not_a_short_file() {
        for wire in [&b"zz\r\nab\r\n0\r\n\r\n"[..], b"3\r\nabcX\r\n0\r\n\r\n", b";x\r\n", b"11111111111111111\r\n"] {
            assert!(run(chunked(), wire, 4).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
        assert!(run(chunked(), b"5\r\nhel", 4).is_err(), "a close inside a chunk");
        assert!(run(chunked(), b"5\r\nhello\r\n", 4).is_err(), "a close before the last chunk");
        assert!(run(chunked(), &[b'1'; MAX_LINE + 10], 512).is_err(), "an endless size line");
    }

    #[test]
    fn a_length_is_exact_and_a_close_delimited_body_runs_to_the_close() {
        let (body, rest) = run(Framing::Length(5), b"helloEXTRA", 3).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(rest, b"EXTRA"[..rest.len()].to_vec(), "bytes past the length stay in the buffer");
        assert!(run(Framing::Length(10), b"short", 2).is_err());
        assert_eq!(run(Framing::Close, b"all of it", 4).unwrap().0, b"all of it");
    }

    #[test]
    fn the_framing_follows_the_status_and_headers() {
        assert_eq!(framing_of(204, &[], &[b"10"]), Ok(None));
        assert_eq!(framing_of(304, &[], &[]), Ok(None));
        assert_eq!(framing_of(200, &[], &[b"0"]), Ok(None));
        assert_eq!(framing_of(200, &[], &[b"10"]), Ok(Some(Framing::Length(10))));
        assert_eq!(framing_of(200, &[], &[b" 10 ", b"10"]), Ok(Some(Framing::Length(10))), "repeated equal values");
        assert_eq!(framing_of(200, &[], &[b"10, 10"]), Ok(Some(Framing::Length(10))));
        assert!(framing_of(200, &[], &[b"10", b"11"]).is_err());
        assert!(framing_of(200, &[], &[b"-1"]).is_err());
        assert!(framing_of(200, &[], &[b"99999999999999999999"]).is_err());
        assert_eq!(framing_of(200, &[], &[]), Ok(Some(Framing::Close)));
        assert_eq!(framing_of(200, &[b"gzip, Chunked"], &[b"10"]), Ok(Some(Framing::Chunked(Chunked::Size))), "chunked wins over a length");
        assert_eq!(framing_of(200, &[b"chunked, gzip"], &[]), Ok(Some(Framing::Close)), "not chunked last: read to the close");
    }
}
