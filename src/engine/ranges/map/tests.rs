//! Properties of the range map: tiling, reservations, splits, retirement, leases.

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

    #[test]
    fn leases_cut_exactly_their_range_and_leave_every_other_byte_as_it_was(
        total in 1u64..50_000,
        parts in 1u32..8,
        writes in proptest::collection::vec((0usize..8, 1u64..20_000), 0..12),
        leases in proptest::collection::vec((0u64..50_000, 1u64..20_000, any::<bool>()), 1..8),
    ) {
        let mut m = RangeMap::from_plan(total, &plan(total, parts, 1));
        for (i, n) in writes {
            let starts: Vec<u64> = m.segments().iter().map(|s| s.start).collect();
            let s = starts[i % starts.len()];
            if m.claim(s) {
                m.reserve(s, n).unwrap();
                m.commit(s, u64::MAX);
                let snap = m.rows();
                m.mark_durable(&snap);
                m.release(s);
            }
        }
        for (k, (a, len, commit)) in leases.into_iter().enumerate() {
            let a = a % total;
            let b = (a + len).min(total);
            let before = written_set(&m);
            let id = format!("L{k}");
            let touched_owned = m.segments().iter().any(|s| s.start < b && s.end > a && s.owner != Owner::Idle);
            let ok = m.lease(a, b, &id);
            prop_assert_eq!(ok, !touched_owned, "refused only where an owner holds a touched segment");
            assert_tiles(&m);
            if !ok {
                continue;
            }
            prop_assert_eq!(m.leased(&id), Some((a, b)));
            let after = written_set(&m);
            for x in 0..total {
                let inside = x >= a && x < b;
                prop_assert_eq!(after[x as usize], before[x as usize] && !inside, "byte {}", x);
            }
            prop_assert!(!m.has_engine_work() || m.segments().iter().any(|s| !s.is_done() && s.owner == Owner::Idle));
            if commit {
                prop_assert_eq!(m.commit_external(&id), Some((a, b)));
                let done = written_set(&m);
                for x in a..b {
                    prop_assert!(done[x as usize]);
                }
            } else {
                prop_assert_eq!(m.release_external(&id), Some((a, b)));
                prop_assert!(m.set_external(a, b, &id), "a released lease's segment can be leased again as it is");
                m.release_external(&id);
            }
            assert_tiles(&m);
            let back = RangeMap::from_rows(total, &m.rows()).unwrap();
            prop_assert_eq!(back.written_bytes(), m.written_bytes());
        }
    }
}

/// For each byte of the resource, whether the map holds it as written.
fn written_set(m: &RangeMap) -> Vec<bool> {
    let mut v = vec![false; m.total() as usize];
    for s in m.segments() {
        for x in s.start..s.written {
            v[x as usize] = true;
        }
    }
    v
}
