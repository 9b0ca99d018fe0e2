//! [`OffsetTracker`]: where to resume each partition so that every row with
//! `ts ≥ T` is read again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// Per partition, the `(offset, ts)` of rows read since the last [`resume_offsets`]
/// call pruned them, and the next offset to read.
///
/// `resume_offsets(T)` answers the smallest offset of any row with `ts ≥ T`, or the
/// next offset when there is none. `T` only grows between calls, so rows at the
/// front with `ts < T` can never qualify again and are dropped: memory is the rows
/// of the last margin (plus one checkpoint interval), 16 bytes each.
///
/// [`resume_offsets`]: OffsetTracker::resume_offsets
#[derive(Debug, Default)]
pub struct OffsetTracker {
    parts: Mutex<BTreeMap<u32, Track>>,
}

#[derive(Debug, Default)]
struct Track {
    rows: VecDeque<(i64, i64)>,
    next: i64,
}

impl OffsetTracker {
    /// A partition read from `offset` on (its first row, or a resume point).
    pub fn start(&self, partition: u32, offset: i64) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let t = parts.entry(partition).or_default();
        if t.rows.is_empty() {
            t.next = t.next.max(offset);
        }
    }

    /// Rows of a partition in offset order: `(offset, ts)`.
    pub fn record(&self, partition: u32, rows: &[(i64, i64)]) {
        let Some(&(last, _)) = rows.last() else {
            return;
        };
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let t = parts.entry(partition).or_default();
        t.rows.extend(rows.iter().copied());
        t.next = t.next.max(last + 1);
    }

    /// Per partition, the smallest offset of a row with `ts ≥ min_ts`, else the
    /// next offset to read. Prunes rows with `ts < min_ts` from the front.
    pub fn resume_offsets(&self, min_ts: i64) -> BTreeMap<u32, i64> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts
            .iter_mut()
            .map(|(p, t)| {
                while t.rows.front().is_some_and(|&(_, ts)| ts < min_ts) {
                    t.rows.pop_front();
                }
                (*p, t.rows.front().map_or(t.next, |&(o, _)| o))
            })
            .collect()
    }
}
