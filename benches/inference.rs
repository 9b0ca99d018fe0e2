//! Inference throughput: bare `ort` on the failure model vs `LoadedModel::score`
//! (three models, stage 2 above the gate, f64→f32) vs the timely inference
//! operator, at batch sizes 1…4096, on a model trained here on simulated data.
//!
//! Setup (once, ~1 min): simulate cobalt-thermal, compute features with the
//! dataflow, train with `ml/train.py` (needs `make setup`). The failure model is a
//! single one unless `PROGNOS_BENCH_ENSEMBLE=K` asks for an average of K
//! (`training.ensemble`).
//!
//! First, the model cache with 1,000 orgs (the version linked under 1,000 org
//! names, each loaded as its own sessions): memory per loaded version, measured
//! by the cache and by the process's resident memory, and the hit rate of two
//! access patterns at two cache sizes (printed, not timed by criterion).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
mod common;
use prognos::commands::features::{FeaturesArgs, compute};
use prognos::training::python::{MlEnv, arg};
use prognos_connectors::simulator::{
    OrgSchema, OrgStream, OutputFormat, SimConfig, Speed, run_to_dir,
};
use prognos_dataflows::config::Config;
use prognos_dataflows::features::{FeatureSpec, MachineFeatures};
use prognos_dataflows::models::activations::Activations;
use prognos_dataflows::models::cache::{CacheLimits, ModelCache};
use prognos_dataflows::models::runner::LoadedModel;
use prognos_dataflows::operators::inference::{InferenceContext, inference};
use prognos_dataflows::records::{FeatureRow, SourcePosition};
use prognos_dataflows::stats::Stats;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORG: &str = "cobalt-thermal";
const SIZES: [usize; 6] = [1, 16, 128, 1024, 2048, 4096];
/// Trees of the failure model: what the throughput target is stated for (the
/// example config trains 400).
const TREES: i64 = 100;

struct Setup {
    _tmp: tempfile::TempDir,
    models: PathBuf,
    rows: Vec<Vec<f64>>,
    config: Config,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config_path = root.join("config/prognos.example.toml");
    let config = Config::from_toml_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let schemas: Vec<OrgSchema> = OrgSchema::builtin(3)
        .into_iter()
        .filter(|s| s.org_id == ORG)
        .collect();
    let sim = SimConfig {
        machines_per_org: 8,
        duration_ms: 7 * 86_400_000,
        failure_rate_per_machine_day: 2.0,
        ..SimConfig::default()
    };
    let sim_dir = tmp.path().join("sim");
    std::fs::create_dir_all(&sim_dir).unwrap();
    run_to_dir(
        &sim,
        &schemas,
        &sim_dir,
        OutputFormat::Jsonl,
        Speed::Max,
        &|_| {},
    )
    .unwrap();
    let feats = tmp.path().join("feats");
    compute(&FeaturesArgs {
        config: prognos::cli::ConfigArg {
            config: Some(config_path.clone()),
        },
        input: vec![sim_dir.join(format!("{ORG}.jsonl"))],
        org: None,
        out: feats.clone(),
        workers: 2,
        discard: false,
    })
    .unwrap();
    // The trainer's config: the example with `TREES` boosting rounds for ORG and
    // `ensemble` failure models (1 unless PROGNOS_BENCH_ENSEMBLE says otherwise;
    // the example config averages 3), set the way an operator would, by
    // environment overrides.
    let key = |k: &str| {
        format!(
            "PROGNOS_ORGS__{}__TRAINING__{k}",
            ORG.to_uppercase().replace('-', "_")
        )
    };
    let ensemble: i64 = std::env::var("PROGNOS_BENCH_ENSEMBLE")
        .map_or(1, |v| v.parse().expect("PROGNOS_BENCH_ENSEMBLE: a count"));
    let overrides = [
        (key("HYPERPARAMETERS__NUM_ITERATIONS"), TREES.to_string()),
        (key("ENSEMBLE"), ensemble.to_string()),
    ];
    let loaded = prognos::settings::load_with_env(Some(&config_path), overrides).unwrap();
    let trainer_config = tmp.path().join("trainer.toml");
    std::fs::write(&trainer_config, toml::to_string(&loaded.effective).unwrap()).unwrap();
    let models = tmp.path().join("models");
    let v1 = models.join(ORG).join("v1");
    let ml = MlEnv::locate().expect("make setup");
    let args: Vec<String> = vec![
        "--org".into(),
        ORG.into(),
        "--version".into(),
        "v1".into(),
        "--no-report".into(),
        "--config".into(),
        arg(&trainer_config),
        "--features".into(),
        arg(&feats.join(format!("{ORG}.parquet"))),
        "--events".into(),
        arg(&sim_dir.join("events.jsonl")),
        "--out".into(),
        arg(&v1),
    ];
    ml.run("train.py", &args, |_| {}).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v1.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(
        meta["hyperparameters"]["num_iterations"].as_i64(),
        Some(TREES),
        "the bench's failure model has {TREES} trees"
    );
    assert_eq!(
        meta["hyperparameters"]["ensemble"].as_i64(),
        Some(ensemble),
        "the bench's failure model averages {ensemble} members"
    );
    // Realistic rows to score: another simulated week's features (most rows are
    // healthy and stay below the stage-2 gate, as in production).
    let spec = Arc::new(FeatureSpec::from_org(
        &config.orgs[ORG],
        config.runtime.lag_tolerance_ms,
    ));
    let other = SimConfig {
        seed: 99,
        start_ms: sim.start_ms + sim.duration_ms,
        ..sim.clone()
    };
    let mut stream = OrgStream::new(&other, 0, &schemas[0]).unwrap();
    let mut states: Vec<MachineFeatures> = (0..other.machines_per_org)
        .map(|_| MachineFeatures::new(spec.clone()))
        .collect();
    let mut rows = Vec::new();
    let mut n = 0;
    while let Some(info) = stream.next_row() {
        let v: Vec<f64> = schemas[0]
            .columns
            .iter()
            .map(|(sig, _)| stream.last_values()[sig.index()])
            .collect();
        let mut out = Vec::with_capacity(spec.len());
        states[info.machine].push(info.ts_ms, &v, &mut out);
        n += 1;
        // Skip the warm-up (windows and lags filling) and take every 7th row.
        if n > 2_000 && n % 7 == 0 {
            rows.push(out);
        }
        if rows.len() == 4096 {
            break;
        }
    }
    Setup {
        _tmp: tmp,
        models,
        rows,
        config,
    }
}

/// The rows of the next batch of `n`: consecutive batches walk the whole pool of
/// `len` rows, so a small batch is not the same few rows every iteration (the
/// branch predictor and caches would learn them and flatter small batches).
struct Cursor(usize);

impl Cursor {
    fn next(&mut self, n: usize, len: usize) -> std::ops::Range<usize> {
        if self.0 + n > len {
            self.0 = 0;
        }
        let r = self.0..self.0 + n;
        self.0 += n;
        r
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    let env = prognos::onnx_runtime::init()
        .expect("make setup installs ONNX Runtime")
        .environment;
    let names = s.config.orgs[ORG].feature_names();
    let f = names.len();
    let dir = s.models.join(ORG).join("v1");
    thousand_org_cache(&s, &env, &names);

    let mut g = c.benchmark_group("inference");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);

    // Bare ort: the failure model alone, f32 input prepared outside the loop.
    let mut bare = ort::session::Session::builder(&env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_file(dir.join("failure.onnx"))
        .unwrap();
    let input: Vec<f32> = s.rows.iter().flatten().map(|x| *x as f32).collect();
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("bare_ort_failure", n), &n, |b, &n| {
            let mut at = Cursor(0);
            b.iter(|| {
                let r = at.next(n, s.rows.len());
                let x = &input[r.start * f..r.end * f];
                let t = ort::value::TensorRef::from_array_view(([n, f], x)).unwrap();
                let out = bare.run(ort::inputs![t]).unwrap();
                let (_, p) = out["probabilities"].try_extract_tensor::<f32>().unwrap();
                std::hint::black_box(p[0]);
            })
        });
    }

    // Bare ort, the same three models: failure on every row, component and
    // time to failure on the rows at or above the stage-2 gate (f32 prepared outside).
    let gate = s.config.orgs[ORG].prediction.stage2_gate();
    let open = |file: &str| {
        ort::session::Session::builder(&env)
            .unwrap()
            .with_intra_threads(1)
            .unwrap()
            .commit_from_file(dir.join(file))
            .unwrap()
    };
    let (mut comp, mut ttf) = (open("component.onnx"), open("ttf.onnx"));
    let mut gated: Vec<f32> = Vec::new();
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("bare_ort_three_models", n), &n, |b, &n| {
            let mut at = Cursor(0);
            b.iter(|| {
                let r = at.next(n, s.rows.len());
                let x = &input[r.start * f..r.end * f];
                let t = ort::value::TensorRef::from_array_view(([n, f], x)).unwrap();
                let out = bare.run(ort::inputs![t]).unwrap();
                let (_, p) = out["probabilities"].try_extract_tensor::<f32>().unwrap();
                gated.clear();
                let mut k = 0;
                for i in 0..n {
                    if p[2 * i + 1] as f64 >= gate {
                        gated.extend_from_slice(&x[i * f..(i + 1) * f]);
                        k += 1;
                    }
                }
                drop(out);
                if k > 0 {
                    let t = ort::value::TensorRef::from_array_view(([k, f], &gated[..])).unwrap();
                    let c = comp.run(ort::inputs![t]).unwrap();
                    std::hint::black_box(
                        c["probabilities"].try_extract_tensor::<f32>().unwrap().1[0],
                    );
                    let t = ort::value::TensorRef::from_array_view(([k, f], &gated[..])).unwrap();
                    let r = ttf.run(ort::inputs![t]).unwrap();
                    std::hint::black_box(r["variable"].try_extract_tensor::<f32>().unwrap().1[0]);
                }
            })
        });
    }

    // The built-in tree evaluator alone on the failure model (f32 prepared outside).
    let mut trees = prognos_dataflows::models::trees::TreeModel::from_onnx(
        &std::fs::read(dir.join("failure.onnx")).unwrap(),
        "probabilities",
    )
    .unwrap();
    let mut tree_out = Vec::new();
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("bare_trees_failure", n), &n, |b, &n| {
            let mut at = Cursor(0);
            b.iter(|| {
                let r = at.next(n, s.rows.len());
                trees
                    .predict(&input[r.start * f..r.end * f], n, f, &mut tree_out)
                    .unwrap();
                std::hint::black_box(tree_out[1]);
            })
        });
    }

    // LoadedModel::score: what the operator does per batch (with the default
    // 5 s deadline armed), and without a deadline, for the deadline's cost; and
    // the same version held to ONNX Runtime.
    let mut model = LoadedModel::load(&env, &dir, &names).unwrap();
    assert!(
        model
            .engines()
            .iter()
            .all(|e| e.1 == prognos_dataflows::models::runner::Engine::Trees),
        "{:?}",
        model.engines()
    );
    let mut ort_model = LoadedModel::load(&env, &dir, &names).unwrap();
    ort_model.use_onnx_runtime_only();
    let refs: Vec<&[f64]> = s.rows.iter().map(Vec::as_slice).collect();
    let mut scores = Vec::new();
    let deadline = Some(Duration::from_millis(5_000));
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("loaded_model_score", n), &n, |b, &n| {
            let mut at = Cursor(0);
            b.iter(|| {
                model
                    .score(&refs[at.next(n, refs.len())], &mut scores, deadline)
                    .unwrap();
                std::hint::black_box(scores[0].probability);
            })
        });
    }
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("loaded_model_score_onnxruntime", n),
            &n,
            |b, &n| {
                let mut at = Cursor(0);
                b.iter(|| {
                    ort_model
                        .score(&refs[at.next(n, refs.len())], &mut scores, deadline)
                        .unwrap();
                    std::hint::black_box(scores[0].probability);
                })
            },
        );
    }
    for n in [1, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("loaded_model_score_no_deadline", n),
            &n,
            |b, &n| {
                let mut at = Cursor(0);
                b.iter(|| {
                    model
                        .score(&refs[at.next(n, refs.len())], &mut scores, None)
                        .unwrap();
                    std::hint::black_box(scores[0].probability);
                })
            },
        );
    }

    // The timely operator: one batch per frontier step.
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("operator", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let (env, models, cfg, rows) = (
                    env.clone(),
                    s.models.clone(),
                    s.config.clone(),
                    s.rows.clone(),
                );
                timely::execute_directly(move |worker| {
                    let acts = Arc::new(Activations::default());
                    acts.activate(ORG, Some("v1".into()), i64::MIN);
                    let ctx = InferenceContext {
                        env: Some(env),
                        source: None,
                        root: Arc::new(models),
                        limits: CacheLimits::default(),
                        shared_cache: Default::default(),
                        activations: acts,
                        orgs: InferenceContext::orgs_from(&cfg),
                        max_batch_rows: 4096,
                        stats: Arc::new(Stats::default()),
                        cache_stats: Arc::default(),
                        clock: prognos_dataflows::operators::inference::system_clock(),
                    };
                    let mut input = timely::dataflow::InputHandle::new();
                    let probe = timely::dataflow::ProbeHandle::new();
                    worker.dataflow::<u64, _, _>(|scope| {
                        use timely::dataflow::operators::{Input, Probe};
                        let stream = scope.input_from(&mut input);
                        inference(stream, "Inference", ctx).probe_with(&probe);
                    });
                    let mut total = Duration::ZERO;
                    let mut at = Cursor(0);
                    for it in 0..iters {
                        let t = 1_000 + it;
                        let batch: Vec<FeatureRow> = rows[at.next(n, rows.len())]
                            .iter()
                            .enumerate()
                            .map(|(i, r)| FeatureRow {
                                organization_id: ORG.into(),
                                machine_id: format!("M{}", i % 16),
                                ts: t as i64,
                                pos: SourcePosition {
                                    partition: 0,
                                    offset: i as u64,
                                },
                                features: r.clone(),
                                values: Vec::new(),
                            })
                            .collect();
                        let start = Instant::now();
                        for row in batch {
                            input.send(row);
                        }
                        input.advance_to(t + 1);
                        while probe.less_than(input.time()) {
                            worker.step();
                        }
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// 1,000 orgs, one version each; memory per version and hit rates.
fn thousand_org_cache(s: &Setup, env: &ort::environment::Environment, names: &[String]) {
    const ORGS: usize = 1_000;
    let root = s.models.parent().unwrap().join("thousand");
    let v1 = s.models.join(ORG).join("v1");
    for i in 0..ORGS {
        let d = root.join(format!("org-{i:04}")).join("v1");
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&v1).unwrap() {
            let e = e.unwrap();
            std::fs::hard_link(e.path(), d.join(e.file_name())).unwrap();
        }
    }
    let org = |i: usize| format!("org-{i:04}");
    let files: u64 = ["failure.onnx", "component.onnx", "ttf.onnx"]
        .iter()
        .map(|n| std::fs::metadata(v1.join(n)).unwrap().len())
        .sum();
    // Memory: every org loaded, nothing evicted.
    let unbounded = CacheLimits {
        max_models: ORGS,
        max_bytes: u64::MAX,
    };
    let cache = ModelCache::new(env.clone(), Arc::new(root.clone()), unbounded);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    for i in 0..ORGS {
        cache.preload(&org(i), "v1", names).unwrap();
    }
    let load_s = t0.elapsed().as_secs_f64();
    // Score a 1,024-row batch with each so the sessions' working memory is held too.
    let refs: Vec<&[f64]> = s.rows.iter().take(1024).map(Vec::as_slice).collect();
    let mut scores = Vec::new();
    for i in 0..ORGS {
        let m = cache.get(&org(i), "v1", names).unwrap();
        m.lock().unwrap().score(&refs, &mut scores, None).unwrap();
    }
    let rss1 = rss_bytes();
    let st = cache.stats();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "model cache, {ORGS} orgs: ONNX files {:.2} MiB per version; measured at load {:.2} MiB per version \
         ({:.0} MiB in all); resident memory grew {:.2} MiB per version after loading and scoring 1,024 rows with each; \
         {:.1} ms per load",
        mib(files),
        mib(st.bytes / ORGS as u64),
        mib(st.bytes),
        mib(rss1.saturating_sub(rss0) / ORGS as u64),
        load_s * 1000.0 / ORGS as f64
    );
    drop(cache);
    // Hit rates. "streaming": every org has rows in every frontier step (plants
    // that stream continuously); "skewed": 100 lookups per step, orgs drawn by
    // Zipf (s = 1) popularity. Each after preloading every org's active version,
    // as the service does at start.
    let mut rng = common::SplitMix(7);
    let harmonic: Vec<f64> = (1..=ORGS)
        .scan(0.0, |acc, k| {
            *acc += 1.0 / k as f64;
            Some(*acc)
        })
        .collect();
    let mut zipf = move || {
        let u = rng.unit() * harmonic[ORGS - 1];
        harmonic.partition_point(|&h| h < u).min(ORGS - 1)
    };
    for capacity in [256usize, 1_024] {
        for pattern in ["streaming", "skewed"] {
            let limits = CacheLimits {
                max_models: capacity,
                max_bytes: u64::MAX,
            };
            let cache = ModelCache::new(env.clone(), Arc::new(root.clone()), limits);
            for i in 0..ORGS {
                cache.preload(&org(i), "v1", names).unwrap();
            }
            let mut step = |cache: &ModelCache| match pattern {
                "streaming" => (0..ORGS).for_each(|i| {
                    cache.get(&org(i), "v1", names).unwrap();
                }),
                _ => (0..100).for_each(|_| {
                    cache.get(&org(zipf()), "v1", names).unwrap();
                }),
            };
            // Streaming steps are 1,000 lookups each (and reloads when the cache
            // is too small): fewer of them.
            let (warm, counted) = if pattern == "streaming" {
                (1, 5)
            } else {
                (20, 200)
            };
            (0..warm).for_each(|_| step(&cache));
            let before = cache.stats();
            let t = Instant::now();
            (0..counted).for_each(|_| step(&cache));
            let secs = t.elapsed().as_secs_f64();
            let after = cache.stats();
            let hits = after.hits - before.hits;
            let lookups = hits + after.misses - before.misses;
            println!(
                "model cache, {ORGS} orgs, {pattern}, capacity {capacity}: hit rate {:.3} over {lookups} lookups, \
                 {:.0} MiB held, {:.1} s spent (loads {:.1} s)",
                hits as f64 / lookups as f64,
                mib(after.bytes),
                secs,
                after.load_seconds - before.load_seconds
            );
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
