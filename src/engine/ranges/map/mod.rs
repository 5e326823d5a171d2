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

    /// Cuts the map so that `[start, end)` is one segment, owned by the external lease `lease`,
    /// and returns whether it could. Bytes written inside the range (a lease may span done bytes
    /// between two remainders, see `handoff::plan`) are forgotten: the lease fetches them again.
    /// Refused when any segment the range touches is owned or has a write in flight.
    pub fn lease(&mut self, start: u64, end: u64, lease: &str) -> bool {
        if start >= end || end > self.total {
            return false;
        }
        let touched: Vec<usize> =
            (0..self.segments.len()).filter(|&i| self.segments[i].start < end && self.segments[i].end > start).collect();
        let busy = touched.iter().any(|&i| {
            let s = &self.segments[i];
            s.owner != Owner::Idle || s.reserved != s.written
        });
        if touched.is_empty() || busy {
            return false;
        }
        let (first, last) = (touched[0], touched[touched.len() - 1]);
        let mut replacement = Vec::with_capacity(3);
        let lower = &self.segments[first];
        if lower.start < start {
            let written = lower.written.min(start);
            replacement.push(Segment {
                end: start,
                written,
                durable: lower.durable.min(written),
                reserved: written,
                dirty: true,
                ..lower.clone()
            });
        }
        replacement.push(Segment { owner: Owner::External(lease.to_string()), dirty: true, ..Segment::new(start, end) });
        let upper = &self.segments[last];
        if upper.end > end {
            let written = upper.written.max(end);
            let durable = upper.durable.max(end).min(written);
            replacement.push(Segment { start: end, written, durable, reserved: written, dirty: true, ..upper.clone() });
        }
        self.segments.splice(first..=last, replacement);
        true
    }

    /// Marks the segment starting at `start` as fetched by the external lease `lease` (a map
    /// rebuilt from the journal knows nothing of owners). False when no idle segment
    /// `[start, end)` exists.
    pub fn set_external(&mut self, start: u64, end: u64, lease: &str) -> bool {
        match self.index_of(start) {
            Some(i) if self.segments[i].end == end && self.segments[i].owner == Owner::Idle => {
                self.segments[i].owner = Owner::External(lease.to_string());
                true
            }
            _ => false,
        }
    }

    /// The range of the segment the external lease `lease` owns.
    pub fn leased(&self, lease: &str) -> Option<(u64, u64)> {
        self.segments.iter().find(|s| matches!(&s.owner, Owner::External(id) if id == lease)).map(|s| (s.start, s.end))
    }

    /// The lease's bytes are in the part file and synced: its segment is written and durable in
    /// full, and nobody's any more. Returns its range.
    pub fn commit_external(&mut self, lease: &str) -> Option<(u64, u64)> {
        let seg = self.segments.iter_mut().find(|s| matches!(&s.owner, Owner::External(id) if id == lease))?;
        seg.written = seg.end;
        seg.durable = seg.end;
        seg.reserved = seg.end;
        seg.owner = Owner::Idle;
        seg.dirty = true;
        Some((seg.start, seg.end))
    }

    /// The lease ended without its bytes: its segment waits, idle, for whoever fetches it next.
    pub fn release_external(&mut self, lease: &str) -> Option<(u64, u64)> {
        let seg = self.segments.iter_mut().find(|s| matches!(&s.owner, Owner::External(id) if id == lease))?;
        seg.owner = Owner::Idle;
        Some((seg.start, seg.end))
    }

    /// Whether something is left that the engine's own connections could fetch: an unfinished
    /// segment that no external lease holds.
    pub fn has_engine_work(&self) -> bool {
        self.segments.iter().any(|s| !s.is_done() && !matches!(s.owner, Owner::External(_)))
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
mod tests;
