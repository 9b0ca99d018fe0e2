//! `prognos replay`: run history files through the same dataflow as live scoring
//! (schema map, features, inference with the registry's activation log, rules,
//! dedup) and print the backtest figures per org and component against the
//! known failures — the check an admin runs before trusting a model.
//!
//! Replays are reproducible: alerts carry their event time as `createdAt`, open
//! keys resolve at the end of the input, and `--alerts-out` is sorted by
//! `(ts, id, suppressedCount)`, so the same input gives the same bytes for any
//! worker count.

use crate::backtest::{self, OrgFigures, OrgWindows, Span};
use crate::cli::{ConfigArg, DataDirArg};
use crate::training::registry::Registry;
use crate::{onnx_runtime, settings};
use anyhow::Context;
use clap::Args;
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
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// Arguments of `prognos replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Configuration (schemas, features, rules, thresholds).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the model registry lives (its activation log decides which version
    /// scores each row).
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// History files (JSONL or CSV), one partition each, read in order.
    #[arg(long, required = true, num_args = 1.., value_name = "FILES")]
    pub input: Vec<PathBuf>,
    /// Organization of every input; by default each file's stem (`acme-heat.jsonl`).
    #[arg(long)]
    pub org: Option<String>,
    /// Known failures (JSONL of {organizationId, machineId, component, start, end},
    /// as `prognos simulate` writes them); without it only alert counts are printed.
    #[arg(long, value_name = "EVENTS")]
    pub events: Option<PathBuf>,
    /// Write every alert record (notifications, re-emissions, resolutions) here as JSONL.
    #[arg(long, value_name = "FILE")]
    pub alerts_out: Option<PathBuf>,
    /// Judge the rules alone (no model scores any row).
    #[arg(long, conflicts_with_all = ["compare_rules_only", "breakdown"])]
    pub rules_only: bool,
    /// Also replay with rules only and print both, to see what the models add.
    #[arg(long, conflicts_with = "breakdown")]
    pub compare_rules_only: bool,
    /// Replay five ways and print each, to see what every part contributes:
    /// hybrid (everything), rules+forecast (no model), rules (level rules only),
    /// forecast (forecast rules only), ml (the model only).
    #[arg(long)]
    pub breakdown: bool,
    /// Print the figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timely worker threads.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
}

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
    alerts: Vec<Alert>,
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

/// Replay `inputs` through the alert pipeline; `ctx` None = rules only.
pub fn replay(
    config: &Config,
    inputs: &[PathBuf],
    org: Option<&str>,
    ctx: Option<InferenceContext>,
    workers: usize,
) -> anyhow::Result<Replayed> {
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    let inputs = file_inputs(inputs, org)?;
    let mut settings = AlertSettings::from_config(config, Mode::Replay)?;
    let stats = Arc::new(Stats::default());
    let ctx = match ctx {
        Some(c) => c,
        None => {
            settings = settings.without_predictions();
            InferenceContext {
                env: None,
                source: None,
                root: Arc::new(PathBuf::new()),
                limits: CacheLimits::default(),
                activations: Arc::new(Activations::default()),
                orgs: InferenceContext::orgs_from(config),
                max_batch_rows: config.runtime.max_batch_rows,
                stats: stats.clone(),
                cache_stats: Arc::default(),
                clock: prognos_dataflows::operators::inference::system_clock(),
            }
        }
    };
    let collected = Arc::new(Mutex::new(Collected::default()));
    let (cfg, stats2, sink) = (config.clone(), stats.clone(), collected.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let mine = assign(&inputs, worker.index(), worker.peers());
        let (cfg, stats, ctx, settings) =
            (cfg.clone(), stats2.clone(), ctx.clone(), settings.clone());
        let (s1, s2, s3) = (sink.clone(), sink.clone(), sink.clone());
        worker.dataflow::<u64, _, _>(move |scope| {
            let (scored, dead) = scoring_pipeline(
                scope,
                &cfg,
                Box::new(FileSource::new(mine)),
                stats.clone(),
                ctx,
            );
            // Machine spans, seen as the scored rows pass on to the alerts (one
            // consumer per stream: a second one would get a copy of every row);
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
            alerts(scored, "Alerts", settings, stats).sink(
                Pipeline,
                "CollectAlerts",
                move |(input, _)| {
                    input.for_each(|_, data| {
                        s1.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .alerts
                            .append(data);
                    });
                },
            );
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
    alerts
        .sort_by(|a, b| (a.ts, &a.id, a.suppressed_count).cmp(&(b.ts, &b.id, b.suppressed_count)));
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
    Ok(Replayed {
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
        limits: CacheLimits::default(),
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    configuration: &'static str,
    orgs: BTreeMap<String, OrgFigures>,
    dead_letters: BTreeMap<String, u64>,
    alert_records: usize,
}

/// Run the command.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let config = settings::load(args.config.config.as_deref())?.config;
    let events = match &args.events {
        Some(p) => Some(read_events(p)?),
        None => None,
    };
    // (name, configuration, whether the registry's models score the rows)
    let mut runs: Vec<(&'static str, Config, bool)> = Vec::new();
    if args.breakdown {
        runs.push(("hybrid", config.clone(), true));
        runs.push(("rules+forecast", config.clone(), false));
        runs.push(("rules", keep_rules(&config, |r| !is_forecast(r)), false));
        runs.push(("forecast", keep_rules(&config, is_forecast), false));
        runs.push(("ml", keep_rules(&config, |_| false), true));
    } else {
        if !args.rules_only {
            runs.push(("hybrid", config.clone(), true));
        }
        if args.rules_only || args.compare_rules_only {
            runs.push(("rules-only", config.clone(), false));
        }
    }
    let mut reports = Vec::new();
    for (i, (name, config, scored)) in runs.into_iter().enumerate() {
        let t0 = Instant::now();
        // Opened per replay (it holds the registry's store) and closed after it.
        let ctx = match scored {
            true => Some(inference_context(&config, &args.data_dir.data_dir)?),
            false => None,
        };
        let r = replay(&config, &args.input, args.org.as_deref(), ctx, args.workers)?;
        tracing::info!(
            configuration = name,
            machines = r.spans.len(),
            alert_records = r.alerts.len(),
            seconds = format!("{:.1}", t0.elapsed().as_secs_f64()),
            "replay done"
        );
        if i == 0
            && let Some(path) = &args.alerts_out
        {
            write_alerts(path, &r.alerts)?;
            tracing::info!(file = %path.display(), records = r.alerts.len(), "alerts written");
        }
        let orgs = match &events {
            Some(ev) => backtest::figures(&r.alerts, ev, &r.spans, &windows(&config)),
            None => BTreeMap::new(),
        };
        reports.push(Report {
            configuration: name,
            orgs,
            dead_letters: r.dead_letters,
            alert_records: r.alerts.len(),
        });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &reports, events.is_some())?;
    }
    Ok(())
}

fn is_forecast(r: &prognos_dataflows::config::RuleConfig) -> bool {
    matches!(
        r.condition,
        prognos_dataflows::config::Condition::Forecast { .. }
    )
}

/// `config` with only the rules `keep` accepts, in every org.
fn keep_rules(
    config: &Config,
    keep: impl Fn(&prognos_dataflows::config::RuleConfig) -> bool,
) -> Config {
    let mut c = config.clone();
    for o in c.orgs.values_mut() {
        o.rules.retain(&keep);
    }
    c
}

fn write_alerts(path: &Path, alerts: &[Alert]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    for a in alerts {
        serde_json::to_writer(&mut w, a)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn print_table(out: &mut impl Write, reports: &[Report], with_events: bool) -> std::io::Result<()> {
    for r in reports {
        writeln!(
            out,
            "configuration: {}  ({} alert records)",
            r.configuration, r.alert_records
        )?;
        if !r.dead_letters.is_empty() {
            writeln!(out, "  dead letters: {:?}", r.dead_letters)?;
        }
        if !with_events {
            continue;
        }
        writeln!(
            out,
            "  {:<34} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>6} {:>8} {:>6}",
            "org / component",
            "failures",
            "detected",
            "recall",
            "lead med",
            "lead p10",
            "episodes",
            "false",
            "mach-day",
            "FA/md"
        )?;
        for (org, f) in &r.orgs {
            let rows = std::iter::once((org.clone(), &f.total))
                .chain(f.components.iter().map(|(c, x)| (format!("  {c}"), x)));
            for (name, x) in rows {
                writeln!(
                    out,
                    "  {:<34} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>6} {:>8.1} {:>6}",
                    name,
                    x.failures,
                    x.detected,
                    fmt_opt(x.event_recall, 3),
                    fmt_opt(x.median_lead_minutes, 1),
                    fmt_opt(x.p10_lead_minutes, 1),
                    x.episodes,
                    x.false_alarms,
                    x.machine_days,
                    fmt_opt(x.false_alarms_per_machine_day, 2),
                )?;
            }
        }
    }
    Ok(())
}
