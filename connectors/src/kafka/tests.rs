use super::OffsetTracker;
use proptest::prelude::*;

proptest! {
    /// Oracle: after any sequence of reads and checkpoints with growing `T`, the
    /// resume offset is the smallest offset of any row ever read with `ts ≥ T`,
    /// or the next offset when there is none.
    #[test]
    fn resume_offsets_match_a_naive_scan(
        batches in prop::collection::vec(
            (prop::collection::vec(-50i64..50, 0..20), 0i64..20), 1..12),
        first in 0i64..1000,
    ) {
        let t = OffsetTracker::default();
        t.start(0, first);
        let mut all: Vec<(i64, i64)> = Vec::new();
        let mut next = first;
        let mut bound = i64::MIN;
        let mut base = 0i64;
        for (tss, step) in batches {
            let rows: Vec<(i64, i64)> = tss
                .iter()
                .enumerate()
                .map(|(i, d)| (next + i as i64, base + d))
                .collect();
            next += rows.len() as i64;
            base += 10;
            t.record(0, &rows);
            all.extend(&rows);
            bound = bound.max(base - 40 + step);
            let want = all.iter().filter(|r| r.1 >= bound).map(|r| r.0).min().unwrap_or(next);
            prop_assert_eq!(t.resume_offsets(bound).get(&0).copied(), Some(want));
        }
    }
}

#[test]
fn partitions_without_rows_resume_where_they_started() {
    let t = OffsetTracker::default();
    t.start(3, 42);
    t.record(5, &[(7, 100), (8, 90), (9, 200)]);
    let r = t.resume_offsets(95);
    assert_eq!(r.get(&3), Some(&42));
    // Offset 7 (ts 100) is the first row at or after 95; 8 is older but later.
    assert_eq!(r.get(&5), Some(&7));
    assert_eq!(t.resume_offsets(150).get(&5), Some(&9));
    assert_eq!(t.resume_offsets(1000).get(&5), Some(&10));
}
