//! The range map of one download: which byte ranges exist, how far each has been written, how far
//! that is known to be on stable storage, and who is fetching it.
//!
//! Invariants (property-tested below):
//! - segments are sorted, contiguous and cover `[0, total)` exactly: no overlap, no gap;
//! - for every segment `start <= durable <= written <= reserved <= end`;
//! - only the owner of a segment writes into it, and only inside `[written, end)`.
//!
//! A connection first *reserves* the bytes it is about to write, writes them, then *commits*
//! them, but only as far as the body's framing has verified them: the bytes of a chunk whose
//! trailing CRLF has not been read yet stay reserved (written to the part file, not counted), and
//! a framing error drops them ([`RangeMap::abandon`]) so that `written`, which the journal and the
//! hash follow, stays at the last verified byte. Splitting (aria2 style: halve the largest
//! remaining range when a connection frees up) never cuts below a reservation, so a write in
//! flight can never land in someone else's range.
//!
//! Each segment has an [`Owner`]: the engine's own connections today; ranges leased to the OS
//! (iOS background sessions, Android jobs) later, whose results are spliced back by offset.

/// Who is fetching a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nobody: waiting for a connection.
    Idle,
    /// One of the engine's connections.
    Engine,
    /// One of the engine's connections, asked to end (see [`RangeMap::retire_largest`]).
    Retiring,
    /// Leased to an external fetcher (the OS), identified by lease id.
    External(String),
}

/// One contiguous range of the resource, `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First byte (stable identity of the segment within its task).
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Bytes `[start, written)` are handed to the kernel and verified (survive a killed process).
    pub written: u64,
    /// Bytes `[start, durable)` are synced to stable storage (survive a power loss).
    pub durable: u64,
    /// Bytes `[written, reserved)` are being written, or written but not yet verified.
    pub reserved: u64,
    /// Who fetches this segment.
    pub owner: Owner,
    /// Whether `written` changed since the journal last saw it.
    pub dirty: bool,
}

impl Segment {
    fn new(start: u64, end: u64) -> Self {
        Segment { start, end, written: start, durable: start, reserved: start, owner: Owner::Idle, dirty: false }
    }

    /// Bytes not yet written or reserved.
    pub fn unclaimed(&self) -> u64 {
        self.end - self.reserved
    }

    /// Whether every byte is written.
    pub fn is_done(&self) -> bool {
        self.written >= self.end
    }

    /// Where its connection must stop writing: the end, or the cursor once it is retiring.
    fn end_for_connection(&self) -> u64 {
        if self.owner == Owner::Retiring {
            self.written
        } else {
            self.end
        }
    }
}

/// The journal's view of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    /// Segment start.
    pub start: u64,
    /// Segment end.
    pub end: u64,
    /// Written offset.
    pub written: u64,
    /// Durable offset.
    pub durable: u64,
}

/// Splits `[0, total)` into at most `parts` contiguous pieces of at least `min_size` bytes
/// (a single piece when `total < 2 * min_size`). Returns `(start, end)` pairs.
pub fn plan(total: u64, parts: u32, min_size: u64) -> Vec<(u64, u64)> {
    if total == 0 {
        return Vec::new();
    }
    let by_size = (total / min_size.max(1)).max(1);
    let n = u64::from(parts.max(1)).min(by_size);
    let base = total / n;
    let extra = total % n;
    let mut out = Vec::with_capacity(n as usize);
    let mut at = 0;
    for i in 0..n {
        let len = base + u64::from(i < extra);
        out.push((at, at + len));
        at += len;
    }
    out
}

/// The range map of one task with a known length.
#[derive(Clone, Debug, Default)]
pub struct RangeMap {
    segments: Vec<Segment>,
    total: u64,
}

impl RangeMap {
    /// A fresh map for `total` bytes, cut into the given pieces (from [`plan`]).
    pub fn from_plan(total: u64, pieces: &[(u64, u64)]) -> Self {
        RangeMap { segments: pieces.iter().map(|&(s, e)| Segment::new(s, e)).collect(), total }
    }

    /// Rebuilds a map from journal rows. Returns `None` if the rows do not tile `[0, total)`.
    pub fn from_rows(total: u64, rows: &[SegmentRow]) -> Option<Self> {
        let mut rows = rows.to_vec();
        rows.sort_by_key(|r| r.start);
        let mut at = 0;
        let mut segments = Vec::with_capacity(rows.len());
        for r in rows {
            let sane = r.start == at && r.end > r.start && r.start <= r.durable && r.durable <= r.written && r.written <= r.end;
            if !sane {
                return None;
            }
            at = r.end;
            segments.push(Segment {
                start: r.start,
                end: r.end,
                written: r.written,
                durable: r.durable,
                reserved: r.written,
                owner: Owner::Idle,
                dirty: false,
            });
        }
        (at == total).then_some(RangeMap { segments, total })
    }

    /// Resource length.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The segments, sorted by start.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Bytes written so far (survive a killed process).
    pub fn written_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.written - s.start).sum()
    }

    /// Whether every byte is written.
    pub fn is_complete(&self) -> bool {
        self.segments.iter().all(Segment::is_done)
    }

    fn index_of(&self, start: u64) -> Option<usize> {
        self.segments.binary_search_by_key(&start, |s| s.start).ok()
    }

    /// A segment by its start.
    pub fn segment(&self, start: u64) -> Option<&Segment> {
        self.index_of(start).map(|i| &self.segments[i])
    }

    /// Claims an idle, unfinished segment for an engine connection. Returns its start.
    pub fn claim_idle(&mut self) -> Option<u64> {
        let seg = self.segments.iter_mut().filter(|s| s.owner == Owner::Idle && !s.is_done()).max_by_key(|s| s.unclaimed())?;
        seg.owner = Owner::Engine;
        Some(seg.start)
    }

    /// Claims the segment starting at `start` for an engine connection, if it is idle.
    pub fn claim(&mut self, start: u64) -> bool {
        match self.index_of(start) {
            Some(i) if self.segments[i].owner == Owner::Idle => {
                self.segments[i].owner = Owner::Engine;
                true
            }
            _ => false,
        }
    }

    /// Halves the segment with the most unclaimed bytes (at least `2 * min_split`), giving the upper
    /// half to a new engine-owned segment. Returns the new segment's start.
    pub fn split_largest(&mut self, min_split: u64) -> Option<u64> {
        let min_split = min_split.max(1);
        let (idx, _) = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner == Owner::Engine && s.unclaimed() >= 2 * min_split)
            .max_by_key(|(_, s)| s.unclaimed())?;
        let seg = &mut self.segments[idx];
        let mid = seg.reserved + seg.unclaimed() / 2;
        let mut upper = Segment::new(mid, seg.end);
        upper.owner = Owner::Engine;
        seg.end = mid;
        self.segments.insert(idx + 1, upper);
        Some(mid)
    }

    /// Asks the connection on the engine-owned segment with the most unclaimed bytes to end: it
    /// may write nothing more (its reservation in flight still lands), and once it has released
    /// the segment a connection that stays picks it up at its cursor. Returns the segment's start.
    pub fn retire_largest(&mut self) -> Option<u64> {
        let seg = self.segments.iter_mut().filter(|s| s.owner == Owner::Engine && s.unclaimed() > 0).max_by_key(|s| s.unclaimed())?;
        seg.owner = Owner::Retiring;
        Some(seg.start)
    }

    /// Current write cursor and end of a segment, as its connection sees them: a retiring segment
    /// has nothing left for its connection.
    pub fn cursor(&self, start: u64) -> Option<(u64, u64)> {
        self.segment(start).map(|s| (s.written, s.end_for_connection()))
    }

    /// Reserves up to `want` bytes after what segment `start` has written or reserved. Returns
    /// `(offset, allowed)`; `allowed` is smaller than `want` when the segment ends first (it may
    /// have been split, or its connection asked to end).
    pub fn reserve(&mut self, start: u64, want: u64) -> Option<(u64, u64)> {
        let i = self.index_of(start)?;
        let seg = &mut self.segments[i];
        let at = seg.reserved;
        let allowed = want.min(seg.end_for_connection().saturating_sub(at));
        seg.reserved = at + allowed;
        Some((at, allowed))
    }

    /// Commits the reserved bytes up to `verified` (an offset; bytes beyond it stay reserved) after
    /// they were handed to the kernel. Returns the written offset before and after, and whether
    /// the segment holds nothing more for its connection.
    pub fn commit(&mut self, start: u64, verified: u64) -> Option<(u64, u64, bool)> {
        let i = self.index_of(start)?;
        let seg = &mut self.segments[i];
        let before = seg.written;
        let after = verified.clamp(before, seg.reserved);
        if after != before {
            seg.written = after;
            seg.dirty = true;
        }
        Some((before, after, after >= seg.end_for_connection()))
    }

    /// Drops every reserved byte not committed: a write failed, or the body's framing broke
    /// before those bytes were verified. The segment's connection continues at `written`.
    pub fn abandon(&mut self, start: u64) {
        if let Some(i) = self.index_of(start) {
            let seg = &mut self.segments[i];
            seg.reserved = seg.written;
        }
    }

    /// Returns a segment to the idle pool (its connection ended).
    pub fn release(&mut self, start: u64) {
        if let Some(i) = self.index_of(start) {
            let seg = &mut self.segments[i];
            seg.reserved = seg.written;
            seg.owner = Owner::Idle;
        }
    }

    /// Rows whose written offset changed since the last call (for the journal); clears the marks.
    pub fn take_dirty(&mut self) -> Vec<SegmentRow> {
        self.segments
            .iter_mut()
            .filter(|s| s.dirty)
            .map(|s| {
                s.dirty = false;
                row(s)
            })
            .collect()
    }

    /// Every row (for a full journal write).
    pub fn rows(&self) -> Vec<SegmentRow> {
        self.segments.iter().map(row).collect()
    }

    /// Marks written offsets as durable up to the given snapshot (taken before a sync).
    pub fn mark_durable(&mut self, snapshot: &[SegmentRow]) {
        for r in snapshot {
            if let Some(i) = self.index_of(r.start) {
                let seg = &mut self.segments[i];
                let d = r.written.min(seg.written).min(seg.end);
                if d > seg.durable {
                    seg.durable = d;
                }
            }
        }
    }
}

fn row(s: &Segment) -> SegmentRow {
    SegmentRow { start: s.start, end: s.end, written: s.written, durable: s.durable }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_tiles(map: &RangeMap) {
        let mut at = 0;
        for s in map.segments() {
            assert_eq!(s.start, at, "gap or overlap at {at}: {:?}", map.segments());
            assert!(s.end > s.start);
            assert!(s.start <= s.durable && s.durable <= s.written && s.written <= s.reserved && s.reserved <= s.end, "{s:?}");
            at = s.end;
        }
        assert_eq!(at, map.total());
    }

    #[test]
    fn plan_handles_remainders_and_small_files() {
        assert_eq!(plan(10, 3, 1), vec![(0, 4), (4, 7), (7, 10)]);
        assert_eq!(plan(10, 3, 100), vec![(0, 10)]);
        assert_eq!(plan(0, 3, 1), vec![]);
        assert_eq!(plan(1, 8, 1), vec![(0, 1)]);
        assert_eq!(plan(7, 8, 1).len(), 7);
    }

    #[test]
    fn split_never_cuts_a_reservation() {
        let mut m = RangeMap::from_plan(100, &plan(100, 1, 1));
        let s = m.claim_idle().unwrap();
        let (off, n) = m.reserve(s, 30).unwrap();
        assert_eq!((off, n), (0, 30));
        let upper = m.split_largest(10).unwrap();
        assert_eq!(upper, 65, "halves the unreserved part [30,100)");
        assert_eq!(m.commit(s, 30), Some((0, 30, false)));
        let (off, n) = m.reserve(s, 1000).unwrap();
        assert_eq!((off, n), (30, 35), "clamped to the new end");
        assert_eq!(m.commit(s, 1000), Some((30, 65, true)), "committed up to the reservation only");
        assert!(m.segment(0).unwrap().is_done());
        assert_tiles(&m);
    }

    #[test]
    fn a_retired_segment_takes_no_more_writes_and_is_picked_up_again() {
        let mut m = RangeMap::from_plan(100, &plan(100, 2, 1));
        let (a, b) = (0, 50);
        assert!(m.claim(a) && m.claim(b));
        m.reserve(b, 5).unwrap();
        m.commit(b, 55);
        m.reserve(b, 7).unwrap();
        // `a` has 50 unclaimed bytes, `b` 38: `a` is retired first, then `b`.
        assert_eq!(m.retire_largest(), Some(a));
        assert_eq!(m.reserve(a, 5), Some((0, 0)), "a retiring connection may write no more");
        assert_eq!(m.commit(a, 5), Some((0, 0, true)));
        assert!(!m.claim(a), "still owned until released");
        assert_eq!(m.split_largest(1), Some(81), "only a segment that keeps its connection is split");
        assert_eq!(m.retire_largest(), Some(81));
        assert_eq!(m.retire_largest(), Some(b));
        assert_eq!(m.retire_largest(), None);
        m.commit(b, 62);
        assert_eq!(m.segment(b).unwrap().written, 62, "the write in flight landed");
        assert_eq!(m.reserve(b, 1), Some((62, 0)));
        assert_eq!(m.cursor(b), Some((62, 62)), "nothing left for the retiring connection");
        m.release(a);
        m.release(b);
        assert_eq!(m.claim_idle(), Some(a));
        assert_eq!(m.cursor(b), Some((62, 81)));
        assert_tiles(&m);
    }

    #[test]
    fn unverified_bytes_stay_reserved_and_a_framing_error_drops_them() {
        let mut m = RangeMap::from_plan(100, &plan(100, 1, 1));
        let s = m.claim_idle().unwrap();
        assert_eq!(m.reserve(s, 40), Some((0, 40)));
        assert_eq!(m.commit(s, 16), Some((0, 16, false)), "only the verified part counts");
        assert_eq!(m.reserve(s, 10), Some((40, 10)), "the next write follows the unverified bytes");
        assert_eq!(m.split_largest(1), Some(75), "a split never cuts below unverified bytes");
        m.abandon(s);
        let seg = m.segment(s).unwrap();
        assert_eq!((seg.written, seg.reserved), (16, 16), "back to the last verified byte");
        assert_eq!(m.rows()[0].written, 16);
        assert_eq!(m.reserve(s, 100), Some((16, 59)));
        assert_eq!(m.commit(s, 75), Some((16, 75, true)));
    }

    #[test]
    fn rows_round_trip_and_bad_rows_are_refused() {
        let mut m = RangeMap::from_plan(1000, &plan(1000, 4, 1));
        let s = m.claim_idle().unwrap();
        m.reserve(s, 100).unwrap();
        m.commit(s, s + 100);
        let rows = m.rows();
        let back = RangeMap::from_rows(1000, &rows).unwrap();
        assert_eq!(back.written_bytes(), 100);
        let mut gap = rows.clone();
        gap.remove(1);
        assert!(RangeMap::from_rows(1000, &gap).is_none());
        let mut beyond = rows;
        beyond[0].written = beyond[0].end + 1;
        assert!(RangeMap::from_rows(1000, &beyond).is_none());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Claim,
        Split(u64),
        Retire,
        Write(usize, u64, u64, bool),
        Release(usize),
        Sync,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Claim),
            (1u64..5000).prop_map(Op::Split),
            Just(Op::Retire),
            (0usize..64, 0u64..20_000, 0u64..20_000, any::<bool>()).prop_map(|(i, n, v, ok)| Op::Write(i, n, v, ok)),
            (0usize..64).prop_map(Op::Release),
            Just(Op::Sync),
        ]
    }

    proptest! {
        #[test]
        fn plan_tiles_exactly(total in 0u64..10_000_000, parts in 1u32..64, min in 1u64..1_000_000) {
            let p = plan(total, parts, min);
            let mut at = 0;
            for &(s, e) in &p {
                prop_assert_eq!(s, at);
                prop_assert!(e > s);
                at = e;
            }
            prop_assert_eq!(at, total);
            prop_assert!(p.len() as u32 <= parts);
            if p.len() > 1 {
                prop_assert!(p.iter().all(|&(s, e)| e - s >= min));
                let lens: Vec<u64> = p.iter().map(|&(s, e)| e - s).collect();
                prop_assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
            }
        }

        #[test]
        fn any_sequence_keeps_the_map_tiled(total in 1u64..200_000, parts in 1u32..8, ops in proptest::collection::vec(op(), 0..200)) {
            let mut m = RangeMap::from_plan(total, &plan(total, parts, 1));
            let mut written_before = 0;
            for op in ops {
                match op {
                    Op::Claim => { m.claim_idle(); }
                    Op::Split(min) => { m.split_largest(min); }
                    Op::Retire => { m.retire_largest(); }
                    Op::Write(i, n, verified, ok) => {
                        let owned: Vec<u64> = m.segments().iter().filter(|s| matches!(s.owner, Owner::Engine | Owner::Retiring)).map(|s| s.start).collect();
                        if let Some(&s) = owned.get(i % owned.len().max(1)) {
                            let (off, allowed) = m.reserve(s, n).unwrap();
                            prop_assert!(off + allowed <= m.segment(s).unwrap().end);
                            if ok {
                                let (before, after, _) = m.commit(s, s + verified).unwrap();
                                prop_assert!(before <= after && after <= off + allowed);
                            } else {
                                m.abandon(s)
                            }
                        }
                    }
                    Op::Release(i) => {
                        if let Some(s) = m.segments().get(i % m.segments().len()).map(|s| s.start) { m.release(s) }
                    }
                    Op::Sync => { let snap = m.rows(); m.mark_durable(&snap); }
                }
                assert_tiles(&m);
                let w = m.written_bytes();
                prop_assert!(w >= written_before, "written bytes never go backwards");
                written_before = w;
                let back = RangeMap::from_rows(total, &m.rows()).unwrap();
                prop_assert_eq!(back.written_bytes(), w);
            }
        }
    }
}
