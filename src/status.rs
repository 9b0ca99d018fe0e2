//! What the running pipeline reports about itself, for the health routes: the
//! embedded process's publish loop ([`crate::embedded`]) folds the
//! dataflow's counters into a [`PipelineStatus`] twice a second; the API reads
//! snapshots. Wall-clock times here are for "is it moving?" questions only —
//! nothing in the dataflow reads them.

use prognos_dataflows::models::CacheStats;
use prognos_dataflows::stats::outcome;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Outcome under which the inference operator counts rows a model scored.
pub const SCORED: &str = "scored";
/// Outcome under which it counts rows judged by rules alone.
pub const FALLBACK: &str = "fallback";

/// One org's progress through the pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgProgress {
    /// Rows by outcome (the `prognos_rows_total` counts of the org).
    pub rows: BTreeMap<String, u64>,
    /// Event time (ms) the source has reached for the org.
    pub event_time_ms: Option<i64>,
    /// Wall time (ms) the org's featured-row count last grew.
    pub last_progress_ms: Option<i64>,
    /// Wall time (ms) a model last scored one of its rows.
    pub last_scored_ms: Option<i64>,
    /// Wall time (ms) rules alone last judged one of its rows.
    pub last_fallback_ms: Option<i64>,
}

impl OrgProgress {
    /// Whether the org's latest scored rows went to the rules (no model, an
    /// unusable one, or an open circuit breaker); false before any row.
    pub fn on_rules(&self) -> bool {
        match (self.last_scored_ms, self.last_fallback_ms) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(s), Some(f)) => f > s,
        }
    }
}

/// A point-in-time copy of the pipeline's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Wall time (ms) the pipeline started; `None` before.
    pub started_ms: Option<i64>,
    /// Wall time (ms) of the last update.
    pub updated_ms: Option<i64>,
    /// Per configured org.
    pub orgs: BTreeMap<String, OrgProgress>,
    /// The model caches' counters, summed over workers.
    pub cache: CacheStats,
    /// (org, version) pairs loaded in some worker's cache.
    pub cache_loaded: Vec<(String, String)>,
    /// (org, version) pairs that failed their load-time check, with the reason.
    pub cache_failed: Vec<(String, String, String)>,
}

/// Shared between the publish loop (writer) and the API (readers).
#[derive(Debug, Default)]
pub struct PipelineStatus {
    inner: Mutex<Snapshot>,
}

impl PipelineStatus {
    /// Record that the pipeline started at `now_ms` with these orgs.
    pub fn start<'a>(&self, now_ms: i64, orgs: impl IntoIterator<Item = &'a String>) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.started_ms = Some(now_ms);
        s.updated_ms = Some(now_ms);
        for o in orgs {
            s.orgs.entry(o.clone()).or_default();
        }
    }

    /// Fold in the dataflow's row counts (cumulative, by (org, outcome)), the
    /// source's event time per org, and the per-worker cache counters, at `now_ms`.
    pub fn update(
        &self,
        now_ms: i64,
        rows: &BTreeMap<(String, String), u64>,
        event_time_ms: &BTreeMap<String, i64>,
        caches: &BTreeMap<usize, CacheStats>,
    ) {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.updated_ms = Some(now_ms);
        for ((org, out), &n) in rows {
            let p = s.orgs.entry(org.clone()).or_default();
            let before = p.rows.get(out).copied().unwrap_or(0);
            if n > before {
                match out.as_str() {
                    outcome::FEATURED => p.last_progress_ms = Some(now_ms),
                    SCORED => p.last_scored_ms = Some(now_ms),
                    FALLBACK => p.last_fallback_ms = Some(now_ms),
                    _ => {}
                }
                p.rows.insert(out.clone(), n);
            }
        }
        for (org, &t) in event_time_ms {
            s.orgs.entry(org.clone()).or_default().event_time_ms = Some(t);
        }
        let mut total = CacheStats::default();
        let mut loaded = Vec::new();
        let mut failed = Vec::new();
        for c in caches.values() {
            total.hits += c.hits;
            total.misses += c.misses;
            total.evictions += c.evictions;
            total.load_seconds += c.load_seconds;
            total.bytes += c.bytes;
            total.models += c.models;
            loaded.extend(c.loaded.iter().cloned());
            failed.extend(c.failed.iter().cloned());
        }
        loaded.sort();
        loaded.dedup();
        failed.sort();
        failed.dedup();
        s.cache = total;
        s.cache_loaded = loaded;
        s.cache_failed = failed;
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
        v.iter()
            .map(|(o, k, n)| ((o.to_string(), k.to_string()), *n))
            .collect()
    }

    #[test]
    fn progress_times_move_only_when_counts_grow() {
        let st = PipelineStatus::default();
        let orgs = ["a".to_string(), "b".to_string()];
        st.start(1_000, &orgs);
        let (no_times, none) = (BTreeMap::new(), BTreeMap::new());
        st.update(
            2_000,
            &rows(&[("a", "featured", 5), ("a", "fallback", 5)]),
            &BTreeMap::from([("a".to_string(), 77)]),
            &none,
        );
        st.update(
            3_000,
            &rows(&[
                ("a", "featured", 5),
                ("a", "fallback", 5),
                ("a", "scored", 2),
            ]),
            &no_times,
            &none,
        );
        let s = st.snapshot();
        let a = &s.orgs["a"];
        assert_eq!(
            a.last_progress_ms,
            Some(2_000),
            "no new featured rows at 3000"
        );
        assert_eq!(a.last_fallback_ms, Some(2_000));
        assert_eq!(a.last_scored_ms, Some(3_000));
        assert_eq!(a.event_time_ms, Some(77));
        assert!(!a.on_rules(), "the latest rows were scored");
        assert_eq!(s.orgs["b"], OrgProgress::default());
        assert!(!s.orgs["b"].on_rules());
        st.update(4_000, &rows(&[("a", "fallback", 9)]), &no_times, &none);
        assert!(st.snapshot().orgs["a"].on_rules());
        assert_eq!(s.started_ms, Some(1_000));
    }

    #[test]
    fn caches_of_all_workers_are_summed() {
        let st = PipelineStatus::default();
        let w = |hits, org: &str| CacheStats {
            hits,
            misses: 1,
            bytes: 10,
            models: 1,
            loaded: vec![(org.into(), "v1".into())],
            ..CacheStats::default()
        };
        let caches = BTreeMap::from([(0, w(3, "a")), (1, w(4, "a"))]);
        st.update(1, &BTreeMap::new(), &BTreeMap::new(), &caches);
        let s = st.snapshot();
        assert_eq!((s.cache.hits, s.cache.misses, s.cache.bytes), (7, 2, 20));
        assert_eq!(s.cache_loaded, vec![("a".into(), "v1".into())]);
    }
}
