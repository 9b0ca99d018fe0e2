//! Dataflow fragments assembled from the operators: plain functions from a source
//! to output streams, so the same code serves live scoring, `prognos features`
//! and tests.

use crate::alerts::AlertSettings;
use crate::config::Config;
use crate::features::FeatureSpec;
use crate::operators::alerts::alerts;
use crate::operators::features::features;
use crate::operators::inference::{InferenceContext, ScoredRow, inference};
use crate::operators::ingest::{ingest, split_ingested};
use crate::operators::schema_map::SchemaMapper;
use crate::records::{Alert, CanonicalRow, DeadLetter, FeatureRow};
use crate::source::Source;
use crate::stats::Stats;
use std::collections::HashMap;
use std::sync::Arc;
use timely::dataflow::{Scope, Stream};

/// Compiled feature specs of every enabled org.
pub fn feature_specs(config: &Config) -> Arc<HashMap<String, Arc<FeatureSpec>>> {
    Arc::new(
        config
            .orgs
            .iter()
            .filter(|(_, o)| o.enabled)
            .map(|(id, o)| {
                (
                    id.clone(),
                    Arc::new(FeatureSpec::from_org(o, config.runtime.lag_tolerance_ms)),
                )
            })
            .collect(),
    )
}

/// Source → schema map + event time → features. Returns the feature rows (at
/// timely time = event time) and the dead letters.
pub fn feature_pipeline<'s>(
    scope: Scope<'s, u64>,
    config: &Config,
    source: Box<dyn Source>,
    stats: Arc<Stats>,
) -> (
    Stream<'s, u64, Vec<FeatureRow>>,
    Stream<'s, u64, Vec<DeadLetter>>,
) {
    let (_, feats, dead) = mapped_feature_pipeline(scope, config, source, stats);
    (feats, dead)
}

/// [`feature_pipeline`], also returning the mapped rows that reach the features
/// operator (admitted, before duplicates are dropped): what the history keeps.
#[allow(clippy::type_complexity)]
pub fn mapped_feature_pipeline<'s>(
    scope: Scope<'s, u64>,
    config: &Config,
    source: Box<dyn Source>,
    stats: Arc<Stats>,
) -> (
    Stream<'s, u64, Vec<CanonicalRow>>,
    Stream<'s, u64, Vec<FeatureRow>>,
    Stream<'s, u64, Vec<DeadLetter>>,
) {
    let ingested = ingest(
        scope,
        "Ingest",
        source,
        SchemaMapper::new(config),
        &config.runtime,
        stats.clone(),
    );
    let (rows, dead) = split_ingested(ingested);
    let feats = features(rows.clone(), "Features", feature_specs(config), stats);
    (rows, feats, dead)
}

/// Source → features → inference. Returns the scored rows and the dead letters.
pub fn scoring_pipeline<'s>(
    scope: Scope<'s, u64>,
    config: &Config,
    source: Box<dyn Source>,
    stats: Arc<Stats>,
    ctx: InferenceContext,
) -> (
    Stream<'s, u64, Vec<ScoredRow>>,
    Stream<'s, u64, Vec<DeadLetter>>,
) {
    let (_, scored, dead) = mapped_scoring_pipeline(scope, config, source, stats, ctx);
    (scored, dead)
}

/// [`scoring_pipeline`], also returning the mapped rows.
#[allow(clippy::type_complexity)]
fn mapped_scoring_pipeline<'s>(
    scope: Scope<'s, u64>,
    config: &Config,
    source: Box<dyn Source>,
    stats: Arc<Stats>,
    ctx: InferenceContext,
) -> (
    Stream<'s, u64, Vec<CanonicalRow>>,
    Stream<'s, u64, Vec<ScoredRow>>,
    Stream<'s, u64, Vec<DeadLetter>>,
) {
    let (rows, feats, dead) = mapped_feature_pipeline(scope, config, source, stats);
    (rows, inference(feats, "Inference", ctx), dead)
}

/// The streams of the whole pipeline.
pub struct Outputs<'s> {
    /// Every row with its score (predictions).
    pub scored: Stream<'s, u64, Vec<ScoredRow>>,
    /// Notifications, closing re-emissions and resolutions.
    pub alerts: Stream<'s, u64, Vec<Alert>>,
    /// Rows that could not be used, with the reason.
    pub dead: Stream<'s, u64, Vec<DeadLetter>>,
    /// Every mapped, on-time row (what the history keeps), at a time at or
    /// below its ts.
    pub mapped: Stream<'s, u64, Vec<CanonicalRow>>,
}

/// Source → features → inference → rules + predictive → dedup.
pub fn alert_pipeline<'s>(
    scope: Scope<'s, u64>,
    config: &Config,
    source: Box<dyn Source>,
    stats: Arc<Stats>,
    ctx: InferenceContext,
    settings: AlertSettings,
) -> Outputs<'s> {
    let (mapped, scored, dead) = mapped_scoring_pipeline(scope, config, source, stats.clone(), ctx);
    let alerts = alerts(scored.clone(), "Alerts", settings, stats);
    Outputs {
        scored,
        alerts,
        dead,
        mapped,
    }
}
