//! What the running pipeline reports about itself, for the health routes: the
//! embedded process's publish loop ([`crate::embedded`]) folds the
//! dataflow's counters into a [`PipelineStatus`] twice a second; the API reads
//! snapshots. Wall-clock times here are for "is it moving?" questions only —
//! nothing in the dataflow reads them.

use prognos_dataflows::models::{CacheStats, ModelLoadRecord};
use prognos_dataflows::stats::outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Outcome under which the inference operator counts rows a model scored.
pub const SCORED: &str = "scored";
/// Outcome under which it counts rows judged by rules alone.
pub const FALLBACK: &str = "fallback";

/// One org's progress through the pipeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
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

/// How often a cluster worker reports to the controller.
pub const HEARTBEAT_EVERY_MS: u64 = 2_000;
/// A worker not heard from for this long is stale (five missed heartbeats).
pub const WORKER_STALE_MS: i64 = 10_000;

/// What a worker process of a cluster sends the controller
/// (`POST /api/cluster/heartbeat`, every [`HEARTBEAT_EVERY_MS`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// The process's index in the timely cluster (`-p`).
    pub process: usize,
    /// How many processes the cluster has (`-n`).
    pub processes: usize,
    /// Timely worker threads in the process (`-w`).
    pub threads: usize,
    /// `starting` (waiting for the cluster to form or recovering), `running`, `stopping`.
    pub state: String,
    /// The process's pipeline: its rows per org and its model cache.
    pub pipeline: Snapshot,
    /// Model loads since the last heartbeat the controller acknowledged.
    #[serde(default)]
    pub loads: Vec<ModelLoadRecord>,
}

/// A worker as the controller's health routes show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    /// Its process index.
    pub process: usize,
    /// `ok` (heard from within [`WORKER_STALE_MS`]), `stale`, or `missing`
    /// (a process the cluster has that never reported).
    pub status: &'static str,
    /// The state it last reported.
    pub state: Option<String>,
    /// Its timely worker threads.
    pub threads: Option<usize>,
    /// Controller wall time (ms) of its last heartbeat.
    pub last_seen_ms: Option<i64>,
}

/// The controller's view of its workers, from their heartbeats. The number of
/// processes expected is the largest any worker reported, so a process that
/// never reported is named `missing` as soon as another one has.
#[derive(Debug, Default)]
pub struct ClusterStatus {
    inner: Mutex<ClusterInner>,
}

#[derive(Debug, Default)]
struct ClusterInner {
    /// process → (its latest report without its loads, controller time received).
    workers: BTreeMap<usize, (WorkerReport, i64)>,
    expected: usize,
    /// process → (its start time, the last load seq audited), so a heartbeat
    /// sent again after a lost answer audits nothing twice.
    audited: BTreeMap<usize, (Option<i64>, u64)>,
}

impl ClusterStatus {
    /// Take a heartbeat received at `now_ms`; the loads not yet seen from this
    /// run of the process (to audit).
    pub fn receive(&self, mut report: WorkerReport, now_ms: i64) -> Vec<ModelLoadRecord> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.expected = g.expected.max(report.processes).max(report.process + 1);
        let started = report.pipeline.started_ms;
        let last = match g.audited.get(&report.process) {
            Some((s, seq)) if *s == started => *seq,
            _ => 0,
        };
        let loads: Vec<ModelLoadRecord> = std::mem::take(&mut report.loads)
            .into_iter()
            .filter(|r| r.seq > last)
            .collect();
        let seq = loads.iter().map(|r| r.seq).max().unwrap_or(last);
        g.audited.insert(report.process, (started, seq));
        g.workers.insert(report.process, (report, now_ms));
        loads
    }

    /// Every expected worker's status at `now_ms`, by process index.
    pub fn workers(&self, now_ms: i64) -> Vec<WorkerView> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (0..g.expected)
            .map(|p| match g.workers.get(&p) {
                Some((r, seen)) => WorkerView {
                    process: p,
                    status: if now_ms - seen > WORKER_STALE_MS {
                        "stale"
                    } else {
                        "ok"
                    },
                    state: Some(r.state.clone()),
                    threads: Some(r.threads),
                    last_seen_ms: Some(*seen),
                },
                None => WorkerView {
                    process: p,
                    status: "missing",
                    state: None,
                    threads: None,
                    last_seen_ms: None,
                },
            })
            .collect()
    }

    /// The cluster's pipeline as one snapshot: rows summed over workers, the
    /// latest of their times, their caches summed. It started when every
    /// expected worker had; it was updated when its least recently heard
    /// worker was (so one stale or missing worker makes the pipeline stuck:
    /// a timely cluster does not progress without every process).
    pub fn merged(&self) -> Snapshot {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Snapshot::default();
        if g.expected == 0 {
            return out;
        }
        let all = g.workers.len() == g.expected;
        let mut started = Some(i64::MIN);
        let mut updated = Some(i64::MAX);
        let mut caches = BTreeMap::new();
        for (p, (r, seen)) in &g.workers {
            let s = &r.pipeline;
            started = match (started, s.started_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            updated = updated.map(|u| u.min(*seen));
            for (org, q) in &s.orgs {
                let m = out.orgs.entry(org.clone()).or_default();
                for (k, n) in &q.rows {
                    *m.rows.entry(k.clone()).or_default() += n;
                }
                m.event_time_ms = m.event_time_ms.max(q.event_time_ms);
                m.last_progress_ms = m.last_progress_ms.max(q.last_progress_ms);
                m.last_scored_ms = m.last_scored_ms.max(q.last_scored_ms);
                m.last_fallback_ms = m.last_fallback_ms.max(q.last_fallback_ms);
            }
            let mut c = s.cache.clone();
            c.loaded = s.cache_loaded.clone();
            c.failed = s.cache_failed.clone();
            caches.insert(*p, c);
        }
        if all {
            out.started_ms = started;
            out.updated_ms = updated;
        }
        // The cache lists the same way the embedded process folds its workers'.
        let st = PipelineStatus::default();
        st.update(0, &BTreeMap::new(), &BTreeMap::new(), &caches);
        let folded = st.snapshot();
        out.cache = folded.cache;
        out.cache_loaded = folded.cache_loaded;
        out.cache_failed = folded.cache_failed;
        out
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

    fn load(seq: u64, org: &str) -> ModelLoadRecord {
        ModelLoadRecord {
            seq,
            org: org.into(),
            version: "v1".into(),
            ok: true,
            error: None,
            load_ms: 3.0,
            bytes: 100,
            at_ms: 5,
        }
    }

    fn report(
        process: usize,
        started: i64,
        counts: &[(&str, &str, u64)],
        loads: Vec<ModelLoadRecord>,
    ) -> WorkerReport {
        let st = PipelineStatus::default();
        st.start(started, std::iter::empty());
        let caches = BTreeMap::from([(
            0,
            CacheStats {
                hits: 9,
                misses: 1,
                models: 1,
                bytes: 100,
                loaded: vec![("a".into(), "v1".into())],
                ..CacheStats::default()
            },
        )]);
        st.update(started + 1, &rows(counts), &BTreeMap::new(), &caches);
        WorkerReport {
            process,
            processes: 2,
            threads: 1,
            state: "running".into(),
            pipeline: st.snapshot(),
            loads,
        }
    }

    #[test]
    fn a_cluster_is_named_per_process_ok_stale_or_missing() {
        let c = ClusterStatus::default();
        assert!(
            c.workers(0).is_empty(),
            "nothing reported, nothing expected"
        );
        assert_eq!(c.merged(), Snapshot::default());
        let audit = c.receive(
            report(0, 1_000, &[("a", "fallback", 5)], vec![load(1, "a")]),
            2_000,
        );
        assert_eq!(audit, vec![load(1, "a")]);
        let w = c.workers(2_500);
        assert_eq!(
            w.iter().map(|w| (w.process, w.status)).collect::<Vec<_>>(),
            [(0, "ok"), (1, "missing")]
        );
        let m = c.merged();
        assert_eq!(
            (m.started_ms, m.updated_ms),
            (None, None),
            "a missing process: the cluster's pipeline does not run"
        );
        assert_eq!(m.orgs["a"].rows["fallback"], 5, "what is known is shown");
        c.receive(
            report(
                1,
                1_200,
                &[("a", "fallback", 7), ("b", "scored", 1)],
                vec![],
            ),
            3_000,
        );
        let m = c.merged();
        assert_eq!(m.started_ms, Some(1_200), "started once every process had");
        assert_eq!(
            m.updated_ms,
            Some(2_000),
            "as fresh as its least recent worker"
        );
        assert_eq!(m.orgs["a"].rows["fallback"], 12);
        assert_eq!(m.orgs["b"].rows["scored"], 1);
        assert_eq!((m.cache.hits, m.cache.misses, m.cache.models), (18, 2, 2));
        assert_eq!(m.cache_loaded, vec![("a".to_string(), "v1".to_string())]);
        // Process 0 falls silent.
        let w = c.workers(2_000 + WORKER_STALE_MS + 1);
        assert_eq!(
            w.iter().map(|w| w.status).collect::<Vec<_>>(),
            ["stale", "ok"]
        );
        assert_eq!(w[0].last_seen_ms, Some(2_000));
    }

    #[test]
    fn a_load_is_audited_once_per_run_of_a_process() {
        let c = ClusterStatus::default();
        let first = c.receive(report(0, 1_000, &[], vec![load(1, "a"), load(2, "b")]), 10);
        assert_eq!(first.len(), 2);
        // The same heartbeat again (its answer was lost), then one more load.
        assert!(
            c.receive(report(0, 1_000, &[], vec![load(1, "a"), load(2, "b")]), 20)
                .is_empty()
        );
        let more = c.receive(report(0, 1_000, &[], vec![load(2, "b"), load(3, "a")]), 30);
        assert_eq!(more, vec![load(3, "a")]);
        // A restarted process counts from 1 again.
        let restarted = c.receive(report(0, 9_000, &[], vec![load(1, "a")]), 40);
        assert_eq!(restarted, vec![load(1, "a")]);
    }

    #[test]
    fn a_report_survives_its_wire_format() {
        let r = report(1, 1_000, &[("a", "featured", 3)], vec![load(4, "a")]);
        let back: WorkerReport = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
