//! Model activations in event time: `(org, version, effective_ts)` records. A row
//! is scored by the version active at its own ts, so a deploy or rollback loses and
//! double-scores nothing, and a replay of the same rows with the same activation
//! log scores every row exactly as the first run did.
//!
//! An activation takes effect at or after every inference operator's output
//! frontier (rows below it are already scored): [`Activations::activate`] picks
//! that time under the same lock the operators publish their frontiers with.
//!
//! Prediction thresholds changed while the pipeline runs travel the same way
//! ([`Activations::set_thresholds`]): a change applies to rows from its
//! effective ts on, and rows below every inference frontier keep the old ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An org's prediction thresholds that can change without a restart.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// PREDICTIVE at or above this failure probability ...
    pub failure_threshold: f64,
    /// ... held on every scored row of the machine for this long (event time).
    pub for_s: u64,
    /// At or above this probability a row alerts at once, without `for_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immediate_threshold: Option<f64>,
    /// The predicted component is used when its probability reaches this.
    pub confidence_threshold: f64,
}

impl Thresholds {
    /// `for_s` in ms.
    pub fn for_ms(&self) -> i64 {
        i64::try_from(self.for_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The org's configured thresholds.
    pub fn of(p: &crate::config::PredictionConfig) -> Thresholds {
        Thresholds {
            failure_threshold: p.failure_threshold,
            for_s: p.for_s,
            immediate_threshold: p.immediate_threshold,
            confidence_threshold: p.confidence_threshold,
        }
    }

    /// Whether a row of probability `p`, above the failure threshold without a
    /// break since `held_ms` ago, alerts.
    #[inline]
    pub fn alerts(&self, p: f64, held_ms: i64) -> bool {
        p >= self.failure_threshold
            && (held_ms >= self.for_ms() || self.immediate_threshold.is_some_and(|i| p >= i))
    }
}

/// A threshold change: `thresholds` for `organization_id` from `effective_ts` on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdChange {
    /// Organization.
    pub organization_id: String,
    /// Event time (ms) from which it applies.
    pub effective_ts: i64,
    /// The thresholds.
    pub thresholds: Thresholds,
}

/// Every org's threshold changes by effective ts (a snapshot operators hold).
pub type ThresholdLog = HashMap<String, BTreeMap<i64, Thresholds>>;

/// A per-org, per-ts map as one list in `(org, ts)` order.
fn flatten_sorted<V, T>(
    by_org: &HashMap<String, BTreeMap<i64, V>>,
    mut make: impl FnMut(&str, i64, &V) -> T,
) -> Vec<T> {
    let mut orgs: Vec<&String> = by_org.keys().collect();
    orgs.sort();
    orgs.into_iter()
        .flat_map(|org| by_org[org].iter().map(move |(ts, v)| (org, *ts, v)))
        .map(|(org, ts, v)| make(org, ts, v))
        .collect()
}

/// The thresholds in force for `org` at `ts` under `log` (None: the config's).
pub fn thresholds_at(log: &ThresholdLog, org: &str, ts: i64) -> Option<Thresholds> {
    log.get(org)
        .and_then(|m| m.range(..=ts).next_back())
        .map(|(_, t)| *t)
}

/// One activation (None = no model: rules only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// Organization.
    pub organization_id: String,
    /// Version to score with from `effective_ts` on; `None` deactivates.
    pub version: Option<String>,
    /// Event time (ms) from which it applies.
    pub effective_ts: i64,
}

#[derive(Debug, Default)]
struct State {
    by_org: HashMap<String, BTreeMap<i64, Option<Arc<str>>>>,
    thresholds: Arc<ThresholdLog>,
    frontiers: HashMap<usize, i64>,
}

/// The activation log shared by a process's inference operators and its control plane.
#[derive(Debug, Default)]
pub struct Activations {
    state: Mutex<State>,
    /// Bumped on every threshold change, so operators re-read only then.
    thresholds_version: AtomicU64,
}

impl Activations {
    /// A log holding `log` (e.g. loaded from the registry at start).
    pub fn from_log(log: impl IntoIterator<Item = Activation>) -> Activations {
        let a = Activations::default();
        {
            let mut s = a.lock();
            for x in log {
                s.by_org
                    .entry(x.organization_id)
                    .or_default()
                    .insert(x.effective_ts, x.version.map(Arc::from));
            }
        }
        a
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Activate `version` for `org` from `not_before` or the operators' output
    /// frontier, whichever is later; returns the record appended.
    pub fn activate(&self, org: &str, version: Option<String>, not_before: i64) -> Activation {
        let mut s = self.lock();
        let frontier = s.frontiers.values().copied().max().unwrap_or(i64::MIN);
        let effective_ts = not_before.max(frontier);
        s.by_org
            .entry(org.to_string())
            .or_default()
            .insert(effective_ts, version.as_deref().map(Arc::from));
        Activation {
            organization_id: org.to_string(),
            version,
            effective_ts,
        }
    }

    /// Apply `thresholds` for `org` from `not_before` or the operators' output
    /// frontier, whichever is later; returns the change recorded.
    pub fn set_thresholds(
        &self,
        org: &str,
        thresholds: Thresholds,
        not_before: i64,
    ) -> ThresholdChange {
        let mut s = self.lock();
        let frontier = s.frontiers.values().copied().max().unwrap_or(i64::MIN);
        let effective_ts = not_before.max(frontier);
        Arc::make_mut(&mut s.thresholds)
            .entry(org.to_string())
            .or_default()
            .insert(effective_ts, thresholds);
        self.thresholds_version.fetch_add(1, Ordering::Release);
        ThresholdChange {
            organization_id: org.to_string(),
            effective_ts,
            thresholds,
        }
    }

    /// Add changes at their recorded effective ts as they are (a log persisted
    /// earlier, or the baseline recorded with an org's first change): nothing of
    /// it is moved to the operators' frontier.
    pub fn load_thresholds(&self, log: impl IntoIterator<Item = ThresholdChange>) {
        let mut s = self.lock();
        let t = Arc::make_mut(&mut s.thresholds);
        for c in log {
            t.entry(c.organization_id)
                .or_default()
                .insert(c.effective_ts, c.thresholds);
        }
        drop(s);
        self.thresholds_version.fetch_add(1, Ordering::Release);
    }

    /// Every threshold change, ordered by org then time.
    pub fn threshold_log(&self) -> Vec<ThresholdChange> {
        flatten_sorted(&self.lock().thresholds, |org, ts, t| ThresholdChange {
            organization_id: org.to_string(),
            effective_ts: ts,
            thresholds: *t,
        })
    }

    /// The threshold log as it is now.
    pub fn threshold_snapshot(&self) -> Arc<ThresholdLog> {
        self.lock().thresholds.clone()
    }

    /// The threshold log when it changed since `seen` (which is updated).
    pub fn thresholds_if_changed(&self, seen: &mut u64) -> Option<Arc<ThresholdLog>> {
        let v = self.thresholds_version.load(Ordering::Acquire);
        if v == *seen {
            return None;
        }
        *seen = v;
        Some(self.lock().thresholds.clone())
    }

    /// The version active for `org` at `ts`.
    pub fn version_at(&self, org: &str, ts: i64) -> Option<Arc<str>> {
        Self::lookup(&self.lock(), org, ts)
    }

    fn lookup(s: &State, org: &str, ts: i64) -> Option<Arc<str>> {
        s.by_org
            .get(org)
            .and_then(|m| m.range(..=ts).next_back())
            .and_then(|(_, v)| v.clone())
    }

    /// Resolve versions for a batch and publish `frontier` for operator `worker`
    /// atomically: no activation can land below what this batch has scored.
    pub fn resolve_batch(
        &self,
        worker: usize,
        frontier: i64,
        rows: &[(&str, i64)],
        out: &mut Vec<Option<Arc<str>>>,
    ) {
        self.resolve_rows(worker, frontier, rows, out, None);
    }

    /// [`Activations::resolve_batch`], also resolving each row's threshold
    /// changes (None: the config's) into `thresholds`.
    pub fn resolve_rows(
        &self,
        worker: usize,
        frontier: i64,
        rows: &[(&str, i64)],
        out: &mut Vec<Option<Arc<str>>>,
        thresholds: Option<&mut Vec<Option<Thresholds>>>,
    ) {
        let mut s = self.lock();
        out.clear();
        out.extend(rows.iter().map(|(org, ts)| Self::lookup(&s, org, *ts)));
        if let Some(t) = thresholds {
            t.clear();
            t.extend(
                rows.iter()
                    .map(|(org, ts)| thresholds_at(&s.thresholds, org, *ts)),
            );
        }
        let f = s.frontiers.entry(worker).or_insert(i64::MIN);
        *f = (*f).max(frontier);
    }

    /// Every activation, ordered by org then time (what the registry persists).
    pub fn log(&self) -> Vec<Activation> {
        flatten_sorted(&self.lock().by_org, |org, ts, ver| Activation {
            organization_id: org.to_string(),
            version: ver.as_deref().map(str::to_string),
            effective_ts: ts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_changes_apply_from_the_frontier_on() {
        let a = Activations::default();
        let t = |f| Thresholds {
            failure_threshold: f,
            for_s: 0,
            immediate_threshold: None,
            confidence_threshold: 0.7,
        };
        let mut seen = 0;
        assert!(a.thresholds_if_changed(&mut seen).is_none());
        let mut v = Vec::new();
        let mut th = Vec::new();
        // An operator has scored everything below 5000.
        a.resolve_rows(0, 5_000, &[("acme", 4_000)], &mut v, Some(&mut th));
        assert_eq!(th, vec![None]);
        let c = a.set_thresholds("acme", t(0.5), 1_000);
        assert_eq!(c.effective_ts, 5_000, "never below what was scored");
        let log = a.thresholds_if_changed(&mut seen).expect("changed");
        assert!(a.thresholds_if_changed(&mut seen).is_none());
        assert_eq!(thresholds_at(&log, "acme", 4_999), None);
        assert_eq!(thresholds_at(&log, "acme", 5_000), Some(t(0.5)));
        a.resolve_rows(
            0,
            9_000,
            &[("acme", 4_999), ("acme", 6_000), ("other", 6_000)],
            &mut v,
            Some(&mut th),
        );
        assert_eq!(th, vec![None, Some(t(0.5)), None]);
        assert_eq!(
            a.set_thresholds("acme", t(0.9), 20_000).effective_ts,
            20_000
        );
        let log = a.thresholds_if_changed(&mut seen).unwrap();
        assert_eq!(thresholds_at(&log, "acme", 19_999), Some(t(0.5)));
        assert_eq!(thresholds_at(&log, "acme", 20_000), Some(t(0.9)));
    }

    #[test]
    fn a_loaded_threshold_log_applies_where_it_was_recorded() {
        let t = |f| Thresholds {
            failure_threshold: f,
            for_s: 30,
            immediate_threshold: None,
            confidence_threshold: 0.7,
        };
        let live = Activations::default();
        let mut v = Vec::new();
        live.resolve_rows(0, 50_000, &[], &mut v, None);
        live.load_thresholds([ThresholdChange {
            organization_id: "acme".into(),
            effective_ts: i64::MIN,
            thresholds: t(0.6),
        }]);
        live.set_thresholds("acme", t(0.8), 10_000);
        let log = live.threshold_log();
        assert_eq!(
            log.iter().map(|c| c.effective_ts).collect::<Vec<_>>(),
            [i64::MIN, 50_000],
            "loaded as recorded; set moved up to the frontier"
        );
        // A restart loads the persisted log before any row: the same answers.
        let again = Activations::default();
        let mut seen = 0;
        again.load_thresholds(log);
        let snap = again
            .thresholds_if_changed(&mut seen)
            .expect("loading is a change");
        assert_eq!(thresholds_at(&snap, "acme", 49_999), Some(t(0.6)));
        assert_eq!(thresholds_at(&snap, "acme", 50_000), Some(t(0.8)));
        assert_eq!(again.threshold_log(), live.threshold_log());
    }

    #[test]
    fn rows_are_scored_by_the_version_active_at_their_ts() {
        let a = Activations::default();
        a.activate("acme", Some("v1".into()), 1_000);
        a.activate("acme", Some("v2".into()), 5_000);
        a.activate("acme", None, 9_000);
        assert_eq!(a.version_at("acme", 999), None);
        assert_eq!(a.version_at("acme", 1_000).as_deref(), Some("v1"));
        assert_eq!(a.version_at("acme", 4_999).as_deref(), Some("v1"));
        assert_eq!(a.version_at("acme", 5_000).as_deref(), Some("v2"));
        assert_eq!(a.version_at("acme", 9_000), None);
        assert_eq!(a.version_at("other", 5_000), None);
    }

    #[test]
    fn activations_never_land_below_the_scored_frontier() {
        let a = Activations::default();
        let mut out = Vec::new();
        a.resolve_batch(0, 10_000, &[("acme", 9_000)], &mut out);
        a.resolve_batch(1, 7_000, &[], &mut out);
        let act = a.activate("acme", Some("v1".into()), 2_000);
        assert_eq!(
            act.effective_ts, 10_000,
            "moved up to the highest operator frontier"
        );
        assert_eq!(a.version_at("acme", 9_999), None);
        // A replay from the persisted log scores identically.
        let replay = Activations::from_log(a.log());
        assert_eq!(replay.version_at("acme", 10_000).as_deref(), Some("v1"));
        assert_eq!(replay.log(), a.log());
    }
}
