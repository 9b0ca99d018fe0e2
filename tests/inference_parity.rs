//! A real model through the real path: simulate → `prognos features` → `ml/train.py`
//! (LightGBM → ONNX) → the timely scoring pipeline with ONNX Runtime. The Rust
//! probabilities must equal what onnxruntime in Python gives on the same feature
//! table; activations switch versions exactly at their event time; a corrupt
//! version falls back to rules; the cache evicts by count.

use prognos::onnx_runtime;
use prognos_connectors::file::{FileSource, file_inputs};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::{CacheLimits, ModelCache};
use prognos_dataflows::operators::inference::{InferenceContext, ScoredRow};
use prognos_dataflows::operators::ordered_sink::ordered_sink;
use prognos_dataflows::pipeline::scoring_pipeline;
use prognos_dataflows::records::ModelHealth;
use prognos_dataflows::stats::{Stage, Stats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const ORG: &str = "acme-heat";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Fixture {
    _tmp: tempfile::TempDir,
    sim: PathBuf,
    models: PathBuf,
    python_probs: BTreeMap<(String, i64), f64>,
    config: Config,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_prognos");
    let sim = tmp.path().join("sim");
    let feats = tmp.path().join("feats");
    let models = tmp.path().join("models");
    // The example config with small failure models (40 rounds per ensemble
    // member instead of 400): the parity below does not depend on their size.
    let example = std::fs::read_to_string(root().join("config/prognos.example.toml")).unwrap();
    let section = "[orgs.acme-heat.training.hyperparameters]";
    let at = example.find(section).unwrap();
    let rounds = at + example[at..].find("num_iterations = 400").unwrap();
    let small = format!(
        "{}num_iterations = 40{}",
        &example[..rounds],
        &example[rounds + "num_iterations = 400".len()..]
    );
    let config_path = tmp.path().join("prognos.toml");
    std::fs::write(&config_path, small).unwrap();
    run(Command::new(bin)
        .args([
            "simulate",
            "--orgs",
            "1",
            "--machines",
            "4",
            "--hours",
            "72",
            "--seed",
            "21",
            "--failure-rate",
            "3",
            "--out",
        ])
        .arg(&sim));
    run(Command::new(bin)
        .args(["features", "--input"])
        .arg(sim.join(format!("{ORG}.jsonl")))
        .arg("--out")
        .arg(&feats));
    let python = root().join("ml/.venv/bin/python");
    let v1 = models.join(ORG).join("v1");
    let train = |version: &str, seed: &str| {
        run(Command::new(&python)
            .arg(root().join("ml/train.py"))
            .args([
                "--org",
                ORG,
                "--version",
                version,
                "--seed",
                seed,
                "--no-report",
                "--config",
            ])
            .arg(&config_path)
            .arg("--features")
            .arg(feats.join(format!("{ORG}.parquet")))
            .arg("--events")
            .arg(sim.join("events.jsonl"))
            .arg("--out")
            .arg(models.join(ORG).join(version)));
    };
    train("v1", "3");
    // A second, different model (other seed) for the rollback check.
    train("other", "11");
    // onnxruntime in Python on the feature table the Rust dataflow wrote.
    let probs_path = tmp.path().join("probs.json");
    let script = r#"
import json, sys
import numpy as np, pandas as pd, onnxruntime as ort
feats, model_dir, out = sys.argv[1:4]
meta = json.load(open(f"{model_dir}/metadata.json"))
df = pd.read_parquet(feats)
x = df[meta["featureNames"]].to_numpy(dtype=np.float32)
s = ort.InferenceSession(f"{model_dir}/failure.onnx", providers=["CPUExecutionProvider"])
p = s.run(["probabilities"], {"input": x})[0][:, 1]
ts = ((df["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy()
json.dump([[m, int(t), float(q)] for m, t, q in zip(df["machine"], ts, p)], open(out, "w"))
"#;
    run(Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(feats.join(format!("{ORG}.parquet")))
        .arg(&v1)
        .arg(&probs_path));
    let rows: Vec<(String, i64, f64)> =
        serde_json::from_str(&std::fs::read_to_string(&probs_path).unwrap()).unwrap();
    let python_probs = rows.into_iter().map(|(m, t, p)| ((m, t), p)).collect();
    let config = Config::from_toml_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    // The example config averages failure models for this org, so the parity
    // below holds for the ensemble graph (one tree ensemble per member).
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v1.join("metadata.json")).unwrap()).unwrap();
    let members = config.orgs[ORG].training.ensemble;
    assert!(members > 1, "the example config's {ORG} is an ensemble");
    assert_eq!(
        meta["hyperparameters"]["ensemble"].as_u64(),
        Some(u64::from(members))
    );
    Fixture {
        _tmp: tmp,
        sim,
        models,
        python_probs,
        config,
    }
}

fn score(f: &Fixture, activations: Arc<Activations>, workers: usize) -> Vec<ScoredRow> {
    score_with(f, activations, workers, Arc::default())
}

/// Score with `stats` shared by every worker's operators.
fn score_with(
    f: &Fixture,
    activations: Arc<Activations>,
    workers: usize,
    stats: Arc<Stats>,
) -> Vec<ScoredRow> {
    let env = onnx_runtime::init()
        .expect("make setup installs ONNX Runtime")
        .environment;
    let inputs = file_inputs(&[f.sim.join(format!("{ORG}.jsonl"))], None).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let (out2, cfg, models) = (out.clone(), f.config.clone(), f.models.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mine = prognos_connectors::file::assign(&inputs, worker.index(), worker.peers());
        let ctx = InferenceContext {
            env: Some(env.clone()),
            source: None,
            root: Arc::new(models.clone()),
            limits: CacheLimits::default(),
            activations: activations.clone(),
            orgs: InferenceContext::orgs_from(&cfg),
            max_batch_rows: 256,
            stats: stats.clone(),
            cache_stats: Arc::default(),
            clock: prognos_dataflows::operators::inference::system_clock(),
        };
        let (cfg, out, stats) = (cfg.clone(), out2.clone(), stats.clone());
        worker.dataflow::<u64, _, _>(move |scope| {
            let (scored, _dead) =
                scoring_pipeline(scope, &cfg, Box::new(FileSource::new(mine)), stats, ctx);
            ordered_sink(
                scored,
                "Collect",
                |r: &ScoredRow| r.row.ts as u64,
                |a: &ScoredRow, b: &ScoredRow| a.row.machine_id.cmp(&b.row.machine_id),
                move |batch, _| out.lock().unwrap().extend_from_slice(batch),
            );
        });
    })
    .unwrap();
    std::mem::take(&mut *out.lock().unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn real_model_scores_like_python_and_swaps_in_event_time() {
    let f = fixture();
    // 1. Parity: v1 active from the beginning, 2 workers.
    let acts = Arc::new(Activations::default());
    acts.activate(ORG, Some("v1".into()), i64::MIN);
    let stats: Arc<Stats> = Arc::default();
    let scored = score_with(&f, acts, 2, stats.clone());
    assert_eq!(scored.len(), f.python_probs.len(), "every row scored once");
    // Every scored row is in exactly one timed `ort` batch of at most
    // max_batch_rows, and every featured row in one timed features activation.
    let (batches, dropped) = stats.take_batches();
    assert_eq!(dropped, 0);
    let rows_in = |stage| -> usize {
        batches
            .iter()
            .filter(|b| b.stage == stage)
            .map(|b| b.rows)
            .sum()
    };
    assert_eq!(rows_in(Stage::Inference), scored.len());
    assert_eq!(
        rows_in(Stage::Features) as u64,
        stats.get(ORG, prognos_dataflows::stats::outcome::FEATURED)
    );
    for b in &batches {
        assert!(
            b.rows >= 1 && b.seconds >= 0.0 && b.seconds.is_finite(),
            "{b:?}"
        );
        if b.stage == Stage::Inference {
            assert!(b.rows <= 256 && b.org.as_deref() == Some(ORG), "{b:?}");
        }
    }
    let mut above_gate = 0;
    for r in &scored {
        let want = f.python_probs[&(r.row.machine_id.clone(), r.row.ts)];
        assert!(!r.fallback && r.health == ModelHealth::Healthy);
        assert_eq!(r.model_version.as_deref(), Some("v1"));
        assert!(
            (r.probability - want).abs() <= 1e-6,
            "{} {}: rust {} python {}",
            r.row.machine_id,
            r.row.ts,
            r.probability,
            want
        );
        if r.probability >= 0.425 {
            above_gate += 1;
            assert!(r.time_to_failure >= 0.0);
        }
    }
    assert!(above_gate > 0, "stage 2 ran on some rows");

    // 2. Hot swap in event time: v2 (same model, another version) from the middle;
    //    v3 (corrupt) from three quarters on.
    let v1 = f.models.join(ORG).join("v1");
    copy_dir(&v1, &f.models.join(ORG).join("v2"));
    let v3 = f.models.join(ORG).join("v3");
    copy_dir(&v1, &v3);
    std::fs::write(v3.join("failure.onnx"), b"not a model").unwrap();
    let (t0, t1) = (
        scored.first().unwrap().row.ts,
        scored.last().unwrap().row.ts,
    );
    let (mid, late) = (t0 + (t1 - t0) / 2, t0 + (t1 - t0) * 3 / 4);
    let acts = Arc::new(Activations::default());
    acts.activate(ORG, Some("v1".into()), i64::MIN);
    acts.activate(ORG, Some("v2".into()), mid);
    acts.activate(ORG, Some("v3".into()), late);
    let swapped = score(&f, acts, 1);
    assert_eq!(
        swapped.len(),
        scored.len(),
        "a swap loses and double-scores nothing"
    );
    for (a, b) in swapped.iter().zip(&scored) {
        assert_eq!((a.row.ts, &a.row.machine_id), (b.row.ts, &b.row.machine_id));
        let want = if a.row.ts < mid {
            "v1"
        } else if a.row.ts < late {
            "v2"
        } else {
            "v3"
        };
        assert_eq!(a.model_version.as_deref(), Some(want), "ts {}", a.row.ts);
        if a.row.ts < late {
            assert_eq!(
                a.probability.to_bits(),
                b.probability.to_bits(),
                "same model, same score"
            );
        } else {
            assert!(
                a.fallback && a.probability.is_nan() && a.health == ModelHealth::Failed,
                "corrupt version: rules only"
            );
        }
    }

    // 3. Rollback restores the previous version's predictions: v1, then `other`
    //    from the middle, then v1 again from three quarters on.
    let acts = Arc::new(Activations::default());
    acts.activate(ORG, Some("v1".into()), i64::MIN);
    acts.activate(ORG, Some("other".into()), mid);
    acts.activate(ORG, Some("v1".into()), late);
    let rolled = score(&f, acts, 2);
    let mut differ = 0;
    for (a, b) in rolled.iter().zip(&scored) {
        if a.row.ts >= mid && a.row.ts < late {
            assert_eq!(a.model_version.as_deref(), Some("other"));
            differ += (a.probability.to_bits() != b.probability.to_bits()) as usize;
        } else {
            assert_eq!(a.model_version.as_deref(), Some("v1"));
            assert_eq!(
                a.probability.to_bits(),
                b.probability.to_bits(),
                "rolled back: v1's predictions again"
            );
        }
    }
    assert!(differ > 0, "the other version really scores differently");

    // 3b. A confidence threshold changed while running applies from its ts on:
    //     above 1 from the middle, no row names a component but the general one.
    let acts = Arc::new(Activations::default());
    acts.activate(ORG, Some("v1".into()), i64::MIN);
    acts.set_thresholds(
        ORG,
        prognos_dataflows::models::activations::Thresholds {
            failure_threshold: 0.85,
            for_s: 0,
            immediate_threshold: None,
            confidence_threshold: 1.5,
        },
        mid,
    );
    let strict = score(&f, acts, 1);
    let general = f.config.orgs[ORG]
        .prediction
        .general_component()
        .to_string();
    let mut named_before = 0;
    for (a, b) in strict.iter().zip(&scored) {
        assert_eq!(a.probability.to_bits(), b.probability.to_bits());
        if a.row.ts < mid {
            assert_eq!(a.component, b.component, "before the change: as configured");
            named_before += (*a.component != *general) as usize;
        } else {
            assert_eq!(&*a.component, general.as_str(), "ts {}", a.row.ts);
        }
    }
    assert!(
        named_before > 0,
        "some rows named a component before the change"
    );

    // 4. The cache evicts by count and reloads what it evicted.
    let env = onnx_runtime::init().unwrap().environment;
    let names = f.config.orgs[ORG].feature_names();
    let mut cache = ModelCache::new(
        env,
        Arc::new(f.models.clone()),
        CacheLimits {
            max_models: 1,
            max_bytes: u64::MAX,
        },
    );
    cache.get(ORG, "v1", &names).unwrap();
    cache.get(ORG, "v2", &names).unwrap();
    cache.get(ORG, "v2", &names).unwrap();
    cache.get(ORG, "v1", &names).unwrap();
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.evictions, s.models), (1, 3, 2, 1));
    assert!(s.bytes > 0 && s.load_seconds > 0.0);
    assert!(
        cache.get(ORG, "v3", &names).is_err(),
        "corrupt file refused at load"
    );
    let wrong: Vec<String> = names.iter().rev().cloned().collect();
    let err = ModelCache::new(
        onnx_runtime::init().unwrap().environment,
        Arc::new(f.models.clone()),
        CacheLimits::default(),
    )
    .get(ORG, "v1", &wrong)
    .unwrap_err()
    .to_string();
    assert!(err.contains("feature names differ"), "{err}");
}
