//! `prognos replay`: run history files through the same dataflow as live scoring
//! (schema map, features, inference with the registry's activation log, rules,
//! dedup) and print the backtest figures per org and component against the
//! known failures — the check an admin runs before trusting a model.
//!
//! The replay itself is [`crate::replay`]; `--alerts-out` gives the same bytes
//! for the same input whatever the worker count. `--sweep` prints each org's
//! threshold curve ([`crate::training::operating_point`]).

use crate::backtest::{self, OrgFigures};
use crate::cli::{ConfigArg, DataDirArg};
use crate::replay::{inference_context, read_events, replay, windows};
use crate::settings;
use crate::training::operating_point::{self, Sweep, SweepSpec};
use anyhow::Context;
use clap::Args;
use prognos_dataflows::config::Config;
use prognos_dataflows::records::Alert;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    #[arg(long, conflicts_with = "sweep")]
    pub breakdown: bool,
    /// Print each org's threshold curve instead: the registry's versions score
    /// the rows once, and they are alerted on at every failure threshold (0.05
    /// to 0.95) and `for_s` (0, 30, 60 s, the configured one), and with the rules
    /// and forecasts alone; the point with the best recall within the false-alarm
    /// budget is marked. Needs --events.
    #[arg(long, requires = "events", conflicts_with_all = ["rules_only", "compare_rules_only"])]
    pub sweep: bool,
    /// The false-alarm budget of --sweep (false episodes per machine-day); by
    /// default each org's `prediction.max_false_alarms_per_day`.
    #[arg(long, requires = "sweep")]
    pub budget: Option<f64>,
    /// Print the figures as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Timely worker threads.
    #[arg(short = 'w', long, default_value_t = 1)]
    pub workers: usize,
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
    if args.sweep {
        return run_sweep(&args, &config, events.as_deref().unwrap_or_default());
    }
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

/// `--sweep`: every org's curve on the input rows.
fn run_sweep(
    args: &ReplayArgs,
    config: &Config,
    events: &[prognos_dataflows::records::FailureEvent],
) -> anyhow::Result<()> {
    if let Some(b) = args.budget {
        anyhow::ensure!(
            b.is_finite() && b > 0.0,
            "--budget must be a number > 0 (false episodes per machine-day), got {b}"
        );
    }
    let orgs: Vec<String> = match &args.org {
        Some(o) => vec![o.clone()],
        None => prognos_connectors::file::file_inputs(&args.input, None)?
            .iter()
            .map(|i| i.org.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let mut sweeps: BTreeMap<String, Sweep> = BTreeMap::new();
    for org in orgs {
        let inputs: Vec<PathBuf> = match &args.org {
            Some(_) => args.input.clone(),
            None => prognos_connectors::file::file_inputs(&args.input, None)?
                .into_iter()
                .filter(|i| i.org == org)
                .map(|i| i.path)
                .collect(),
        };
        let t0 = Instant::now();
        let s = operating_point::sweep(SweepSpec {
            config,
            org: &org,
            inputs: &inputs,
            ctx: inference_context(config, &args.data_dir.data_dir)?,
            events,
            range: None,
            workers: args.workers,
            budget: args.budget,
        })?;
        tracing::info!(org = %org, points = s.points.len(),
            seconds = format!("{:.1}", t0.elapsed().as_secs_f64()), "sweep done");
        sweeps.insert(org, s);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &sweeps)?;
        writeln!(out)?;
    } else {
        for (org, s) in &sweeps {
            print_sweep(&mut out, org, s)?;
        }
    }
    Ok(())
}

fn print_sweep(out: &mut impl Write, org: &str, s: &Sweep) -> std::io::Result<()> {
    writeln!(
        out,
        "{org}: threshold curve (budget {} false episodes per machine-day)",
        fmt_opt(s.budget, 2)
    )?;
    writeln!(
        out,
        "  {:>9} {:>5} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>6} {:>6}",
        "threshold",
        "for_s",
        "failures",
        "detected",
        "recall",
        "lead med",
        "lead p10",
        "episodes",
        "false",
        "FA/md"
    )?;
    let rows = std::iter::once((None, &s.rules_and_forecasts))
        .chain(s.points.iter().enumerate().map(|(i, p)| (Some(i), p)));
    for (i, p) in rows {
        let (t, f) = match (p.failure_threshold, p.for_s) {
            (Some(t), Some(f)) => (format!("{t:.3}"), f.to_string()),
            _ => ("rules+fc".to_string(), "-".to_string()),
        };
        writeln!(
            out,
            "{} {:>9} {:>5} {:>8} {:>8} {:>7} {:>9} {:>9} {:>8} {:>6} {:>6}",
            if i.is_some() && i == s.chosen {
                "*"
            } else {
                " "
            },
            t,
            f,
            p.failures,
            p.detected,
            fmt_opt(p.event_recall, 3),
            fmt_opt(p.median_lead_minutes, 1),
            fmt_opt(p.p10_lead_minutes, 1),
            p.episodes,
            p.false_alarms,
            fmt_opt(p.false_alarms_per_machine_day, 2),
        )?;
    }
    match s.chosen_point() {
        Some(_) if s.adds() => {
            writeln!(out, "  * chosen; it adds to the rules and forecasts alone")?
        }
        Some(_) => writeln!(
            out,
            "  * chosen; it adds nothing to the rules and forecasts alone"
        )?,
        None => writeln!(
            out,
            "  no point chosen (no budget, no failure, or none within the budget)"
        )?,
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
