//! A real model through the real path: simulate → `prognos features` → `ml/train.py`
//! (LightGBM → ONNX) → the timely scoring pipeline with ONNX Runtime. The Rust
//! probabilities must equal what onnxruntime in Python gives on the same feature
//! table; activations switch versions exactly at their event time; a corrupt
//! version falls back to rules; the cache, shared by the workers, preloads the
//! active version, evicts by count and by bytes; a model made slow on purpose
//! passes its deadline and trips the circuit breaker.

use prognos::onnx_runtime;
use prognos_connectors::file::{FileSource, file_inputs};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::{CacheLimits, CacheStats, ModelCache};
use prognos_dataflows::operators::inference::{FallbackReason, InferenceContext, ScoredRow};
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
    score_config(f, &f.config, activations, workers, stats).0
}

/// Score with `config`; the rows and the shared model cache's counters.
fn score_config(
    f: &Fixture,
    config: &Config,
    activations: Arc<Activations>,
    workers: usize,
    stats: Arc<Stats>,
) -> (Vec<ScoredRow>, CacheStats) {
    let env = onnx_runtime::init()
        .expect("make setup installs ONNX Runtime")
        .environment;
    let inputs = file_inputs(&[f.sim.join(format!("{ORG}.jsonl"))], None).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let (out2, cfg, models) = (out.clone(), config.clone(), f.models.clone());
    let cache_stats: Arc<Mutex<BTreeMap<usize, CacheStats>>> = Arc::default();
    let shared_cache: prognos_dataflows::models::cache::CacheSlot = Arc::default();
    let cache_stats2 = cache_stats.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let mine = prognos_connectors::file::assign(&inputs, worker.index(), worker.peers());
        let ctx = InferenceContext {
            env: Some(env.clone()),
            source: None,
            root: Arc::new(models.clone()),
            limits: CacheLimits::default(),
            shared_cache: shared_cache.clone(),
            activations: activations.clone(),
            orgs: InferenceContext::orgs_from(&cfg),
            max_batch_rows: 256,
            stats: stats.clone(),
            cache_stats: cache_stats2.clone(),
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
    let cache = cache_stats
        .lock()
        .unwrap()
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    (std::mem::take(&mut *out.lock().unwrap()), cache)
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
    let (scored, cache) = score_config(&f, &f.config, acts, 2, stats.clone());
    assert_eq!(scored.len(), f.python_probs.len(), "every row scored once");
    // The two workers share one cache: the active version was loaded once, at
    // start (a preload, not a lookup), and every lookup after that was a hit.
    assert_eq!((cache.preloads, cache.misses, cache.models), (1, 0, 1));
    assert_eq!(cache.load_log.len(), 1, "{:?}", cache.load_log);
    let load = &cache.load_log[0];
    assert!(load.ok && load.org == ORG && load.version == "v1" && load.seq == 1);
    assert_eq!(cache.bytes, load.bytes);
    assert!(cache.hits > 0 && cache.hit_rate() == Some(1.0), "{cache:?}");
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
    let real_rows: Vec<Vec<f64>> = scored.iter().map(|r| r.row.features.clone()).collect();

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
    let cache = ModelCache::new(
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

    // 5. Bytes bound the cache too: charged by file size here (exact), a bound
    //    below two versions holds one; charged by measured memory (the default),
    //    a version costs at least its files.
    let measured = ModelCache::new(
        onnx_runtime::init().unwrap().environment,
        Arc::new(f.models.clone()),
        CacheLimits::default(),
    );
    measured.get(ORG, "v1", &names).unwrap();
    let m = measured.stats();
    let files = m.load_log[0].bytes;
    let v1_files: u64 = ["failure.onnx", "component.onnx", "ttf.onnx"]
        .iter()
        .map(|n| {
            std::fs::metadata(f.models.join(ORG).join("v1").join(n))
                .unwrap()
                .len()
        })
        .sum();
    assert!(files >= v1_files && m.bytes == files, "{m:?}");
    let by_files = ModelCache::new(
        onnx_runtime::init().unwrap().environment,
        Arc::new(f.models.clone()),
        CacheLimits {
            max_models: 10,
            max_bytes: 2 * v1_files - 1,
        },
    )
    .with_charge(|_, m| m.bytes);
    by_files.get(ORG, "v1", &names).unwrap();
    by_files.get(ORG, "v2", &names).unwrap();
    let s = by_files.stats();
    assert_eq!((s.models, s.evictions, s.bytes), (1, 1, v1_files), "{s:?}");
    assert_eq!(s.loaded, [(ORG.to_string(), "v2".to_string())]);
    by_files.get(ORG, "v2", &names).unwrap();
    by_files.get(ORG, "v1", &names).unwrap();
    let s = by_files.stats();
    assert_eq!((s.hits, s.misses, s.evictions), (1, 3, 2));
    assert_eq!(
        s.load_log.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // 6. A model made slow on purpose passes its deadline: the run is stopped
    //    (it ends long before the whole run would), its rows are judged by the
    //    rules with the reason, and three in a row open the org's breaker.
    slow_model_times_out_and_opens_the_breaker(&f, &names);

    // 7. The trained LightGBM models are scored by the built-in tree evaluator,
    //    which agrees with ONNX Runtime on rows it never saw, missing values included.
    trees_score_the_real_models_as_onnx_runtime(&f, &names, real_rows);
}

fn trees_score_the_real_models_as_onnx_runtime(f: &Fixture, names: &[String], real: Vec<Vec<f64>>) {
    use prognos_dataflows::models::runner::{ENGINE_TOLERANCE, Engine, LoadedModel};
    let env = onnx_runtime::init().unwrap().environment;
    let dir = f.models.join(ORG).join("v1");
    let mut trees = LoadedModel::load(&env, &dir, names).unwrap();
    for (role, engine, why) in trees.engines() {
        assert_eq!(engine, Engine::Trees, "{role}: {why:?}");
    }
    let mut ort = LoadedModel::load(&env, &dir, names).unwrap();
    ort.use_onnx_runtime_only();
    assert!(ort.engines().iter().all(|e| e.1 == Engine::OnnxRuntime));
    let rows: Vec<Vec<f64>> = real
        .into_iter()
        .chain((0..2048usize).map(|i| {
            (0..names.len())
                .map(|j| {
                    let k = i * 31 + j * 17;
                    if k % 7 == 0 {
                        f64::NAN
                    } else {
                        (k % 97) as f64 / 8.0 - 4.0
                    }
                })
                .collect()
        }))
        .collect();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    // In batches small enough for the evaluator (larger ones go to ONNX Runtime).
    let mut part = Vec::new();
    for chunk in refs.chunks(prognos_dataflows::models::runner::TREES_BELOW_ROWS - 1) {
        trees.score(chunk, &mut part, None).unwrap();
        a.extend_from_slice(&part);
    }
    ort.score(&refs, &mut b, None).unwrap();
    assert_eq!(a.len(), b.len());
    let close = |x: f64, y: f64| (x - y).abs() <= ENGINE_TOLERANCE * y.abs().max(1.0);
    let mut staged = 0;
    for (x, y) in a.iter().zip(&b) {
        assert!(close(x.probability, y.probability), "{x:?} {y:?}");
        assert_eq!(
            x.component.map(|c| c.0),
            y.component.map(|c| c.0),
            "{x:?} {y:?}"
        );
        if let (Some(p), Some(q)) = (x.component, y.component) {
            staged += 1;
            assert!(close(p.1, q.1), "{x:?} {y:?}");
        }
        match (x.ttf_minutes, y.ttf_minutes) {
            (Some(p), Some(q)) => assert!(close(p, q), "{x:?} {y:?}"),
            (p, q) => assert_eq!(p, q),
        }
    }
    assert!(staged > 0, "stage 2 compared on some rows");
}

/// `slow`: v1's models with an expensive branch added to the failure model's
/// output times zero (so the outputs, and the test vector, are unchanged): a
/// chain of matrix products over a [rows, 1024] matrix, cost proportional to the
/// batch's rows.
fn make_slow_version(f: &Fixture) -> PathBuf {
    let slow = f.models.join(ORG).join("slow");
    copy_dir(&f.models.join(ORG).join("v1"), &slow);
    let script = r#"
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
path = sys.argv[1]
m = onnx.load(path)
g = m.graph
out = [o for o in g.output if o.name == "probabilities"][0]
# The node that wrote `probabilities` now writes `probabilities_fast` (and
# whatever read it reads that).
for n in g.node:
    n.output[:] = ["probabilities_fast" if o == "probabilities" else o for o in n.output]
    n.input[:] = ["probabilities_fast" if i == "probabilities" else i for i in n.input]
K, R = 1024, 48
g.initializer.extend([
    numpy_helper.from_array(np.array([0], dtype=np.int64), "slow_axis0"),
    numpy_helper.from_array(np.array([K], dtype=np.int64), "slow_k"),
    numpy_helper.from_array(np.full((K, K), 1.0 / K, dtype=np.float32), "slow_w"),
    numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
])
inp = g.input[0].name
nodes = [
    helper.make_node("Shape", [inp], ["slow_shape"]),
    helper.make_node("Gather", ["slow_shape", "slow_axis0"], ["slow_n"], axis=0),
    helper.make_node("Concat", ["slow_n", "slow_k"], ["slow_dims"], axis=0),
    helper.make_node("ConstantOfShape", ["slow_dims"], ["slow_h0"],
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
]
for i in range(R):
    nodes.append(helper.make_node("MatMul", [f"slow_h{i}", "slow_w"], [f"slow_h{i+1}"]))
nodes += [
    helper.make_node("ReduceSum", [f"slow_h{R}"], ["slow_sum"], keepdims=0),
    helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
    helper.make_node("Add", ["probabilities_fast", "slow_nothing"], ["probabilities"]),
]
g.node.extend(nodes)
onnx.checker.check_model(m)
onnx.save(m, path)
"#;
    run(Command::new(root().join("ml/.venv/bin/python"))
        .arg("-c")
        .arg(script)
        .arg(slow.join("failure.onnx")));
    slow
}

fn slow_model_times_out_and_opens_the_breaker(f: &Fixture, names: &[String]) {
    make_slow_version(f);
    let env = onnx_runtime::init().unwrap().environment;
    // The load check (a few rows, no deadline) passes: the outputs are v1's.
    let mut slow = prognos_dataflows::models::runner::LoadedModel::load(
        &env,
        &f.models.join(ORG).join("slow"),
        names,
    )
    .expect("the slow model reproduces v1's test vector");
    // Not a tree ensemble any more: ONNX Runtime scores it, and says why.
    let (_, engine, why) = slow.engines()[0];
    assert_eq!(
        engine,
        prognos_dataflows::models::runner::Engine::OnnxRuntime,
        "{why:?}"
    );
    assert!(why.is_some_and(|w| w.contains("not supported")), "{why:?}");
    let rows: Vec<Vec<f64>> = (0..1024)
        .map(|i| vec![i as f64 * 0.01; names.len()])
        .collect();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    let t = std::time::Instant::now();
    slow.score(&refs, &mut out, None).unwrap();
    let whole = t.elapsed();
    assert_eq!(out.len(), 1024);
    let deadline = whole / 10;
    let t = std::time::Instant::now();
    let err = slow.score(&refs, &mut out, Some(deadline)).unwrap_err();
    let stopped = t.elapsed();
    assert!(
        matches!(
            err,
            prognos_dataflows::models::ModelError::Timeout { rows: 1024, .. }
        ),
        "{err}"
    );
    assert!(out.is_empty(), "no scores from a run past its deadline");
    assert!(
        stopped < whole / 2,
        "the run was stopped at its deadline ({stopped:?}), not run to its end ({whole:?})"
    );

    // Through the dataflow: a 1 ms deadline for this org, the slow version active.
    let mut config = f.config.clone();
    config.orgs.get_mut(ORG).unwrap().prediction.timeout_ms = 1;
    let acts = Arc::new(Activations::default());
    acts.activate(ORG, Some("slow".into()), i64::MIN);
    let stats: Arc<Stats> = Arc::default();
    let (rows, _) = score_config(f, &config, acts, 1, stats.clone());
    assert_eq!(
        rows.len(),
        f.python_probs.len(),
        "every row still comes out"
    );
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        assert!(r.fallback && r.probability.is_nan(), "rules only: {r:?}");
        let reason = r.fallback_reason.expect("a fallback row says why");
        *by_reason.entry(reason.as_str()).or_default() += 1;
        let p = r.to_prediction(names, 0);
        assert_eq!(p.metadata.fallback_reason.as_deref(), Some(reason.as_str()));
        assert!(p.metadata.fallback_used);
        match reason {
            FallbackReason::Timeout => assert_eq!(r.health, ModelHealth::Degraded),
            FallbackReason::BreakerOpen => assert_eq!(r.health, ModelHealth::Failed),
            other => panic!("unexpected reason {other:?}"),
        }
    }
    // Three timed-out batches open the breaker (BREAKER_ERRORS); it stays open
    // (60 s, wall clock) for the rest of this short run.
    let timeouts = by_reason.get("timeout").copied().unwrap_or(0);
    assert!(timeouts > 0 && timeouts <= 3 * 256, "{by_reason:?}");
    assert!(
        by_reason.get("breaker_open").copied().unwrap_or(0) > 0,
        "{by_reason:?}"
    );
    let states = stats.breaker_states();
    assert_eq!(
        states.get(ORG).copied(),
        Some(prognos_dataflows::stats::BreakerState::Open),
        "{states:?}"
    );
}
