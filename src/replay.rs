//! Replays: history files through the same dataflow as live scoring (schema
//! map, features, inference with an activation log, rules, dedup), alert records
//! collected — what `prognos replay` prints figures of, and what training sweeps
//! a candidate's operating points with.
//!
//! Replays are reproducible: alerts carry their event time as `createdAt`, open
//! keys resolve at the end of the input, and the records are sorted by `(ts, id,
//! suppressedCount)`, so the same input gives the same records for any worker
//! count.
//!
//! One replay can alert several ways at once ([`replay_variants`]): the rows are
//! read, mapped, featured and scored once, and each variant's alert operator
//! (its own thresholds or rules) gets every scored row.

use crate::backtest::{OrgWindows, Span};
use crate::onnx_runtime;
use crate::training::registry::Registry;
use anyhow::Context;
use prognos_connectors::file::{FileSource, assign, file_inputs};
use prognos_dataflows::alerts::{AlertSettings, Mode};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::CacheLimits;
use prognos_dataflows::operators::alerts::alerts;
use prognos_dataflows::operators::inference::{InferenceContext, ScoredRow};
use prognos_dataflows::pipeline::scoring_pipeline;
use prognos_dataflows::records::{Alert, DeadLetter, FailureEvent};
use prognos_dataflows::stats::Stats;
use prognos_dataflows::util::MachineIndex;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Filter;

/// The result of one replay.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every alert record, sorted by `(ts, id, suppressedCount)`.
    pub alerts: Vec<Alert>,
    /// Per machine: the replayed span.
    pub spans: BTreeMap<(String, String), Span>,
    /// Row counters (org, outcome).
    pub stats: BTreeMap<(String, String), u64>,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Collected {
    alerts: Vec<Vec<Alert>>,
    spans: BTreeMap<(String, String), (i64, i64, u64)>,
    dead: BTreeMap<String, u64>,
}

/// One worker's machine spans: (first ts, last ts, rows) per machine, found
/// without allocating per row.
#[derive(Default)]
struct LocalSpans {
    index: MachineIndex,
    spans: Vec<(i64, i64, u64)>,
}

impl LocalSpans {
    fn add(&mut self, org: &str, machine: &str, ts: i64) {
        let (i, new) = self.index.get_or_insert(org, machine);
        if new {
            self.spans.push((ts, ts, 0));
        }
        let e = &mut self.spans[i];
        e.0 = e.0.min(ts);
        e.1 = e.1.max(ts);
        e.2 += 1;
    }

    fn into_spans(self) -> impl Iterator<Item = ((String, String), (i64, i64, u64))> {
        let index = self.index;
        self.spans.into_iter().enumerate().map(move |(i, v)| {
            let (o, m) = index.key(i).expect("one span per index");
            ((o.to_string(), m.to_string()), v)
        })
    }
}

/// Replay `inputs` through the alert pipeline; `ctx` None = rules only. With a
/// context, threshold changes in its activation log apply as they did live.
pub fn replay(
    config: &Config,
    inputs: &[PathBuf],
    org: Option<&str>,
    ctx: Option<InferenceContext>,
    workers: usize,
) -> anyhow::Result<Replayed> {
    let mut settings = AlertSettings::from_config(config, Mode::Replay)?;
    match &ctx {
        Some(c) => settings.thresholds = c.activations.threshold_snapshot(),
        None => settings = settings.without_predictions(),
    }
    let mut r = replay_variants(config, inputs, org, ctx, workers, vec![settings], None)?;
    Ok(Replayed {
        alerts: r.alerts.pop().unwrap_or_default(),
        spans: r.spans,
        stats: r.stats,
        dead_letters: r.dead_letters,
    })
}

/// The result of one replay alerting several ways.
#[derive(Debug, Default)]
pub struct ReplayedVariants {
    /// Per variant, in the order given: every alert record, sorted by `(ts, id,
    /// suppressedCount)`.
    pub alerts: Vec<Vec<Alert>>,
    /// Per machine: the replayed span.
    pub spans: BTreeMap<(String, String), Span>,
    /// Row counters (org, outcome).
    pub stats: BTreeMap<(String, String), u64>,
    /// Dead letters by reason.
    pub dead_letters: BTreeMap<String, u64>,
}

/// Replay `inputs` once (read, mapped, featured and scored once; `ctx` None:
/// nothing scores the rows) and alert on the scored rows once per `variants`
/// entry, each with its own settings. With `range = (from, to)` only the rows
/// with `from <= ts < to` are alerted on and make the spans (the rows before
/// still warm the features up).
pub fn replay_variants(
    config: &Config,
    inputs: &[PathBuf],
    org: Option<&str>,
    ctx: Option<InferenceContext>,
    workers: usize,
    variants: Vec<AlertSettings>,
    range: Option<(i64, i64)>,
) -> anyhow::Result<ReplayedVariants> {
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(
        !variants.is_empty(),
        "a replay needs at least one way to alert"
    );
    let inputs = file_inputs(inputs, org)?;
    let stats = Arc::new(Stats::default());
    let ctx = ctx.unwrap_or_else(|| InferenceContext {
        env: None,
        source: None,
        root: Arc::new(PathBuf::new()),
        limits: CacheLimits::from_config(&config.runtime),
        shared_cache: Default::default(),
        activations: Arc::new(Activations::default()),
        orgs: InferenceContext::orgs_from(config),
        max_batch_rows: config.runtime.max_batch_rows,
        stats: stats.clone(),
        cache_stats: Arc::default(),
        clock: prognos_dataflows::operators::inference::system_clock(),
    });
    let n = variants.len();
    let collected = Arc::new(Mutex::new(Collected {
        alerts: vec![Vec::new(); n],
        ..Collected::default()
    }));
    let (cfg, stats2, sink) = (config.clone(), stats.clone(), collected.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let mine = assign(&inputs, worker.index(), worker.peers());
        let (cfg, stats, ctx, variants) =
            (cfg.clone(), stats2.clone(), ctx.clone(), variants.clone());
        let (s2, s3) = (sink.clone(), sink.clone());
        let sink = sink.clone();
        worker.dataflow::<u64, _, _>(move |scope| {
            let (scored, dead) = scoring_pipeline(
                scope,
                &cfg,
                Box::new(FileSource::new(mine)),
                stats.clone(),
                ctx,
            );
            let (from, to) = range.unwrap_or((i64::MIN, i64::MAX));
            let scored = scored.filter(move |r| (from..to).contains(&r.row.ts));
            // Machine spans, seen as the scored rows pass on to the alerts;
            // handed over once, when the input is done.
            let scored = scored.unary_frontier(Pipeline, "Spans", move |_cap, _info| {
                let mut local = LocalSpans::default();
                move |(input, frontier), output| {
                    input.for_each(|cap, data: &mut Vec<ScoredRow>| {
                        for r in data.iter() {
                            local.add(&r.row.organization_id, &r.row.machine_id, r.row.ts);
                        }
                        output.session(&cap).give_container(data);
                    });
                    if frontier.is_empty() && !local.spans.is_empty() {
                        let mut c = s3.lock().unwrap_or_else(|e| e.into_inner());
                        for (k, v) in std::mem::take(&mut local).into_spans() {
                            let e = c.spans.entry(k).or_insert(v);
                            *e = (e.0.min(v.0), e.1.max(v.1), e.2.max(v.2));
                        }
                    }
                }
            });
            // Each variant's alert operator gets its own copy of every scored row.
            for (i, settings) in variants.into_iter().enumerate() {
                let s1 = sink.clone();
                alerts(scored.clone(), "Alerts", settings, stats.clone()).sink(
                    Pipeline,
                    "CollectAlerts",
                    move |(input, _)| {
                        input.for_each(|_, data| {
                            s1.lock().unwrap_or_else(|e| e.into_inner()).alerts[i].append(data);
                        });
                    },
                );
            }
            dead.sink(Pipeline, "CountDeadLetters", move |(input, _)| {
                input.for_each(|_, data: &mut Vec<DeadLetter>| {
                    let mut c = s2.lock().unwrap_or_else(|e| e.into_inner());
                    for d in data.drain(..) {
                        *c.dead.entry(d.reason.as_str().to_string()).or_default() += 1;
                    }
                });
            });
        });
    })
    .map_err(|e| anyhow::anyhow!("cannot start timely workers: {e}"))?;
    let bar = indicatif::ProgressBar::new_spinner();
    let started = Instant::now();
    crate::service::join_workers(guards, Duration::from_millis(200), || {
        let n: u64 = stats
            .snapshot()
            .iter()
            .filter(|((_, o), _)| o == "scored" || o == "fallback")
            .map(|(_, v)| v)
            .sum();
        let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{n} rows replayed ({rate:.0} rows/s)"));
        bar.tick();
    })?;
    bar.finish_and_clear();
    let c = std::mem::take(&mut *collected.lock().unwrap_or_else(|e| e.into_inner()));
    let mut alerts = c.alerts;
    for a in &mut alerts {
        a.sort_by(|a, b| (a.ts, &a.id, a.suppressed_count).cmp(&(b.ts, &b.id, b.suppressed_count)));
    }
    let spans = c
        .spans
        .into_iter()
        .map(|(k, (first, last, n))| {
            let step = if n > 1 {
                (last - first) / (n as i64 - 1)
            } else {
                0
            };
            (k, Span { first, last, step })
        })
        .collect();
    Ok(ReplayedVariants {
        alerts,
        spans,
        stats: stats.snapshot(),
        dead_letters: c.dead,
    })
}

/// The inference context of a replay: ONNX Runtime and the registry's models.
pub fn inference_context(config: &Config, data_dir: &Path) -> anyhow::Result<InferenceContext> {
    let store = data_dir.join("store");
    let registry = Registry::open(&store).with_context(|| {
        format!(
            "cannot open the model registry in {} (is `prognos run` using this data dir? stop it or pass another --data-dir)",
            store.display()
        )
    })?;
    for org in config.orgs.keys() {
        match registry.active(org)? {
            Some(v) => tracing::info!(org = %org, version = %v, "replaying with the active model"),
            None => tracing::warn!(org = %org, "no model: rules only for this org"),
        }
    }
    let activations = Arc::new(registry.live_log()?);
    let ort = onnx_runtime::init()?;
    Ok(InferenceContext {
        env: Some(ort.environment),
        source: None,
        root: Arc::new(data_dir.join("models")),
        limits: CacheLimits::from_config(&config.runtime),
        shared_cache: Default::default(),
        activations,
        orgs: InferenceContext::orgs_from(config),
        max_batch_rows: config.runtime.max_batch_rows,
        stats: Arc::new(Stats::default()),
        cache_stats: Arc::default(),
        clock: prognos_dataflows::operators::inference::system_clock(),
    })
}

/// Read failure events (JSONL), refusing a bad line with its number.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<FailureEvent>> {
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot open --events {}", path.display()))?;
    let mut v = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        v.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a failure event", path.display(), i + 1))?,
        );
    }
    Ok(v)
}

/// The definitions' settings per org.
pub fn windows(config: &Config) -> BTreeMap<String, OrgWindows> {
    config
        .orgs
        .iter()
        .map(|(id, o)| {
            (
                id.clone(),
                OrgWindows {
                    horizon_ms: i64::from(o.prediction.horizon_minutes) * 60_000,
                    episode_gap_ms: i64::try_from(
                        config.alerts.resolve_after_s.saturating_mul(1000),
                    )
                    .unwrap_or(i64::MAX),
                },
            )
        })
        .collect()
}
