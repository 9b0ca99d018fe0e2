//! Counters the dataflow keeps for the service's metrics: rows by org and outcome.
//! Operators add per batch (one lock per activation), never per row.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Row outcomes.
pub mod outcome {
    /// Schema-mapped and on time.
    pub const MAPPED: &str = "mapped";
    /// Features computed.
    pub const FEATURED: &str = "featured";
    /// Same machine and ts as an earlier row; dropped (the lowest position wins).
    pub const DUPLICATE: &str = "duplicate";
}

/// Shared counters, keyed by (org, outcome). Dead letters count under their reason.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl Stats {
    /// Add a batch of local counts.
    pub fn add_all(&self, local: &mut BTreeMap<(String, String), u64>) {
        if local.is_empty() {
            return;
        }
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in std::mem::take(local) {
            *c.entry(k).or_default() += v;
        }
    }

    /// The count of (org, outcome).
    pub fn get(&self, org: &str, outcome: &str) -> u64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&(org.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every count.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Batch-local counts. Consecutive rows mostly share an org, so a run of equal
/// keys costs one comparison per row and one allocation per run.
#[derive(Debug, Default)]
pub struct Tally {
    map: BTreeMap<(String, String), u64>,
    run: Option<(String, &'static str, u64)>,
}

impl Tally {
    /// Count one event.
    pub fn add(&mut self, org: &str, outcome: &'static str) {
        match &mut self.run {
            Some((o, out, n)) if o == org && *out == outcome => *n += 1,
            _ => {
                self.close_run();
                self.run = Some((org.to_string(), outcome, 1));
            }
        }
    }

    fn close_run(&mut self) {
        if let Some((o, out, n)) = self.run.take() {
            *self.map.entry((o, out.to_string())).or_default() += n;
        }
    }

    /// Move the counts into `stats`.
    pub fn flush(&mut self, stats: &Stats) {
        self.close_run();
        stats.add_all(&mut self.map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_runs_and_interleavings() {
        let stats = Stats::default();
        let mut t = Tally::default();
        for (org, out) in [("a", "x"), ("a", "x"), ("b", "x"), ("a", "x"), ("a", "y")] {
            t.add(org, out);
        }
        t.flush(&stats);
        t.add("a", "x");
        t.flush(&stats);
        assert_eq!(stats.get("a", "x"), 4);
        assert_eq!(stats.get("b", "x"), 1);
        assert_eq!(stats.get("a", "y"), 1);
        assert_eq!(stats.snapshot().len(), 3);
    }
}
