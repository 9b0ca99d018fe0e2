//! Per-partition event-time clocks: lateness and the dataflow frontier.
//!
//! - Per partition, watermark = max ts seen − `allowed_lateness_ms`. A row is
//!   **late** when its ts is below its own partition's watermark on arrival. This
//!   depends only on the partition's order, so every run and every worker count
//!   judges it the same.
//! - The frontier is the minimum watermark over partitions that are neither
//!   finished nor idle (no row for `idle_timeout_ms` of wall-clock time); a
//!   partition that has not delivered a row yet holds it back until it goes idle.
//!   The frontier never moves backwards. When every open partition is idle it
//!   advances to the largest watermark seen.
//! - A row at or above its partition's watermark but below the frontier (its
//!   partition was idle, or new, while the frontier moved on) is **late_idle**:
//!   the one place wall-clock time decides results.
//!
//! Rows with ts below the frontier are complete: no admitted row will ever have a
//! smaller ts.

use crate::records::DeadLetterReason;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Partition {
    max_ts: Option<i64>,
    last_seen_ms: u64,
    finished: bool,
}

/// The event-time clocks of the partitions one source instance owns.
#[derive(Debug, Clone)]
pub struct PartitionClocks {
    lateness_ms: i64,
    idle_timeout_ms: u64,
    parts: BTreeMap<u32, Partition>,
    frontier: i64,
}

impl PartitionClocks {
    /// No partitions yet; the frontier starts at `start` (e.g. 0).
    pub fn new(allowed_lateness_ms: u64, idle_timeout_ms: u64, start: i64) -> Self {
        PartitionClocks {
            lateness_ms: allowed_lateness_ms as i64,
            idle_timeout_ms,
            parts: BTreeMap::new(),
            frontier: start,
        }
    }

    /// Start tracking partition `p` at wall time `now_ms` (no-op when known).
    pub fn register(&mut self, p: u32, now_ms: u64) {
        self.parts.entry(p).or_insert(Partition {
            max_ts: None,
            last_seen_ms: now_ms,
            finished: false,
        });
    }

    /// Partition `p` delivered something (even an unusable row) at `now_ms`.
    pub fn touch(&mut self, p: u32, now_ms: u64) {
        self.register(p, now_ms);
        if let Some(part) = self.parts.get_mut(&p) {
            part.last_seen_ms = now_ms;
        }
    }

    /// Partition `p` will deliver nothing more.
    pub fn finish(&mut self, p: u32) {
        if let Some(part) = self.parts.get_mut(&p) {
            part.finished = true;
        }
    }

    /// Judge a row of partition `p` with event time `ts`, arriving at wall time
    /// `now_ms`. An admitted row raises its partition's max ts.
    pub fn admit(
        &mut self,
        p: u32,
        ts: i64,
        now_ms: u64,
    ) -> Result<(), (DeadLetterReason, String)> {
        self.register(p, now_ms);
        let lateness = self.lateness_ms;
        let frontier = self.frontier;
        let part = self.parts.get_mut(&p).expect("registered");
        part.last_seen_ms = now_ms;
        if let Some(m) = part.max_ts
            && ts < m - lateness
        {
            return Err((
                DeadLetterReason::Late,
                format!(
                    "ts {} is below partition {p}'s watermark {} (max ts {} - allowed lateness {} ms)",
                    crate::time::format_rfc3339_ms(ts),
                    crate::time::format_rfc3339_ms(m - lateness),
                    crate::time::format_rfc3339_ms(m),
                    lateness
                ),
            ));
        }
        if ts < frontier {
            return Err((
                DeadLetterReason::LateIdle,
                format!(
                    "ts {} is below the frontier {}, which advanced while partition {p} was idle",
                    crate::time::format_rfc3339_ms(ts),
                    crate::time::format_rfc3339_ms(frontier)
                ),
            ));
        }
        part.max_ts = Some(part.max_ts.map_or(ts, |m| m.max(ts)));
        Ok(())
    }

    /// True when every partition has finished.
    pub fn all_finished(&self) -> bool {
        self.parts.values().all(|p| p.finished)
    }

    /// Recompute the frontier at wall time `now_ms`; `None` once every partition
    /// has finished (the source is done).
    pub fn frontier(&mut self, now_ms: u64) -> Option<i64> {
        if self.all_finished() && !self.parts.is_empty() {
            return None;
        }
        let mut min_active: Option<i64> = None;
        let mut any_active = false;
        let mut max_seen: Option<i64> = None;
        for p in self.parts.values() {
            let wm = p.max_ts.map(|m| m - self.lateness_ms);
            max_seen = max_seen.max(wm);
            if p.finished || now_ms.saturating_sub(p.last_seen_ms) >= self.idle_timeout_ms {
                continue;
            }
            any_active = true;
            match wm {
                // Active but silent so far: holds the frontier where it is.
                None => min_active = Some(i64::MIN),
                Some(w) => min_active = Some(min_active.map_or(w, |m| m.min(w))),
            }
        }
        let candidate = if any_active { min_active } else { max_seen };
        if let Some(c) = candidate {
            self.frontier = self.frontier.max(c);
        }
        Some(self.frontier)
    }

    /// The frontier the input ends at: the smallest watermark over the partitions
    /// that delivered rows (finished or not), never below the current frontier.
    /// The same for any arrival order, so a run that stops at the end of its input
    /// can let event time reach exactly this far and no further.
    pub fn end_frontier(&self) -> i64 {
        self.parts
            .values()
            .filter_map(|p| p.max_ts.map(|m| m - self.lateness_ms))
            .min()
            .map_or(self.frontier, |m| m.max(self.frontier))
    }

    /// The frontier as last computed.
    pub fn current(&self) -> i64 {
        self.frontier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_judged_per_partition() {
        let mut c = PartitionClocks::new(5_000, 30_000, 0);
        c.register(0, 0);
        c.register(1, 0);
        assert!(c.admit(0, 100_000, 0).is_ok());
        // Partition 1 is far behind partition 0 but not late against itself.
        assert!(c.admit(1, 50_000, 0).is_ok());
        assert_eq!(c.frontier(0), Some(45_000));
        // 95_000 is exactly partition 0's watermark: on time.
        assert!(c.admit(0, 95_000, 0).is_ok());
        let (r, d) = c.admit(0, 94_999, 0).unwrap_err();
        assert_eq!(r, DeadLetterReason::Late);
        assert!(d.contains("partition 0"), "{d}");
        // Out of order within lateness is fine.
        assert!(c.admit(1, 46_000, 0).is_ok());
    }

    #[test]
    fn silent_partition_holds_the_frontier_until_idle() {
        let mut c = PartitionClocks::new(5_000, 30_000, 0);
        c.register(0, 0);
        c.register(1, 0);
        c.admit(0, 100_000, 10).unwrap();
        assert_eq!(c.frontier(10), Some(0), "partition 1 has said nothing yet");
        // 30 s of wall clock later partition 1 is idle and stops holding back.
        c.admit(0, 110_000, 30_000).unwrap();
        assert_eq!(c.frontier(30_000), Some(105_000));
        // Partition 1 resumes behind the frontier: late_idle, counted, not admitted.
        let (r, _) = c.admit(1, 104_000, 30_001).unwrap_err();
        assert_eq!(r, DeadLetterReason::LateIdle);
        // ... and at or after it: admitted, and it holds the frontier again.
        c.admit(1, 106_000, 30_002).unwrap();
        c.admit(0, 200_000, 30_003).unwrap();
        assert_eq!(c.frontier(30_003), Some(105_000), "never moves backwards");
        c.admit(1, 120_000, 30_004).unwrap();
        assert_eq!(c.frontier(30_004), Some(115_000));
    }

    #[test]
    fn all_idle_advances_to_the_largest_watermark_and_finish_ends() {
        let mut c = PartitionClocks::new(1_000, 100, 0);
        c.admit(0, 10_000, 0).unwrap();
        c.admit(1, 20_000, 0).unwrap();
        assert_eq!(c.frontier(50), Some(9_000));
        assert_eq!(c.frontier(500), Some(19_000));
        c.finish(0);
        assert_eq!(c.frontier(500), Some(19_000));
        c.finish(1);
        assert_eq!(c.frontier(500), None);
    }

    #[test]
    fn finished_partitions_do_not_hold_back() {
        let mut c = PartitionClocks::new(0, 1_000_000, 0);
        c.admit(0, 10, 0).unwrap();
        c.admit(1, 50, 0).unwrap();
        assert_eq!(c.frontier(0), Some(10));
        c.finish(0);
        assert_eq!(c.frontier(0), Some(50));
    }

    #[test]
    fn the_end_frontier_is_the_smallest_final_watermark_whatever_the_order() {
        let ends = |order: &[(u32, i64)]| {
            let mut c = PartitionClocks::new(1_000, 1_000_000, 0);
            c.register(2, 0); // never delivers: does not count
            for &(p, ts) in order {
                c.admit(p, ts, 0).unwrap();
            }
            c.finish(0);
            let _ = c.frontier(0);
            c.end_frontier()
        };
        let a = ends(&[(0, 10_000), (1, 30_000), (0, 40_000), (1, 35_000)]);
        let b = ends(&[(1, 30_000), (1, 35_000), (0, 10_000), (0, 40_000)]);
        assert_eq!((a, b), (34_000, 34_000));
        // Never below the frontier already reached.
        let mut c = PartitionClocks::new(0, 10, 0);
        c.admit(0, 100, 0).unwrap();
        c.admit(1, 500, 0).unwrap();
        assert_eq!(c.frontier(1_000), Some(500)); // both idle: the largest watermark
        assert_eq!(c.end_frontier(), 500);
    }
}
