//! Bytes written to the sink but not yet verified by their body's framing (a chunk whose CRLF has
//! not been read), kept so that the in-order SHA-256 can take them once they are. The hash follows
//! the verified bytes only: a framing error drops what it kept, as the range map drops the
//! reservation.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// Most bytes kept waiting for verification. A chunk larger than this stops the streaming hash;
/// the rest of the file is then read back when it is published (as for ranges fetched out of
/// order).
const MAX_KEPT: u64 = 8 << 20;

/// The written, unverified bytes of one body, from `from` on.
#[derive(Debug, Default)]
pub struct Unhashed {
    kept: VecDeque<Bytes>,
    from: u64,
    len: u64,
    gave_up: bool,
}

impl Unhashed {
    /// Nothing kept yet; the body's bytes start at `from`.
    pub fn new(from: u64) -> Self {
        Unhashed { from, ..Unhashed::default() }
    }

    /// `bufs` were written at `offset`.
    pub fn wrote(&mut self, offset: u64, bufs: &[Bytes]) {
        if self.gave_up {
            return;
        }
        let n: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if offset != self.from + self.len || self.len + n > MAX_KEPT {
            self.gave_up = true;
            self.kept.clear();
            return;
        }
        self.kept.extend(bufs.iter().cloned());
        self.len += n;
    }

    /// The bytes up to `verified` are verified: they go into `hashed` when it has hashed exactly
    /// up to where they start, and are forgotten either way.
    pub fn verified(&mut self, verified: u64, hashed: Option<&mut (Sha256, u64)>) {
        if self.gave_up || verified <= self.from {
            return;
        }
        let mut hasher = hashed.filter(|(_, upto)| *upto == self.from);
        let mut left = (verified - self.from).min(self.len);
        while left > 0 {
            let Some(front) = self.kept.front_mut() else { break };
            let take = (front.len() as u64).min(left);
            let piece = front.split_to(take as usize);
            if front.is_empty() {
                self.kept.pop_front();
            }
            if let Some((h, upto)) = hasher.as_mut() {
                h.update(&piece);
                *upto += take;
            }
            self.from += take;
            self.len -= take;
            left -= take;
        }
    }

    /// The body's framing broke: the unverified bytes are dropped, and the next body starts at `at`.
    pub fn reset(&mut self, at: u64) {
        *self = Unhashed::new(at);
    }

    /// Bytes written and not yet verified.
    pub fn pending(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn only_verified_bytes_reach_the_hash_in_order() {
        let mut u = Unhashed::new(0);
        let mut hashed = Some((Sha256::new(), 0u64));
        u.wrote(0, &[b(b"abc"), b(b"def")]);
        u.verified(4, hashed.as_mut());
        assert_eq!(hashed.as_ref().unwrap().1, 4);
        u.wrote(6, &[b(b"XYZ")]);
        assert_eq!(u.pending(), 5);
        u.reset(4);
        u.wrote(4, &[b(b"ef")]);
        u.verified(6, hashed.as_mut());
        let (h, upto) = hashed.unwrap();
        assert_eq!(upto, 6);
        assert_eq!(h.finalize()[..], Sha256::digest(b"abcdef")[..]);
    }

    #[test]
    fn a_gap_or_a_huge_chunk_stops_the_streaming_hash() {
        let mut u = Unhashed::new(0);
        let mut hashed = Some((Sha256::new(), 0u64));
        u.wrote(5, &[b(b"x")]);
        u.verified(6, hashed.as_mut());
        assert_eq!(hashed.as_ref().unwrap().1, 0, "not contiguous: nothing hashed");
        let mut u = Unhashed::new(0);
        u.wrote(0, &[Bytes::from(vec![0u8; (MAX_KEPT + 1) as usize])]);
        u.verified(MAX_KEPT + 1, hashed.as_mut());
        assert_eq!(hashed.as_ref().unwrap().1, 0);
    }
}
