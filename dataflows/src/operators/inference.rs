//! Inference: feature rows in, scored rows out. Rows wait until the input frontier
//! passes their ts; then, per org and model version (the version active at each
//! row's own ts, see [`Activations`]), they are scored in `ort` runs of at most
//! `max_batch_rows` rows. The component and time-to-failure models run only on
//! rows at or above the stage-2 gate.
//!
//! No active version, a version that fails its load-time check, a batch whose
//! run fails or passes the org's `prediction.timeout_ms`, or an org whose
//! circuit breaker is open (after repeated inference errors, timeouts included;
//! wall clock, like idleness) gives a fallback row: no probability, `fallback =
//! true` with a [`FallbackReason`], rules only. Each worker keeps a [`Breaker`]
//! per org: closed until [`BREAKER_ERRORS`] consecutive failed runs, then open
//! for [`BREAKER_OPEN`], then half-open: the next batch is a probe whose success
//! closes it and whose failure re-opens it. Rows stay on the worker that computed
//! their features (no exchange); the loaded versions are shared by the process's
//! workers ([`ModelCache`]).

use crate::config::Config;
use crate::models::activations::{Activations, Thresholds};
use crate::models::cache::{
    CacheLimits, CacheSlot, CacheStats, ModelCache, ModelRoot, ModelSource,
};
use crate::models::runner::Score;
use crate::records::{FeatureMap, FeatureRow, ModelHealth, Prediction, PredictionMetadata};
use crate::stats::{BatchSample, BreakerState, Stage, Stats, Tally};
use ort::environment::Environment;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// Consecutive inference errors that open an org's circuit breaker.
pub const BREAKER_ERRORS: u32 = 3;
/// How long an open breaker sends the org's rows to the fallback.
pub const BREAKER_OPEN: Duration = Duration::from_secs(60);

/// Why rules alone judged a row (`metadata.fallbackReason` of its prediction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// The org is unknown here or its predictions are disabled.
    Disabled,
    /// No version is active at the row's ts.
    NoModel,
    /// The process runs without ONNX Runtime.
    NoRuntime,
    /// The active version failed to load or its load-time check.
    ModelUnusable,
    /// The org's circuit breaker is open.
    BreakerOpen,
    /// The batch's run failed.
    InferenceError,
    /// The batch's run passed `prediction.timeout_ms`.
    Timeout,
}

impl FallbackReason {
    /// Every reason.
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Disabled,
        FallbackReason::NoModel,
        FallbackReason::NoRuntime,
        FallbackReason::ModelUnusable,
        FallbackReason::BreakerOpen,
        FallbackReason::InferenceError,
        FallbackReason::Timeout,
    ];

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Disabled => "disabled",
            FallbackReason::NoModel => "no_model",
            FallbackReason::NoRuntime => "no_runtime",
            FallbackReason::ModelUnusable => "model_unusable",
            FallbackReason::BreakerOpen => "breaker_open",
            FallbackReason::InferenceError => "inference_error",
            FallbackReason::Timeout => "timeout",
        }
    }
}

/// A feature row with the model's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRow {
    /// The features.
    pub row: FeatureRow,
    /// Failure probability; NaN when no model scored the row.
    pub probability: f64,
    /// Probability of the most likely component (0 when stage 2 did not run).
    pub confidence: f64,
    /// The predicted component when confident, else the org's general component.
    pub component: Arc<str>,
    /// Minutes to failure.
    pub time_to_failure: f64,
    /// Version that scored it.
    pub model_version: Option<Arc<str>>,
    /// Health of that version when it scored.
    pub health: ModelHealth,
    /// True when rules alone judge the row.
    pub fallback: bool,
    /// Why; None when a model scored it.
    pub fallback_reason: Option<FallbackReason>,
    /// Milliseconds of `ort` time per row in its batch.
    pub processing_ms: f64,
    /// Milliseconds spent loading the version for this batch (0 when cached).
    pub load_ms: f64,
    /// The scoring version's most important features (input index, weight), for
    /// alert explanations; None on fallback rows.
    pub importance: Option<Arc<Vec<(usize, f64)>>>,
}

impl ScoredRow {
    /// The seed's PredictionResult for this row (`names` = the org's feature names).
    pub fn to_prediction(&self, names: &[String], now_ms: i64) -> Prediction {
        Prediction {
            organization_id: self.row.organization_id.clone(),
            machine_id: self.row.machine_id.clone(),
            ts: self.row.ts,
            probability: self.probability,
            confidence: self.confidence,
            predicted_component: self.component.to_string(),
            time_to_failure: self.time_to_failure,
            model_version: self.model_version.as_deref().unwrap_or("rules").to_string(),
            timestamp: now_ms,
            features: FeatureMap(
                names
                    .iter()
                    .cloned()
                    .zip(self.row.features.iter().copied())
                    .collect(),
            ),
            metadata: PredictionMetadata {
                processing_time: self.processing_ms,
                model_load_time: self.load_ms,
                feature_count: self.row.features.len(),
                model_health: self.health,
                fallback_used: self.fallback,
                fallback_reason: self.fallback_reason.map(|r| r.as_str().to_string()),
            },
        }
    }
}

/// Per-org settings the operator needs.
#[derive(Debug, Clone)]
pub struct OrgScoring {
    /// Feature names, which a model must have been trained on.
    pub feature_names: Arc<Vec<String>>,
    /// Component trusted at or above this probability.
    pub confidence_threshold: f64,
    /// The general component.
    pub general_component: Arc<str>,
    /// Time to failure reported when the regressor did not run.
    pub time_to_failure_minutes: f64,
    /// Whether predictions are enabled for the org at all.
    pub enabled: bool,
    /// Deadline of one batch's run.
    pub timeout: Duration,
}

/// Everything the inference operator needs, cloned into each worker.
#[derive(Clone)]
pub struct InferenceContext {
    /// ONNX Runtime; `None` runs every org on the fallback.
    pub env: Option<Environment>,
    /// `<root>/<org>/<version>/` holds the versions.
    pub root: ModelRoot,
    /// Where versions missing from `root` are fetched from (a cluster's
    /// controller); `None`: `root` holds every version.
    pub source: Option<Arc<dyn ModelSource>>,
    /// Cache limits for the process.
    pub limits: CacheLimits,
    /// The process's cache, made by the first worker that needs it (clones of a
    /// context share it).
    pub shared_cache: CacheSlot,
    /// The activation log.
    pub activations: Arc<Activations>,
    /// Per-org settings.
    pub orgs: Arc<HashMap<String, OrgScoring>>,
    /// Largest batch per `ort` run.
    pub max_batch_rows: usize,
    /// Row counters.
    pub stats: Arc<Stats>,
    /// The shared cache's counters (under key 0), for metrics and health.
    pub cache_stats: Arc<Mutex<BTreeMap<usize, CacheStats>>>,
    /// The wall clock breakers open and half-open by (tests pass their own).
    pub clock: Clock,
}

/// A source of wall-clock instants.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Instant::now)
}

impl InferenceContext {
    /// Per-org settings from the configuration.
    pub fn orgs_from(config: &Config) -> Arc<HashMap<String, OrgScoring>> {
        Arc::new(
            config
                .orgs
                .iter()
                .map(|(id, o)| {
                    (
                        id.clone(),
                        OrgScoring {
                            feature_names: Arc::new(o.feature_names()),
                            confidence_threshold: o.prediction.confidence_threshold,
                            general_component: Arc::from(o.prediction.general_component()),
                            time_to_failure_minutes: o.prediction.time_to_failure_minutes as f64,
                            enabled: o.prediction.enabled,
                            timeout: Duration::from_millis(o.prediction.timeout_ms),
                        },
                    )
                })
                .collect(),
        )
    }
}

/// One org's circuit breaker on one worker.
#[derive(Debug, Default, Clone)]
pub struct Breaker {
    errors: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// Its state at `now`: open for [`BREAKER_OPEN`] after it opened, then half-open.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(_) if self.probing => BreakerState::HalfOpen,
            Some(t) if now.saturating_duration_since(t) < BREAKER_OPEN => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a batch may run at `now`. Closed and half-open admit (the batch a
    /// half-open breaker admits is its probe); open sends the batch to the fallback.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => {
                self.probing = true;
                true
            }
            BreakerState::Open => false,
        }
    }

    /// A run succeeded: the breaker closes.
    pub fn success(&mut self) {
        *self = Breaker::default();
    }

    /// A run failed at `now`; true when this opened (or re-opened) the breaker:
    /// the [`BREAKER_ERRORS`]th consecutive error, or a failed half-open probe.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.errors = self.errors.saturating_add(1);
        if self.probing || self.errors >= BREAKER_ERRORS {
            self.opened_at = Some(now);
            self.probing = false;
            true
        } else {
            false
        }
    }

    /// Consecutive errors since the last success.
    pub fn errors(&self) -> u32 {
        self.errors
    }
}

fn fallback(
    row: FeatureRow,
    org: Option<&OrgScoring>,
    version: Option<Arc<str>>,
    health: ModelHealth,
    reason: FallbackReason,
) -> ScoredRow {
    ScoredRow {
        row,
        probability: f64::NAN,
        confidence: 0.0,
        component: org.map_or_else(|| Arc::from(""), |o| o.general_component.clone()),
        time_to_failure: org.map_or(0.0, |o| o.time_to_failure_minutes),
        model_version: version,
        health,
        fallback: true,
        fallback_reason: Some(reason),
        processing_ms: 0.0,
        load_ms: 0.0,
        importance: None,
    }
}

/// Rank every row's org among `names` (sorted; an org not there yet is inserted
/// in order), so sorting by rank sorts by org name. Consecutive rows mostly share
/// an org, which then costs one comparison.
fn org_ranks(rows: &[FeatureRow], names: &mut Vec<String>, ranks: &mut Vec<u32>) {
    loop {
        ranks.clear();
        let mut prev: Option<(&str, u32)> = None;
        let mut missing = None;
        for r in rows {
            let org = r.organization_id.as_str();
            let k = match prev {
                Some((p, k)) if p == org => k,
                _ => match names.binary_search_by(|n| n.as_str().cmp(org)) {
                    Ok(k) => k as u32,
                    Err(_) => {
                        missing = Some(org.to_string());
                        break;
                    }
                },
            };
            prev = Some((org, k));
            ranks.push(k);
        }
        match missing {
            None => return,
            Some(m) => {
                let at = names.binary_search(&m).unwrap_err();
                names.insert(at, m);
            }
        }
    }
}

/// Versions in name order (none first), without comparing the text of one shared
/// string with itself.
fn cmp_version(a: &Option<Arc<str>>, b: &Option<Arc<str>>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) if Arc::ptr_eq(x, y) => std::cmp::Ordering::Equal,
        _ => a.as_deref().cmp(&b.as_deref()),
    }
}

/// Score `rows` with each org's active model version.
pub fn inference<'s>(
    rows: Stream<'s, u64, Vec<FeatureRow>>,
    name: &str,
    ctx: InferenceContext,
) -> Stream<'s, u64, Vec<ScoredRow>> {
    let worker = rows.scope().index();
    rows.unary_frontier(Pipeline, name, move |cap, _info| {
        let mut cap = Some(cap);
        let mut pending: Vec<FeatureRow> = Vec::new();
        let cache: Option<Arc<ModelCache>> = ctx.env.clone().map(|env| {
            ctx.shared_cache
                .get_or_init(|| {
                    Arc::new(ModelCache::new(env, ctx.root.clone(), ctx.limits).with_source(ctx.source.clone()))
                })
                .clone()
        });
        // Preload every org's currently active version, so the first batch does not
        // wait (a failure here is logged and the version is remembered as unusable).
        // The first worker loads; the others find it loaded (or wait for its load).
        if let Some(cache) = cache.as_ref() {
            let mut orgs: Vec<&String> = ctx.orgs.keys().collect();
            orgs.sort();
            for org in orgs {
                let s = &ctx.orgs[org];
                if let (true, Some(v)) = (s.enabled, ctx.activations.version_at(org, i64::MAX)) {
                    match cache.preload(org, &v, &s.feature_names) {
                        Ok(_) => tracing::debug!(org = %org, version = %v, "model preloaded"),
                        Err(e) => tracing::warn!(org = %org, version = %v, error = %e, "active model unusable; rules only"),
                    }
                }
            }
        }
        // Per-worker copies of the org settings: the strings they hand to every row
        // (the general component) then have one reference count per worker, so two
        // workers do not bounce one counter's cache line per row.
        let orgs: HashMap<String, OrgScoring> = ctx
            .orgs
            .iter()
            .map(|(k, s)| {
                let general_component = Arc::from(&*s.general_component);
                (k.clone(), OrgScoring { general_component, ..s.clone() })
            })
            .collect();
        // Org names in order; a row's rank here sorts it as its org name would.
        let mut org_names: Vec<String> = orgs.keys().cloned().collect();
        org_names.sort();
        let mut breakers: HashMap<String, Breaker> = HashMap::new();
        let mut versions: Vec<Option<Arc<str>>> = Vec::new();
        let mut thresholds: Vec<Option<Thresholds>> = Vec::new();
        let mut ranks: Vec<u32> = Vec::new();
        let mut order: Vec<u32> = Vec::new();
        let mut scores: Vec<Score> = Vec::new();
        let mut tally = Tally::default();
        let mut timed: Vec<BatchSample> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| pending.append(data));
            let Some(c) = cap.as_mut() else { return };
            let limit: Option<u64> = frontier.frontier().first().copied();
            let ready: Vec<FeatureRow> = match limit {
                Some(f) if !pending.iter().all(|r| (r.ts as u64) < f) => {
                    let (now, later) = std::mem::take(&mut pending).into_iter().partition(|r| (r.ts as u64) < f);
                    pending = later;
                    now
                }
                _ => std::mem::take(&mut pending),
            };
            let published = limit.map_or(i64::MAX, |f| f as i64);
            let keys: Vec<(&str, i64)> = ready.iter().map(|r| (r.organization_id.as_str(), r.ts)).collect();
            ctx.activations.resolve_rows(worker, published, &keys, &mut versions, Some(&mut thresholds));
            drop(keys);
            // Group by (org, version) so each group is one model's batch; order within
            // a group is the rows' (ts, position) order, so batches are reproducible.
            // Rows are ordered through an index (orgs by rank, versions by pointer
            // first) rather than moved and compared by their strings.
            org_ranks(&ready, &mut org_names, &mut ranks);
            order.clear();
            order.extend(0..ready.len() as u32);
            order.sort_unstable_by(|&a, &b| {
                let (a, b) = (a as usize, b as usize);
                ranks[a]
                    .cmp(&ranks[b])
                    .then_with(|| cmp_version(&versions[a], &versions[b]))
                    .then_with(|| (ready[a].ts, ready[a].pos).cmp(&(ready[b].ts, ready[b].pos)))
            });
            let mut slots: Vec<Option<FeatureRow>> = ready.into_iter().map(Some).collect();
            let mut take = |ix: u32| slots[ix as usize].take().expect("each row is grouped once");
            let mut session = output.session(&*c);
            let mut start = 0;
            while start < order.len() {
                let first_ix = order[start] as usize;
                let mut end = start + 1;
                while end < order.len() {
                    let i = order[end] as usize;
                    if ranks[i] != ranks[first_ix] || cmp_version(&versions[i], &versions[first_ix]).is_ne() {
                        break;
                    }
                    end += 1;
                }
                let group = &order[start..end];
                start = end;
                let org = org_names[ranks[first_ix] as usize].as_str();
                let version = versions[first_ix].clone();
                let settings = orgs.get(org);
                let usable = settings.is_some_and(|s| s.enabled);
                if !breakers.contains_key(org) {
                    breakers.insert(org.to_string(), Breaker::default());
                }
                let breaker = breakers.get_mut(org).expect("inserted");
                let open = !breaker.admit((ctx.clock)());
                let (Some(v), Some(cache), true, false) = (version.clone(), cache.as_ref(), usable, open) else {
                    let health = if open { ModelHealth::Failed } else { ModelHealth::Healthy };
                    let health = if version.is_some() && !open && cache.is_none() { ModelHealth::Failed } else { health };
                    let reason = if !usable {
                        FallbackReason::Disabled
                    } else if open {
                        FallbackReason::BreakerOpen
                    } else if version.is_none() {
                        FallbackReason::NoModel
                    } else {
                        FallbackReason::NoRuntime
                    };
                    tally.add_n(org, "fallback", group.len() as u64);
                    for &ix in group {
                        session.give(fallback(take(ix), settings, version.clone(), health, reason));
                    }
                    continue;
                };
                let settings = settings.expect("usable implies configured");
                let shared = match cache.get(org, v.as_ref(), &settings.feature_names) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(org = %org, version = %v, error = %e, "model unusable; rules only");
                        tally.add_n(org, "fallback", group.len() as u64);
                        for &ix in group {
                            session.give(fallback(
                                take(ix),
                                Some(settings),
                                Some(v.clone()),
                                ModelHealth::Failed,
                                FallbackReason::ModelUnusable,
                            ));
                        }
                        continue;
                    }
                };
                let (loaded_now, classes, importance) = {
                    let mut m = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let classes: Vec<Arc<str>> = m.meta.component_classes().into_iter().map(Arc::from).collect();
                    (m.take_fresh_load_ms(), classes, m.importance.clone())
                };
                let mut first = true;
                for chunk in group.chunks(ctx.max_batch_rows.max(1)) {
                    let batch: Vec<FeatureRow> = chunk.iter().map(|&ix| take(ix)).collect();
                    // A probe that failed earlier in this group re-opened the breaker.
                    if !breaker.admit((ctx.clock)()) {
                        tally.add_n(org, "fallback", batch.len() as u64);
                        for row in batch {
                            session.give(fallback(
                                row,
                                Some(settings),
                                Some(v.clone()),
                                ModelHealth::Failed,
                                FallbackReason::BreakerOpen,
                            ));
                        }
                        continue;
                    }
                    let gate_health = if breaker.errors() > 0 { ModelHealth::Degraded } else { ModelHealth::Healthy };
                    let batch_confs: Vec<Option<f64>> = chunk
                        .iter()
                        .map(|&ix| thresholds[ix as usize].as_ref().map(|t| t.confidence_threshold))
                        .collect();
                    let refs: Vec<&[f64]> = batch.iter().map(|r| r.features.as_slice()).collect();
                    let t0 = Instant::now();
                    let result = shared
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .score(&refs, &mut scores, Some(settings.timeout));
                    match result {
                        Ok(()) => {
                            breaker.success();
                            let seconds = t0.elapsed().as_secs_f64();
                            timed.push(BatchSample { stage: Stage::Inference, org: Some(org.to_string()), rows: batch.len(), seconds });
                            let per_row = seconds * 1000.0 / batch.len() as f64;
                            tally.add_n(org, "scored", batch.len() as u64);
                            for ((row, s), conf) in batch.into_iter().zip(scores.iter()).zip(batch_confs) {
                                let threshold = conf.unwrap_or(settings.confidence_threshold);
                                let (component, confidence) = match s.component {
                                    Some((k, q)) if q >= threshold => {
                                        (
                                            classes
                                                .get(k)
                                                .cloned()
                                                .unwrap_or_else(|| settings.general_component.clone()),
                                            q,
                                        )
                                    }
                                    Some((_, q)) => (settings.general_component.clone(), q),
                                    None => (settings.general_component.clone(), 0.0),
                                };
                                session.give(ScoredRow {
                                    row,
                                    probability: s.probability,
                                    confidence,
                                    component,
                                    time_to_failure: s.ttf_minutes.unwrap_or(settings.time_to_failure_minutes),
                                    model_version: Some(v.clone()),
                                    health: gate_health,
                                    fallback: false,
                                    fallback_reason: None,
                                    processing_ms: per_row,
                                    load_ms: if first { loaded_now } else { 0.0 },
                                    importance: Some(importance.clone()),
                                });
                                first = false;
                            }
                        }
                        Err(e) => {
                            let opened = breaker.failure((ctx.clock)());
                            tracing::warn!(org = %org, version = %v, error = %e, errors = breaker.errors(), "inference failed; rules only for this batch");
                            if opened {
                                tracing::error!(org = %org, "circuit breaker open for {:?}: repeated inference errors", BREAKER_OPEN);
                            }
                            let reason = if matches!(e, crate::models::ModelError::Timeout { .. }) {
                                FallbackReason::Timeout
                            } else {
                                FallbackReason::InferenceError
                            };
                            tally.add_n(org, "fallback", batch.len() as u64);
                            for row in batch {
                                session.give(fallback(row, Some(settings), Some(v.clone()), ModelHealth::Degraded, reason));
                            }
                        }
                    }
                }
            }
            drop(session);
            let now = (ctx.clock)();
            ctx.stats.set_breakers(worker, breakers.iter().map(|(o, b)| (o.as_str(), b.state(now))));
            tally.flush(&ctx.stats);
            ctx.stats.add_batches(&mut timed);
            // One cache per process, so one entry: whichever worker ran last.
            if let Some(cache) = cache.as_ref() {
                ctx.cache_stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(0, cache.stats());
            }
            match limit {
                Some(f) if f > *c.time() => c.downgrade(&f),
                Some(_) => {}
                None => cap = None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SourcePosition;

    fn row(org: &str) -> FeatureRow {
        FeatureRow {
            organization_id: org.into(),
            machine_id: "m".into(),
            ts: 0,
            pos: SourcePosition {
                partition: 0,
                offset: 0,
            },
            features: Vec::new(),
            values: Vec::new(),
        }
    }

    #[test]
    fn org_ranks_sort_as_names_and_learn_new_orgs() {
        let mut names = vec!["b".to_string(), "d".to_string()];
        let rows: Vec<FeatureRow> = ["d", "d", "c", "b", "a", "d"]
            .into_iter()
            .map(row)
            .collect();
        let mut ranks = Vec::new();
        org_ranks(&rows, &mut names, &mut ranks);
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(ranks, [3, 3, 2, 1, 0, 3]);
        // Ranks order rows exactly as their names do.
        for (x, y) in rows.iter().zip(&ranks) {
            for (p, q) in rows.iter().zip(&ranks) {
                assert_eq!(y.cmp(q), x.organization_id.cmp(&p.organization_id));
            }
        }
        org_ranks(&[], &mut names, &mut ranks);
        assert!(ranks.is_empty());
    }

    #[test]
    fn breaker_opens_after_consecutive_errors_only() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert_eq!(b.state(t0), BreakerState::Closed);
        for _ in 1..BREAKER_ERRORS {
            assert!(b.admit(t0));
            assert!(
                !b.failure(t0),
                "fewer than BREAKER_ERRORS errors keep it closed"
            );
        }
        // A success in between resets the count.
        b.success();
        for _ in 1..BREAKER_ERRORS {
            assert!(!b.failure(t0));
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert!(
            b.failure(t0),
            "the BREAKER_ERRORS-th consecutive error opens it"
        );
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn open_breaker_admits_nothing_until_its_period_ends() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..BREAKER_ERRORS {
            b.failure(t0);
        }
        let almost = t0 + BREAKER_OPEN - Duration::from_millis(1);
        assert!(!b.admit(t0));
        assert!(!b.admit(almost), "rules only while open");
        assert_eq!(b.state(almost), BreakerState::Open);
        assert_eq!(b.state(t0 + BREAKER_OPEN), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_probe_success_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..BREAKER_ERRORS {
            b.failure(t0);
        }
        let later = t0 + BREAKER_OPEN;
        assert!(b.admit(later), "the probe runs");
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.success();
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.errors(), 0);
        // Closed again: it takes BREAKER_ERRORS errors to re-open.
        assert!(!b.failure(later));
    }

    #[test]
    fn half_open_probe_failure_reopens_for_a_full_period() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..BREAKER_ERRORS {
            b.failure(t0);
        }
        let later = t0 + BREAKER_OPEN + Duration::from_secs(5);
        assert!(b.admit(later));
        assert!(b.failure(later), "one failed probe re-opens it");
        assert_eq!(b.state(later), BreakerState::Open);
        assert!(!b.admit(later + BREAKER_OPEN - Duration::from_millis(1)));
        assert_eq!(b.state(later + BREAKER_OPEN), BreakerState::HalfOpen);
    }

    #[test]
    fn fallback_reasons_are_named_as_serialized() {
        for r in FallbackReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            let back: FallbackReason = serde_json::from_value(r.as_str().into()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn versions_compare_by_name_none_first() {
        use std::cmp::Ordering::*;
        let v1: Arc<str> = Arc::from("v1");
        let v1b: Arc<str> = Arc::from("v1");
        let v2: Arc<str> = Arc::from("v2");
        assert_eq!(cmp_version(&Some(v1.clone()), &Some(v1.clone())), Equal);
        assert_eq!(cmp_version(&Some(v1.clone()), &Some(v1b)), Equal);
        assert_eq!(cmp_version(&Some(v1.clone()), &Some(v2.clone())), Less);
        assert_eq!(cmp_version(&Some(v2), &Some(v1.clone())), Greater);
        assert_eq!(cmp_version(&None, &Some(v1.clone())), Less);
        assert_eq!(cmp_version(&Some(v1), &None), Greater);
        assert_eq!(cmp_version(&None, &None), Equal);
    }
}
