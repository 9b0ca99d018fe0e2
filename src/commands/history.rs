//! `prognos history`: import historian exports into an org's history, show
//! what is stored, and keep the org's work orders (failure labels).

use crate::cli::{ConfigArg, DataDirArg};
use crate::settings;
use crate::training::failures::{self, NewWorkOrder, Source, WorkOrders};
use crate::training::history::import::import;
use crate::training::history::{self, HistoryReader, HistoryWriter};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use prognos_connectors::file::JsonlSink;
use std::path::PathBuf;

/// Arguments of `prognos history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Configuration (the org's schema).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the history lives (`<data-dir>/history` unless `[history].dir`).
    #[command(flatten)]
    pub data_dir: DataDirArg,
    /// What to do.
    #[command(subcommand)]
    pub action: HistoryAction,
}

/// `prognos history` actions.
#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Load historian exports (CSV/JSONL in the org's own schema, rows in any
    /// order) through the schema mapping into the org's history; a file whose
    /// content was imported before is skipped.
    Import {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Files to import.
        #[arg(required = true, num_args = 1.., value_name = "FILES")]
        files: Vec<PathBuf>,
        /// Where rows that cannot be mapped go, with the reason (JSON lines).
        #[arg(long, value_name = "FILE")]
        dead_letters: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Summarise an org's stored history: per machine the first and last event
    /// time, rows and gaps.
    Show {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work orders: failures people report (machine, component, start, end,
    /// note), kept in `<history>/org=<id>/failures.jsonl` and used as training
    /// labels together with the rising edges of the org's failure signals. The
    /// same (machine, component, start) is stored once. Works while the
    /// service runs.
    Failures {
        /// What to do.
        #[command(subcommand)]
        action: FailuresAction,
    },
}

/// `prognos history failures` actions.
#[derive(Debug, Subcommand)]
pub enum FailuresAction {
    /// Record one failure (stored once: adding it again shows the stored one).
    Add {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Machine.
        #[arg(long)]
        machine: String,
        /// Failed component.
        #[arg(long)]
        component: String,
        /// When it started: RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        start: i64,
        /// When it ended (repaired): RFC 3339 or epoch ms.
        #[arg(long, value_parser = parse_time)]
        end: Option<i64>,
        /// Free text (at most 2000 bytes).
        #[arg(long)]
        note: Option<String>,
    },
    /// Record the failures of a JSON-lines file in the labels format
    /// (`{"organizationId"?, "machineId", "component", "start", "end"?, "note"?}`);
    /// the whole file is checked first and refused with the line and field of
    /// the first bad line (a line of another organization is bad).
    Import {
        /// Organization.
        #[arg(long)]
        org: String,
        /// The file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// List the org's work orders, newest start first.
    List {
        /// Organization.
        #[arg(long)]
        org: String,
        /// Print them as a JSON array of records.
        #[arg(long)]
        json: bool,
    },
}

fn parse_time(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .or_else(|| prognos_dataflows::time::parse_rfc3339_ms(s))
        .ok_or_else(|| format!("`{s}` is not a time (RFC 3339 or epoch ms)"))
}

/// Who the CLI records as the author: `$USER`, else `cli`.
fn cli_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

fn run_failures(
    root: &std::path::Path,
    config: &prognos_dataflows::config::Config,
    action: FailuresAction,
) -> anyhow::Result<()> {
    let org = match &action {
        FailuresAction::Add { org, .. }
        | FailuresAction::Import { org, .. }
        | FailuresAction::List { org, .. } => org.clone(),
    };
    anyhow::ensure!(
        config.orgs.contains_key(&org),
        "organization `{org}` is not in the configuration"
    );
    let store = WorkOrders::new(root, &org);
    let now = chrono::Utc::now().timestamp_millis();
    let t = prognos_dataflows::time::format_rfc3339_ms;
    match action {
        FailuresAction::Add {
            machine,
            component,
            start,
            end,
            note,
            ..
        } => {
            let new = NewWorkOrder {
                machine_id: machine,
                component,
                start,
                end,
                note,
            };
            let (w, added) = store.add(new, Source::Cli, &cli_user(), now)?;
            let what = if added { "stored" } else { "already stored" };
            println!(
                "{what}: {} {} {} from {} in {}",
                w.id,
                w.machine_id,
                w.component,
                t(w.start),
                store.path().display()
            );
        }
        FailuresAction::Import { file, .. } => {
            let news = failures::read_import(&file, &org)?;
            let n = news.len();
            let added = store
                .add_all(news, Source::Import, &cli_user(), now)?
                .iter()
                .filter(|(_, added)| *added)
                .count();
            println!(
                "{org}: {n} work order(s) in {}: {added} stored, {} already stored",
                file.display(),
                n - added
            );
        }
        FailuresAction::List { json, .. } => {
            let all = store.newest_first(None, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{org}: {} work order(s)", all.len());
                for w in &all {
                    println!(
                        "  {}  {}  {}  {} .. {}  {} by {}{}",
                        w.id,
                        w.machine_id,
                        w.component,
                        t(w.start),
                        w.end.map_or("-".into(), t),
                        serde_json::to_value(w.source)?.as_str().unwrap_or_default(),
                        w.created_by,
                        w.note.as_ref().map_or(String::new(), |n| format!("  {n}"))
                    );
                }
            }
        }
    }
    Ok(())
}

/// Run `prognos history`.
pub fn run(args: HistoryArgs) -> anyhow::Result<()> {
    let config = crate::orgs::effective_config(
        settings::load(args.config.config.as_deref())?.config,
        &args.data_dir.data_dir,
    )?;
    let data_dir = &args.data_dir.data_dir;
    let root = history::root_for(&config, data_dir)?;
    match args.action {
        HistoryAction::Import {
            org,
            files,
            dead_letters,
            json,
        } => {
            let mut writer = HistoryWriter::open(
                &root,
                &history::wal_dir_for(data_dir, &format!("import-{}", std::process::id())),
                &config,
                history::settings_of(&config),
            )
            .with_context(|| format!("cannot open the history in {}", root.display()))?;
            let dead_path =
                dead_letters.unwrap_or_else(|| data_dir.join("import_dead_letters.jsonl"));
            let mut dead_sink = JsonlSink::create(&dead_path)?;
            let mut dead_err = None;
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            let t0 = std::time::Instant::now();
            let summary = import(
                &mut writer,
                &config,
                &org,
                &files,
                |n| {
                    bar.set_message(format!(
                        "{n} rows imported ({:.0} rows/s)",
                        n as f64 / t0.elapsed().as_secs_f64().max(1e-9)
                    ));
                    bar.tick();
                },
                |d| {
                    if let Err(e) = dead_sink.write(d)
                        && dead_err.is_none()
                    {
                        dead_err = Some(e);
                    }
                },
            )?;
            bar.finish_and_clear();
            if let Some(e) = dead_err {
                return Err(e.into());
            }
            let dead = dead_sink.finish()?;
            let secs = t0.elapsed().as_secs_f64();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                let t = |x: Option<i64>| {
                    x.map_or("-".into(), prognos_dataflows::time::format_rfc3339_ms)
                };
                println!(
                    "{org}: {} rows from {} file(s) ({} already imported), {} machines, {} .. {}, {:.0} rows/s",
                    summary.rows,
                    summary.files.len(),
                    summary.already_imported.len(),
                    summary.machines.len(),
                    t(summary.first_ts),
                    t(summary.last_ts),
                    summary.rows as f64 / secs.max(1e-9),
                );
                if dead > 0 {
                    println!("dead letters: {dead} in {}", dead_path.display());
                    for (reason, n) in &summary.dead_letters {
                        println!("  {reason}: {n}");
                    }
                }
            }
        }
        HistoryAction::Failures { action } => {
            run_failures(&history::local_dir_for(&config, data_dir), &config, action)?
        }
        HistoryAction::Show { org, json } => {
            anyhow::ensure!(
                config.orgs.contains_key(&org),
                "organization `{org}` is not in the configuration"
            );
            let s = HistoryReader::new(&root).summary(&org)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                let t = prognos_dataflows::time::format_rfc3339_ms;
                println!(
                    "{org}: {} rows ({} stored twice, dropped on read), {} days, {} segments, {} bytes in {}",
                    s.rows,
                    s.duplicates,
                    s.days,
                    s.segments,
                    s.bytes,
                    root.display()
                );
                for m in &s.machines {
                    println!(
                        "  {}  {} .. {}  rows={}  interval={}s  gaps={}  longest_gap={}s",
                        m.machine_id,
                        t(m.first_ts),
                        t(m.last_ts),
                        m.rows,
                        m.median_interval_ms / 1000,
                        m.gaps,
                        m.longest_gap_ms / 1000
                    );
                }
            }
        }
    }
    Ok(())
}
