//! How an HTTP/1.1 response body is delimited (RFC 9112 §6), and the decoder that takes it off the
//! connection's read buffer. Pure byte handling, so that every rule is tested (and fuzzed) without a
//! socket; [`super::client`] does the reading.
//!
//! The rules a response must follow here, each a [`Violation`] otherwise:
//! - `Transfer-Encoding` may only be `chunked`, once: Ferry asks for no transfer coding, so any
//!   other (gzip, an unknown one, chunked not final) would put coded bytes into the file (RFC 9112
//!   §6.1, §7.4). In an HTTP/1.0 response it means broken framing (§6.1).
//! - With `chunked`, a `Content-Length` beside it is ignored (the chunks govern, §6.3) and the
//!   connection is not reused.
//! - `Content-Length` is `1*DIGIT`, or a list of one value repeated (RFC 9110 §8.6): `+5`, `1 0`,
//!   `-1`, a value past `u64`, or two different values are not lengths.
//! - A chunk-size line is hex digits (leading zeros allowed, at most 16 significant), optional
//!   whitespace and `;` extensions; the data of each chunk is followed by CRLF (or a bare LF).
//!
//! Verified bytes: a body byte counts as written only once its framing is verified. For a length
//! or a body read to the close that is every byte handed out; for chunked, the bytes up to the end
//! of the last chunk whose CRLF was read ([`Decoder::verified`]). The bytes of a chunk whose
//! framing fails later (a chunk declaring more bytes than it carries, whose next size line is read
//! as data) are never committed.

use bytes::{Buf, Bytes, BytesMut};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

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

/// Why a body (or the head that frames it) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The server broke the framing rules: nothing more of this answer can be trusted.
    Protocol(String),
    /// The connection closed before the body's end (a network failure, or a server cut short).
    Truncated(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Protocol(d) | Violation::Truncated(d) => f.write_str(d),
        }
    }
}

fn protocol<T>(detail: impl Into<String>) -> Result<T, Violation> {
    Err(Violation::Protocol(detail.into()))
}

/// How the body of a response is delimited (`None` when it has no body at all), and whether the
/// framing forbids reusing the connection. `transfer_encoding` and `content_length` are every value
/// of those headers, in order; `http10` is the response's version.
pub fn framing_of(
    status: u16,
    http10: bool,
    transfer_encoding: &[&[u8]],
    content_length: &[&[u8]],
) -> Result<(Option<Framing>, bool), Violation> {
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    if !transfer_encoding.is_empty() && !no_body {
        if http10 {
            return protocol("Transfer-Encoding in an HTTP/1.0 response");
        }
        let mut codings = transfer_encoding.iter().flat_map(|v| v.split(|b| *b == b',')).map(trim).filter(|c| !c.is_empty());
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => {
                Ok((Some(Framing::Chunked(Chunked::Size)), !content_length.is_empty()))
            }
            _ => protocol(format!("a transfer coding Ferry did not ask for ({})", printable(&transfer_encoding.join(&b", "[..])))),
        };
    }
    let length = content_length_of(content_length)?;
    if no_body {
        return Ok((None, false));
    }
    Ok(match length {
        Some(0) => (None, false),
        Some(n) => (Some(Framing::Length(n)), false),
        None => (Some(Framing::Close), true),
    })
}

/// The value of the `Content-Length` header lines: `None` without any, an error unless every
/// element of every line is the same `1*DIGIT` that fits a `u64`.
pub fn content_length_of(lines: &[&[u8]]) -> Result<Option<u64>, Violation> {
    let mut length: Option<u64> = None;
    for line in lines {
        let mut any = false;
        for value in line.split(|b| *b == b',').map(trim) {
            if value.is_empty() {
                continue;
            }
            any = true;
            let Some(n) = parse_decimal(value) else {
                return protocol(format!("Content-Length {:?} is not a length", printable(line)));
            };
            if length.is_some_and(|l| l != n) {
                return protocol("conflicting Content-Length values");
            }
            length = Some(n);
        }
        if !any {
            return protocol("an empty Content-Length");
        }
    }
    Ok(length)
}

/// Takes a body off the connection's read buffer, and counts how much of it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoder {
    framing: Framing,
    handed: u64,
    verified: u64,
}

impl Decoder {
    /// A decoder for a body with this framing.
    pub fn new(framing: Framing) -> Self {
        Decoder { framing, handed: 0, verified: 0 }
    }

    /// Body bytes handed out so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Body bytes whose framing is verified: every byte of a length or a body read to the close;
    /// for chunked, up to the end of the last chunk whose trailing CRLF was read.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// Whether the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Length(0) | Framing::Chunked(Chunked::Done))
    }

    /// Whether the body ends only when the connection closes.
    pub fn reads_to_close(&self) -> bool {
        self.framing == Framing::Close
    }

    /// Takes the next body bytes out of `buf`. `Step::End` leaves in `buf` whatever followed the
    /// body (which a reused connection must not have).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Violation> {
        let step = match &mut self.framing {
            Framing::Length(0) => Step::End,
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Step::Data(buf.split_to(n).freeze())
            }
            Framing::Close if buf.is_empty() => Step::NeedMore,
            Framing::Close => Step::Data(buf.split().freeze()),
            Framing::Chunked(state) => return decode(state, buf, &mut self.handed, &mut self.verified),
        };
        if let Step::Data(d) = &step {
            self.handed += d.len() as u64;
            self.verified = self.handed;
        }
        Ok(step)
    }

    /// What the connection closing now means: the end of the body, or an error.
    pub fn at_close(&self) -> Result<(), Violation> {
        match self.framing {
            Framing::Close | Framing::Length(0) | Framing::Chunked(Chunked::Done) => Ok(()),
            Framing::Length(left) => Err(Violation::Truncated(format!("the connection closed {left} bytes before the end of the body"))),
            Framing::Chunked(_) => Err(Violation::Truncated("the connection closed inside a chunked body".into())),
        }
    }
}

/// One step of the chunked decoder. `handed` counts the body bytes handed out; `verified` moves
/// up to it whenever a chunk's framing is complete (its trailing CRLF read).
fn decode(state: &mut Chunked, buf: &mut BytesMut, handed: &mut u64, verified: &mut u64) -> Result<Step, Violation> {
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
                let data = buf.split_to(n).freeze();
                *handed += n as u64;
                *state = if left > n as u64 { Chunked::Data(left - n as u64) } else { Chunked::DataEnd };
                // The chunk's last byte: when its CRLF is already here, the chunk is verified now,
                // with its data, instead of on the next read.
                if *state == Chunked::DataEnd {
                    if let Some(Ok(len)) = crlf_at_start(buf) {
                        buf.advance(len);
                        *state = Chunked::Size;
                        *verified = *handed;
                    }
                }
                return Ok(Step::Data(data));
            }
            Chunked::DataEnd => match crlf_at_start(buf) {
                None => return Ok(Step::NeedMore),
                Some(Ok(len)) => {
                    buf.advance(len);
                    *state = Chunked::Size;
                    *verified = *handed;
                }
                Some(Err(())) => return protocol("a chunk's data is not followed by CRLF: the chunk was longer than its size"),
            },
            Chunked::Trailers(seen) => {
                let Some(line) = take_line(buf)? else { return Ok(Step::NeedMore) };
                if line.is_empty() {
                    *state = Chunked::Done;
                    return Ok(Step::End);
                }
                if seen + line.len() > MAX_TRAILERS {
                    return protocol("the trailer section is too large");
                }
                if line[0] == b' ' || line[0] == b'\t' || !line.contains(&b':') {
                    return protocol("a malformed trailer line");
                }
                *state = Chunked::Trailers(seen + line.len());
            }
            Chunked::Done => return Ok(Step::End),
        }
    }
}

/// Whether `buf` starts with the end of a line: `Some(Ok(len))` for CRLF or a bare LF, `Some(Err)`
/// for anything else, `None` when too little has arrived to tell.
fn crlf_at_start(buf: &[u8]) -> Option<Result<usize, ()>> {
    match buf {
        [] | [b'\r'] => None,
        [b'\n', ..] => Some(Ok(1)),
        [b'\r', b'\n', ..] => Some(Ok(2)),
        _ => Some(Err(())),
    }
}

/// Takes one line (without its CRLF or LF) out of `buf`, or `None` when it is not complete yet. A
/// line longer than [`MAX_LINE`], or holding a control character (other than a tab) or a CR not
/// before its LF, is refused, whatever the reads that brought it looked like.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Violation> {
    match buf.iter().take(MAX_LINE + 2).position(|b| *b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if line.len() > MAX_LINE {
                return protocol("a chunk-size or trailer line is too long");
            }
            if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return protocol(format!("a control character in a chunk-size or trailer line {:?}", printable(&line)));
            }
            Ok(Some(line))
        }
        None if buf.len() >= MAX_LINE + 2 => protocol("a chunk-size or trailer line is too long"),
        None => Ok(None),
    }
}

/// The size of a chunk-size line: hex digits, then optional whitespace and `;` extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Violation> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = trim(&line[digits..]);
    if digits == 0 || !(rest.is_empty() || rest[0] == b';') {
        return protocol(format!("invalid chunk size line {:?}", printable(line)));
    }
    let significant = &line[line[..digits].iter().take_while(|b| **b == b'0').count()..digits];
    if significant.len() > 16 {
        return protocol("a chunk size larger than 2^64");
    }
    // Hex digits are ASCII, and at most 16 of them fit.
    Ok(significant.iter().fold(0u64, |n, b| (n << 4) | u64::from((*b as char).to_digit(16).unwrap_or(0))))
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Up to 40 bytes of a header value or line, for messages.
pub(crate) fn printable(v: &[u8]) -> String {
    String::from_utf8_lossy(&v[..v.len().min(40)]).chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}
