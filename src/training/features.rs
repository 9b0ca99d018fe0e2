//! Feature tables of history files: the live feature dataflow run over JSONL/CSV
//! inputs, one Parquet table per org (what `prognos features` writes and the
//! training pipeline trains on), so training and serving see identical features.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prognos_connectors::file::{
    FileSource, JsonlSink, ParquetFeatureSink, SinkError, assign, file_inputs,
};
use prognos_dataflows::operators::ordered_sink::ordered_sink;
use prognos_dataflows::pipeline::feature_pipeline;
use prognos_dataflows::records::{DeadLetter, FeatureRow};
use prognos_dataflows::stats::{Stats, outcome};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a run produced.
#[derive(Debug, Default)]
pub struct FeaturesSummary {
    /// Feature rows per org.
    pub rows: BTreeMap<String, u64>,
    /// Dead letters written.
    pub dead_letters: u64,
    /// All counters (org, outcome).
    pub stats: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
struct Sinks {
    features: Option<ParquetFeatureSink>,
    dead: Option<JsonlSink>,
    summary: FeaturesSummary,
    error: Option<SinkError>,
}

/// Run the feature dataflow over `input` with `config` (training passes the
/// effective one, stored org configurations included) and write the tables into
/// `out`; returns what was written.
pub fn compute_with(
    config: &prognos_dataflows::config::Config,
    input: &[PathBuf],
    org: Option<&str>,
    out: &std::path::Path,
    workers: usize,
    discard: bool,
) -> anyhow::Result<FeaturesSummary> {
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    let config = config.clone();
    let inputs = file_inputs(input, org)?;
    for i in &inputs {
        if !config.orgs.contains_key(&i.org) {
            tracing::warn!(org = %i.org, file = %i.path.display(), "organization not in the configuration: its rows become dead letters (unknown_org)");
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create --out directory {}", out.display()))?;
    let names: BTreeMap<String, Vec<String>> = config
        .orgs
        .iter()
        .map(|(id, o)| (id.clone(), o.feature_names()))
        .collect();
    let sinks = Arc::new(Mutex::new(Sinks {
        features: Some(ParquetFeatureSink::new(out, names)),
        dead: Some(JsonlSink::create(&out.join("dead_letters.jsonl"))?),
        ..Sinks::default()
    }));
    let stats = Arc::new(Stats::default());

    let (cfg2, inputs2, sinks2, stats2) =
        (config.clone(), inputs.clone(), sinks.clone(), stats.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let mine = assign(&inputs2, worker.index(), worker.peers());
        let (cfg, sinks_f, sinks_d, stats) =
            (cfg2.clone(), sinks2.clone(), sinks2.clone(), stats2.clone());
        worker.dataflow::<u64, _, _>(move |scope| {
            let (feats, dead) =
                feature_pipeline(scope, &cfg, Box::new(FileSource::new(mine)), stats);
            ordered_sink(
                feats,
                "ParquetSink",
                |r: &FeatureRow| r.ts as u64,
                |a: &FeatureRow, b: &FeatureRow| {
                    (&a.organization_id, &a.machine_id).cmp(&(&b.organization_id, &b.machine_id))
                },
                move |batch, _done| {
                    let mut s = sinks_f.lock().unwrap_or_else(|e| e.into_inner());
                    if s.error.is_some() || discard {
                        return;
                    }
                    if let Some(w) = s.features.as_mut()
                        && let Err(e) = w.write(batch)
                    {
                        s.error = Some(e);
                    }
                },
            );
            ordered_sink(
                dead,
                "DeadLetterSink",
                |_: &DeadLetter| 0,
                |a: &DeadLetter, b: &DeadLetter| {
                    (a.partition, a.offset).cmp(&(b.partition, b.offset))
                },
                move |batch, _done| {
                    let mut s = sinks_d.lock().unwrap_or_else(|e| e.into_inner());
                    for d in batch {
                        if s.error.is_some() {
                            return;
                        }
                        if let Some(w) = s.dead.as_mut()
                            && let Err(e) = w.write(d)
                        {
                            s.error = Some(e);
                        }
                    }
                },
            );
        });
    })
    .map_err(|e| anyhow::anyhow!("cannot start timely workers: {e}"))?;

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = guards.join();
        let _ = tx.send(r);
    });
    let started = Instant::now();
    let results = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let n: u64 = stats
                    .snapshot()
                    .iter()
                    .filter(|((_, o), _)| o == outcome::FEATURED)
                    .map(|(_, v)| v)
                    .sum();
                let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{n} rows featured ({rate:.0} rows/s)"));
                bar.tick();
            }
            Err(e) => anyhow::bail!("timely workers vanished: {e}"),
        }
    };
    bar.finish_and_clear();
    for r in results {
        if let Err(e) = r {
            anyhow::bail!("a timely worker failed: {e}");
        }
    }
    let mut s = std::mem::take(&mut *sinks.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(e) = s.error.take() {
        return Err(e.into());
    }
    let mut summary = std::mem::take(&mut s.summary);
    if let Some(f) = s.features.take() {
        summary.rows = f.finish()?;
    }
    if let Some(d) = s.dead.take() {
        summary.dead_letters = d.finish()?;
    }
    summary.stats = stats.snapshot();
    Ok(summary)
}
