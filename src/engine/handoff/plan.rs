//! Cutting a download's remaining bytes into leases.
//!
//! A lease is one contiguous range. The remainders of a journal (each segment's `[written, end)`)
//! are disjoint; each becomes one or more leases of at most the chunk size (dictus-ios measured
//! 32 MiB: a killed app loses at most the chunks in flight). When that would make more leases than
//! allowed, the closest remainders are merged first (the done bytes between them are fetched
//! again: cheaper than a lease the OS may rate-limit), then the chunks grow.

use crate::engine::ranges::map::SegmentRow;

/// The ranges of a journal still to fetch, in order, leaving out segments `leased` says are
/// being fetched already.
pub fn remainders(rows: &[SegmentRow], leased: impl Fn(u64) -> bool) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = rows.iter().filter(|r| r.written < r.end && !leased(r.start)).map(|r| (r.written, r.end)).collect();
    out.sort_unstable();
    out
}

/// Cuts `remainders` (sorted, disjoint) into at most `max` leases of at most `chunk` bytes each,
/// where that is possible; otherwise merges the closest remainders and grows the chunks until
/// `max` leases cover everything. Every byte of every remainder is in exactly one lease.
pub fn plan(remainders: &[(u64, u64)], chunk: u64, max: usize) -> Vec<(u64, u64)> {
    let max = max.max(1);
    let chunk = chunk.max(1);
    let mut spans: Vec<(u64, u64)> = remainders.iter().copied().filter(|(s, e)| e > s).collect();
    while spans.len() > max {
        let i = (0..spans.len() - 1).min_by_key(|&i| spans[i + 1].0 - spans[i].1).expect("two spans at least");
        spans[i].1 = spans[i + 1].1;
        spans.remove(i + 1);
    }
    let pieces = |size: u64| spans.iter().map(|(s, e)| (e - s).div_ceil(size)).sum::<u64>();
    let size = if pieces(chunk) as usize <= max {
        chunk
    } else {
        // The smallest piece size that fits: one piece per span always does.
        let (mut lo, mut hi) = (chunk, spans.iter().map(|(s, e)| e - s).max().unwrap_or(chunk));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pieces(mid) as usize <= max {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    };
    let mut out = Vec::new();
    for (s, e) in spans {
        let n = (e - s).div_ceil(size);
        let (base, extra) = ((e - s) / n, (e - s) % n);
        let mut at = s;
        for i in 0..n {
            let len = base + u64::from(i < extra);
            out.push((at, at + len));
            at += len;
        }
    }
    out
}

/// Shares a budget of `budget` leases among tasks by the bytes each has left (`weights`), each
/// getting at most `per_task` and at least one while any budget is left; tasks past the budget
/// get none (they are not handed off).
pub fn share(budget: usize, per_task: usize, weights: &[u64]) -> Vec<usize> {
    let per_task = per_task.max(1);
    let mut out = vec![0usize; weights.len()];
    let mut left = budget;
    for slot in out.iter_mut() {
        if left == 0 {
            break;
        }
        *slot = 1;
        left -= 1;
    }
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum::<u128>().max(1);
    let extra = left;
    for (i, slot) in out.iter_mut().enumerate() {
        if *slot == 0 {
            break;
        }
        let fair = (extra as u128 * u128::from(weights[i]) / total) as usize;
        let add = fair.min(per_task - 1).min(left);
        *slot += add;
        left -= add;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(spec: &[(u64, u64, u64)]) -> Vec<SegmentRow> {
        spec.iter().map(|&(start, end, written)| SegmentRow { start, end, written, durable: start }).collect()
    }

    #[test]
    fn remainders_skip_done_and_leased_segments() {
        let r = rows(&[(0, 10, 10), (10, 20, 12), (20, 30, 20), (30, 40, 35)]);
        assert_eq!(remainders(&r, |_| false), vec![(12, 20), (20, 30), (35, 40)]);
        assert_eq!(remainders(&r, |s| s == 20), vec![(12, 20), (35, 40)]);
    }

    #[test]
    fn chunks_are_at_most_the_chunk_size_and_close_remainders_merge_under_a_cap() {
        assert_eq!(plan(&[(0, 100)], 32, 10), vec![(0, 25), (25, 50), (50, 75), (75, 100)]);
        assert_eq!(plan(&[(0, 10), (12, 20), (50, 60)], 100, 2), vec![(0, 20), (50, 60)], "the smallest gap is merged");
        assert_eq!(plan(&[(0, 100)], 10, 2), vec![(0, 50), (50, 100)], "chunks grow when the cap binds");
        assert!(plan(&[], 10, 4).is_empty());
    }

    #[test]
    fn a_budget_is_shared_by_bytes_left_and_never_overspent() {
        assert_eq!(share(10, 64, &[100, 100]), vec![5, 5]);
        assert_eq!(share(3, 64, &[1, 1, 1, 1]), vec![1, 1, 1, 0]);
        assert_eq!(share(100, 4, &[1000, 1]), vec![4, 1]);
    }

    fn sorted_disjoint() -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec((0u64..5_000, 1u64..5_000), 0..40).prop_map(|gaps| {
            let mut at = 0;
            gaps.into_iter()
                .map(|(gap, len)| {
                    let s = at + gap;
                    at = s + len;
                    (s, at)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn leases_cover_every_remaining_byte_once_and_respect_the_caps(spans in sorted_disjoint(), chunk in 1u64..4_000, max in 1usize..50) {
            let leases = plan(&spans, chunk, max);
            prop_assert!(leases.len() <= max);
            for w in leases.windows(2) {
                prop_assert!(w[0].1 <= w[1].0, "sorted, no overlap: {:?}", w);
            }
            for &(s, e) in &leases {
                prop_assert!(e > s);
            }
            for &(s, e) in &spans {
                // Every byte of every remainder lies in exactly one lease.
                let covering: u64 = leases.iter().map(|&(a, b)| b.min(e).saturating_sub(a.max(s))).sum();
                prop_assert_eq!(covering, e - s);
            }
            if let (Some(first), Some(last)) = (spans.first(), spans.last()) {
                prop_assert!(leases.first().unwrap().0 == first.0 && leases.last().unwrap().1 == last.1, "nothing outside the remainders' reach");
            }
            let fits = spans.len() <= max && spans.iter().map(|(s, e)| (e - s).div_ceil(chunk)).sum::<u64>() as usize <= max;
            if fits {
                prop_assert!(leases.iter().all(|(s, e)| e - s <= chunk), "no chunk over the size while the cap allows");
                prop_assert!(leases.iter().all(|&(a, b)| spans.iter().any(|&(s, e)| a >= s && b <= e)), "no done bytes fetched again");
            }
        }

        #[test]
        fn shares_never_exceed_the_budget_or_the_cap(budget in 0usize..200, per_task in 1usize..70, weights in proptest::collection::vec(0u64..1_000_000, 0..30)) {
            let s = share(budget, per_task, &weights);
            prop_assert_eq!(s.len(), weights.len());
            prop_assert!(s.iter().sum::<usize>() <= budget);
            prop_assert!(s.iter().all(|&n| n <= per_task));
            let served = s.iter().filter(|&&n| n > 0).count();
            prop_assert_eq!(served, weights.len().min(budget));
        }
    }
}
