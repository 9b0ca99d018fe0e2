//! Inference: feature rows in, scored rows out. Rows wait until the input frontier
//! passes their ts; then, per org and model version (the version active at each
//! row's own ts, see [`Activations`]), they are scored in `ort` runs of at most
//! `max_batch_rows` rows. The component and time-to-failure models run only on
//! rows at or above the stage-2 gate.
//!
//! No active version, a version that fails its load-time check, or an org whose
//! circuit breaker is open (after repeated inference errors; wall clock, like
//! idleness) gives a fallback row: no probability, `fallback = true`, rules only.
//! Rows stay on the worker that computed their features (no exchange).

use crate::config::Config;
use crate::models::activations::{Activations, Thresholds};
use crate::models::cache::{CacheLimits, CacheStats, ModelCache, ModelRoot};
use crate::models::runner::Score;
use crate::records::{FeatureMap, FeatureRow, ModelHealth, Prediction, PredictionMetadata};
use crate::stats::{BatchSample, Stage, Stats, Tally};
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
}

/// Everything the inference operator needs, cloned into each worker.
#[derive(Clone)]
pub struct InferenceContext {
    /// ONNX Runtime; `None` runs every org on the fallback.
    pub env: Option<Environment>,
    /// `<root>/<org>/<version>/` holds the versions.
    pub root: ModelRoot,
    /// Cache limits per worker.
    pub limits: CacheLimits,
    /// The activation log.
    pub activations: Arc<Activations>,
    /// Per-org settings.
    pub orgs: Arc<HashMap<String, OrgScoring>>,
    /// Largest batch per `ort` run.
    pub max_batch_rows: usize,
    /// Row counters.
    pub stats: Arc<Stats>,
    /// Cache counters per worker, for metrics.
    pub cache_stats: Arc<Mutex<BTreeMap<usize, CacheStats>>>,
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
                        },
                    )
                })
                .collect(),
        )
    }
}

#[derive(Default)]
struct Breaker {
    errors: u32,
    open_until: Option<Instant>,
}

fn fallback(
    row: FeatureRow,
    org: Option<&OrgScoring>,
    version: Option<Arc<str>>,
    health: ModelHealth,
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
        processing_ms: 0.0,
        load_ms: 0.0,
        importance: None,
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
        let mut cache = ctx
            .env
            .clone()
            .map(|env| ModelCache::new(env, ctx.root.clone(), ctx.limits));
        // Preload every org's currently active version, so the first batch does not
        // wait (a failure here is logged and the version is remembered as unusable).
        if let Some(cache) = cache.as_mut() {
            let mut orgs: Vec<&String> = ctx.orgs.keys().collect();
            orgs.sort();
            for org in orgs {
                let s = &ctx.orgs[org];
                if let (true, Some(v)) = (s.enabled, ctx.activations.version_at(org, i64::MAX)) {
                    match cache.get(org, &v, &s.feature_names) {
                        Ok(m) => tracing::debug!(org = %org, version = %v, load_ms = m.load_ms, "model preloaded"),
                        Err(e) => tracing::warn!(org = %org, version = %v, error = %e, "active model unusable; rules only"),
                    }
                }
            }
        }
        let mut breakers: HashMap<String, Breaker> = HashMap::new();
        let mut versions: Vec<Option<Arc<str>>> = Vec::new();
        let mut thresholds: Vec<Option<Thresholds>> = Vec::new();
        let mut scores: Vec<Score> = Vec::new();
        let mut tally = Tally::default();
        let mut timed: Vec<BatchSample> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| pending.append(data));
            let Some(c) = cap.as_mut() else { return };
            let limit: Option<u64> = frontier.frontier().first().copied();
            let mut ready: Vec<FeatureRow> = match limit {
                None => std::mem::take(&mut pending),
                Some(f) => {
                    let (now, later) = std::mem::take(&mut pending).into_iter().partition(|r| (r.ts as u64) < f);
                    pending = later;
                    now
                }
            };
            let published = limit.map_or(i64::MAX, |f| f as i64);
            let keys: Vec<(&str, i64)> = ready.iter().map(|r| (r.organization_id.as_str(), r.ts)).collect();
            ctx.activations.resolve_rows(worker, published, &keys, &mut versions, Some(&mut thresholds));
            drop(keys);
            // Group by (org, version) so each group is one model's batch; order within
            // a group is the rows' (ts, position) order, so batches are reproducible.
            // Each row carries the confidence threshold changed at or before its ts
            // (None: the configured one).
            let mut items: Vec<(FeatureRow, Option<Arc<str>>, Option<f64>)> = ready
                .drain(..)
                .zip(versions.drain(..))
                .zip(thresholds.drain(..))
                .map(|((r, v), t)| (r, v, t.map(|t| t.confidence_threshold)))
                .collect();
            items.sort_by(|(a, va, _), (b, vb, _)| {
                (a.organization_id.as_str(), va.as_deref(), a.ts, a.pos).cmp(&(
                    b.organization_id.as_str(),
                    vb.as_deref(),
                    b.ts,
                    b.pos,
                ))
            });
            let mut session = output.session(&*c);
            let mut items = items.into_iter().peekable();
            while let Some((first, version, conf)) = items.next() {
                let org = first.organization_id.clone();
                let mut group = vec![first];
                let mut confs = vec![conf];
                while let Some((next, v, _)) = items.peek() {
                    if next.organization_id != org || v.as_deref() != version.as_deref() {
                        break;
                    }
                    let (row, _, conf) = items.next().expect("peeked");
                    group.push(row);
                    confs.push(conf);
                }
                let settings = ctx.orgs.get(&org);
                let usable = settings.is_some_and(|s| s.enabled);
                let breaker = breakers.entry(org.clone()).or_default();
                let open = breaker.open_until.is_some_and(|t| Instant::now() < t);
                let (Some(v), Some(cache), true, false) = (version.clone(), cache.as_mut(), usable, open) else {
                    let health = if open { ModelHealth::Failed } else { ModelHealth::Healthy };
                    let health = if version.is_some() && !open && cache.is_none() { ModelHealth::Failed } else { health };
                    for row in group {
                        tally.add(&org, "fallback");
                        session.give(fallback(row, settings, version.clone(), health));
                    }
                    continue;
                };
                let settings = settings.expect("usable implies configured");
                let model = match cache.get(&org, v.as_ref(), &settings.feature_names) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(org = %org, version = %v, error = %e, "model unusable; rules only");
                        for row in group {
                            tally.add(&org, "fallback");
                            session.give(fallback(row, Some(settings), Some(v.clone()), ModelHealth::Failed));
                        }
                        continue;
                    }
                };
                let loaded_now = model.take_fresh_load_ms();
                let classes: Vec<Arc<str>> = model.meta.component_classes().into_iter().map(Arc::from).collect();
                let importance = model.importance.clone();
                let gate_health = if breaker.errors > 0 { ModelHealth::Degraded } else { ModelHealth::Healthy };
                let mut first = true;
                let mut rest = group;
                while !rest.is_empty() {
                    let take = rest.len().min(ctx.max_batch_rows.max(1));
                    let batch: Vec<FeatureRow> = rest.drain(..take).collect();
                    let batch_confs: Vec<Option<f64>> = confs.drain(..take).collect();
                    let refs: Vec<&[f64]> = batch.iter().map(|r| r.features.as_slice()).collect();
                    let t0 = Instant::now();
                    match model.score(&refs, &mut scores) {
                        Ok(()) => {
                            breaker.errors = 0;
                            let seconds = t0.elapsed().as_secs_f64();
                            timed.push(BatchSample { stage: Stage::Inference, org: Some(org.clone()), rows: batch.len(), seconds });
                            let per_row = seconds * 1000.0 / batch.len() as f64;
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
                                tally.add(&org, "scored");
                                session.give(ScoredRow {
                                    row,
                                    probability: s.probability,
                                    confidence,
                                    component,
                                    time_to_failure: s.ttf_minutes.unwrap_or(settings.time_to_failure_minutes),
                                    model_version: Some(v.clone()),
                                    health: gate_health,
                                    fallback: false,
                                    processing_ms: per_row,
                                    load_ms: if first { loaded_now } else { 0.0 },
                                    importance: Some(importance.clone()),
                                });
                                first = false;
                            }
                        }
                        Err(e) => {
                            breaker.errors += 1;
                            tracing::warn!(org = %org, version = %v, error = %e, errors = breaker.errors, "inference failed; rules only for this batch");
                            if breaker.errors >= BREAKER_ERRORS {
                                breaker.open_until = Some(Instant::now() + BREAKER_OPEN);
                                tracing::error!(org = %org, "circuit breaker open for {:?}: repeated inference errors", BREAKER_OPEN);
                            }
                            for row in batch {
                                tally.add(&org, "fallback");
                                session.give(fallback(row, Some(settings), Some(v.clone()), ModelHealth::Degraded));
                            }
                        }
                    }
                }
            }
            drop(session);
            tally.flush(&ctx.stats);
            ctx.stats.add_batches(&mut timed);
            if let Some(cache) = cache.as_ref() {
                ctx.cache_stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(worker, cache.stats());
            }
            match limit {
                Some(f) if f > *c.time() => c.downgrade(&f),
                Some(_) => {}
                None => cap = None,
            }
        }
    })
}
