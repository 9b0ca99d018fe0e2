//! A loaded model version: the three ONNX models, checked at load, scoring
//! batches of feature rows. Each model is an ONNX Runtime session (the
//! reference) and, where the graph is a LightGBM tree ensemble and the built-in
//! evaluator ([`super::trees`]) reproduces ONNX Runtime on the version's test
//! vector and on its rows with missing values (within [`ENGINE_TOLERANCE`]), the
//! evaluator scores it; otherwise ONNX Runtime does, and the version says why.

use super::metadata::ModelMetadata;
use super::trees::TreeModel;
use ort::environment::Environment;
use ort::session::{RunOptions, Session};
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Largest difference between the recorded test vector outputs and ours.
pub const TEST_VECTOR_TOLERANCE: f64 = 1e-5;

/// Largest difference (relative above 1) between the tree evaluator and ONNX
/// Runtime on the load-time check rows for the evaluator to be used.
pub const ENGINE_TOLERANCE: f64 = 1e-6;

/// Batches smaller than this go to the tree evaluator, larger ones to ONNX
/// Runtime: measured on the bench's 100-tree models (benches/README.md), the
/// evaluator scores one row 1.85x faster than ONNX Runtime (no per-call
/// overhead) but 6-20% slower from 16 rows up.
pub const TREES_BELOW_ROWS: usize = 16;

/// What scores one of a version's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The built-in tree-ensemble evaluator.
    Trees,
    /// ONNX Runtime.
    OnnxRuntime,
}

impl Engine {
    /// As logged and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Trees => "trees",
            Engine::OnnxRuntime => "onnxruntime",
        }
    }
}

/// One of the three models: its session and, when it passed the check, the
/// tree evaluator that scores it instead.
struct Part {
    role: &'static str,
    output: &'static str,
    session: Session,
    trees: Option<TreeModel>,
    /// Why ONNX Runtime scores it (None when the evaluator does).
    ort_because: Option<String>,
    /// The evaluator's output buffer, reused.
    scratch: Vec<f32>,
}

/// Why a model version cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// A file is missing or unreadable.
    #[error("reading {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// ONNX Runtime refused a model file.
    #[error("loading {}: {reason}", path.display())]
    Session {
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The model was trained on other features than the pipeline computes.
    #[error("model {org}/{version}: feature names differ from the pipeline's: {detail}")]
    FeatureMismatch {
        /// Org.
        org: String,
        /// Version.
        version: String,
        /// The first difference.
        detail: String,
    },
    /// The recorded test vector is not reproduced.
    #[error(
        "model {org}/{version}: {model} model does not reproduce its test vector (max |delta| {delta:.3e})"
    )]
    TestVector {
        /// Org.
        org: String,
        /// Version.
        version: String,
        /// `failure`, `component` or `ttf`.
        model: &'static str,
        /// Largest difference.
        delta: f64,
    },
    /// The version's files could not be had from where models come from.
    #[error("model {org}/{version}: unavailable: {reason}")]
    Unavailable {
        /// Org.
        org: String,
        /// Version.
        version: String,
        /// Why.
        reason: String,
    },
    /// A batch's run took longer than the org's `prediction.timeout_ms`.
    #[error("model {org}/{version}: a batch of {rows} rows ran past its {timeout_ms} ms deadline")]
    Timeout {
        /// Org.
        org: String,
        /// Version.
        version: String,
        /// Rows in the batch.
        rows: usize,
        /// The deadline.
        timeout_ms: u64,
    },
    /// Scoring failed.
    #[error("model {org}/{version}: inference failed: {reason}")]
    Inference {
        /// Org.
        org: String,
        /// Version.
        version: String,
        /// ONNX Runtime's message.
        reason: String,
    },
}

/// What the models say about one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Probability that a failure starts within the horizon.
    pub probability: f64,
    /// Most likely component class and its probability (stage 2 only).
    pub component: Option<(usize, f64)>,
    /// Minutes to failure (stage 2 only).
    pub ttf_minutes: Option<f64>,
}

/// One model version, ready to score.
pub struct LoadedModel {
    /// Its metadata.
    pub meta: ModelMetadata,
    failure: Part,
    component: Part,
    ttf: Part,
    /// Bytes of its ONNX files (what the cache budgets).
    pub bytes: u64,
    /// Milliseconds the load and check took.
    pub load_ms: f64,
    /// The most important features (input index, normalized gain), most important
    /// first: what alerts explain a prediction with.
    pub importance: Arc<Vec<(usize, f64)>>,
    input: Vec<f32>,
    gated: Vec<usize>,
    fresh: bool,
    /// The current batch's run options (its deadline terminates them).
    run_options: Option<Arc<RunOptions>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("org", &self.meta.organization_id)
            .field("version", &self.meta.version)
            .field("bytes", &self.bytes)
            .finish()
    }
}

fn session(env: &Environment, path: &Path) -> Result<Session, ModelError> {
    let err = |e: ort::Error| ModelError::Session {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    // One intra-op thread: timely workers are the parallelism; batches keep ORT efficient.
    Session::builder(env)
        .map_err(err)?
        .with_intra_threads(1)
        .map_err(|e| err(e.into()))?
        .commit_from_file(path)
        .map_err(err)
}

impl LoadedModel {
    /// Load the version in `dir` and check it: its feature names must equal
    /// `expected_features` and its models must reproduce the recorded test vector.
    pub fn load(
        env: &Environment,
        dir: &Path,
        expected_features: &[String],
    ) -> Result<LoadedModel, ModelError> {
        let t0 = Instant::now();
        let meta_path = dir.join("metadata.json");
        let read = |path: &Path, reason: String| ModelError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let text =
            std::fs::read_to_string(&meta_path).map_err(|e| read(&meta_path, e.to_string()))?;
        let meta: ModelMetadata =
            serde_json::from_str(&text).map_err(|e| read(&meta_path, e.to_string()))?;
        if meta.feature_names != expected_features {
            let detail = if meta.feature_names.len() != expected_features.len() {
                format!(
                    "the model has {} features, the pipeline {}",
                    meta.feature_names.len(),
                    expected_features.len()
                )
            } else {
                let i = meta
                    .feature_names
                    .iter()
                    .zip(expected_features)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                format!(
                    "feature {i} is `{}` in the model, `{}` in the pipeline",
                    meta.feature_names[i], expected_features[i]
                )
            };
            return Err(ModelError::FeatureMismatch {
                org: meta.organization_id,
                version: meta.version,
                detail,
            });
        }
        let file = |role: &str| -> Result<PathBuf, ModelError> {
            let name = meta
                .onnx
                .files
                .get(role)
                .ok_or_else(|| read(&meta_path, format!("onnx.files has no `{role}`")))?;
            Ok(dir.join(name))
        };
        let mut bytes = 0;
        let mut open = |role: &'static str, output: &'static str| -> Result<Part, ModelError> {
            let p = file(role)?;
            let onnx = std::fs::read(&p).map_err(|e| read(&p, e.to_string()))?;
            bytes += onnx.len() as u64;
            let (trees, ort_because) = match TreeModel::from_onnx(&onnx, output) {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Ok(Part {
                role,
                output,
                session: session(env, &p)?,
                trees,
                ort_because,
                scratch: Vec::new(),
            })
        };
        let failure = open("failure", "probabilities")?;
        let component = open("component", "probabilities")?;
        let ttf = open("ttf", "variable")?;
        let mut m = LoadedModel {
            meta,
            failure,
            component,
            ttf,
            bytes,
            load_ms: 0.0,
            importance: Arc::new(Vec::new()),
            input: Vec::new(),
            gated: Vec::new(),
            fresh: true,
            run_options: None,
        };
        m.importance = Arc::new(top_importance(&m.meta, TOP_IMPORTANCE));
        m.check_engines();
        m.check_test_vector()?;
        m.load_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(m)
    }

    /// The rows the evaluator is checked on: the test vector's, and each of
    /// them again with every other feature missing (NaN) and with the others.
    fn check_rows(&self) -> (Vec<f32>, usize) {
        let f = self.meta.feature_names.len();
        let mut rows = Vec::new();
        let base: Vec<Vec<f32>> = self
            .meta
            .test_vector
            .input
            .iter()
            .map(|r| r.iter().map(|x| x.map_or(f32::NAN, |x| x as f32)).collect())
            .collect();
        for r in &base {
            rows.extend_from_slice(r);
            for parity in [0, 1] {
                rows.extend(
                    r.iter()
                        .enumerate()
                        .map(|(i, x)| if i % 2 == parity { f32::NAN } else { *x }),
                );
            }
        }
        let n = rows.len().checked_div(f).unwrap_or(0);
        (rows, n)
    }

    /// Keep the tree evaluator of each model only where it reproduces ONNX
    /// Runtime on the check rows within [`ENGINE_TOLERANCE`].
    fn check_engines(&mut self) {
        let f = self.meta.feature_names.len();
        let (rows, n) = self.check_rows();
        for part in [&mut self.failure, &mut self.component, &mut self.ttf] {
            let Some(trees) = part.trees.as_mut() else {
                continue;
            };
            if n == 0 {
                part.trees = None;
                part.ort_because = Some("no test vector rows to check the evaluator on".into());
                continue;
            }
            let reference = Self::run_ort(&mut part.session, &rows, n, f, part.output, None);
            let mut ours = Vec::new();
            let verdict = match (reference, trees.predict(&rows, n, f, &mut ours)) {
                (Err(e), _) => Err(format!("ONNX Runtime failed on the check rows: {e}")),
                (_, Err(e)) => Err(format!("the evaluator failed on the check rows: {e}")),
                (Ok(want), Ok(())) => {
                    let delta = want
                        .iter()
                        .zip(&ours)
                        .map(|(w, o)| (w - *o as f64).abs() / w.abs().max(1.0))
                        .fold(
                            0.0f64,
                            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
                        );
                    if want.len() != ours.len() {
                        Err(format!(
                            "{} outputs from the evaluator, {} from ONNX Runtime",
                            ours.len(),
                            want.len()
                        ))
                    } else if delta > ENGINE_TOLERANCE {
                        Err(format!(
                            "the evaluator differs from ONNX Runtime by {delta:.3e} (over {ENGINE_TOLERANCE:e})"
                        ))
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(why) = verdict {
                part.trees = None;
                part.ort_because = Some(why);
            }
        }
    }

    /// What scores each model (`failure`, `component`, `ttf`), and why ONNX
    /// Runtime does where it does.
    pub fn engines(&self) -> [(&'static str, Engine, Option<&str>); 3] {
        [&self.failure, &self.component, &self.ttf].map(|p| {
            let e = if p.trees.is_some() {
                Engine::Trees
            } else {
                Engine::OnnxRuntime
            };
            (p.role, e, p.ort_because.as_deref())
        })
    }

    /// Score every model with ONNX Runtime from now on (benches and tests
    /// compare the engines with it).
    pub fn use_onnx_runtime_only(&mut self) {
        for p in [&mut self.failure, &mut self.component, &mut self.ttf] {
            if p.trees.take().is_some() {
                p.ort_because = Some("ONNX Runtime asked for".into());
            }
        }
    }

    fn check_test_vector(&mut self) -> Result<(), ModelError> {
        let tv = self.meta.test_vector.clone();
        let rows: Vec<Vec<f64>> = tv
            .input
            .iter()
            .map(|r| r.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            .collect();
        let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
        let p = self.run_failure(&refs)?;
        let all: Vec<usize> = (0..refs.len()).collect();
        let comp = self.run_component(&refs, &all)?;
        let ttf = self.run_ttf(&refs, &all)?;
        let k = self.meta.components.len().max(1);
        let checks: [(&'static str, f64); 3] = [
            ("failure", max_delta(&p, &tv.failure_probability)),
            (
                "component",
                max_delta(
                    &comp,
                    &tv.component_probabilities
                        .iter()
                        .flatten()
                        .copied()
                        .collect::<Vec<_>>(),
                ),
            ),
            ("ttf", max_delta(&ttf, &tv.time_to_failure_minutes)),
        ];
        debug_assert_eq!(comp.len(), refs.len() * k);
        for (model, delta) in checks {
            // NaN deltas (a NaN output) fail too.
            if delta.is_nan() || delta > TEST_VECTOR_TOLERANCE {
                return Err(ModelError::TestVector {
                    org: self.meta.organization_id.clone(),
                    version: self.meta.version.clone(),
                    model,
                    delta,
                });
            }
        }
        Ok(())
    }

    fn infer_err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Inference {
            org: self.meta.organization_id.clone(),
            version: self.meta.version.clone(),
            reason: e.to_string(),
        }
    }

    fn fill(&mut self, rows: &[&[f64]], pick: Option<&[usize]>) {
        self.input.clear();
        match pick {
            None => rows
                .iter()
                .for_each(|r| self.input.extend(r.iter().map(|x| *x as f32))),
            Some(ix) => ix
                .iter()
                .for_each(|&i| self.input.extend(rows[i].iter().map(|x| *x as f32))),
        }
    }

    /// Score `n` rows of `f` features with the part's engine.
    fn run(
        part: &mut Part,
        input: &[f32],
        n: usize,
        f: usize,
        options: Option<&RunOptions>,
    ) -> Result<Vec<f64>, String> {
        match part.trees.as_mut() {
            Some(t) if n < TREES_BELOW_ROWS => {
                t.predict(input, n, f, &mut part.scratch)
                    .map_err(|e| e.to_string())?;
                Ok(part.scratch.iter().map(|x| *x as f64).collect())
            }
            _ => Self::run_ort(&mut part.session, input, n, f, part.output, options),
        }
    }

    fn run_ort(
        session: &mut Session,
        input: &[f32],
        n: usize,
        f: usize,
        output: &str,
        options: Option<&RunOptions>,
    ) -> Result<Vec<f64>, String> {
        let t = TensorRef::from_array_view(([n, f], input)).map_err(|e| e.to_string())?;
        let out = match options {
            Some(o) => session.run_with_options(ort::inputs![t], o),
            None => session.run(ort::inputs![t]),
        }
        .map_err(|e| e.to_string())?;
        let v = out
            .get(output)
            .ok_or_else(|| format!("the model has no output `{output}`"))?;
        let (_, data) = v.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok(data.iter().map(|x| *x as f64).collect())
    }

    fn run_failure(&mut self, rows: &[&[f64]]) -> Result<Vec<f64>, ModelError> {
        let f = self.meta.feature_names.len();
        self.fill(rows, None);
        let probs = Self::run(
            &mut self.failure,
            &self.input,
            rows.len(),
            f,
            self.run_options.as_deref(),
        )
        .map_err(|e| self.infer_err(e))?;
        // Column 1 of [N, 2] is the positive class.
        Ok(probs
            .chunks(2)
            .map(|c| c.get(1).copied().unwrap_or(f64::NAN))
            .collect())
    }

    fn run_component(&mut self, rows: &[&[f64]], pick: &[usize]) -> Result<Vec<f64>, ModelError> {
        let f = self.meta.feature_names.len();
        self.fill(rows, Some(pick));
        Self::run(
            &mut self.component,
            &self.input,
            pick.len(),
            f,
            self.run_options.as_deref(),
        )
        .map_err(|e| self.infer_err(e))
    }

    fn run_ttf(&mut self, rows: &[&[f64]], pick: &[usize]) -> Result<Vec<f64>, ModelError> {
        let f = self.meta.feature_names.len();
        self.fill(rows, Some(pick));
        Self::run(
            &mut self.ttf,
            &self.input,
            pick.len(),
            f,
            self.run_options.as_deref(),
        )
        .map_err(|e| self.infer_err(e))
    }

    /// The load time the first time it is asked (the batch that waited for the
    /// load reports it), 0 afterwards.
    pub fn take_fresh_load_ms(&mut self) -> f64 {
        if std::mem::take(&mut self.fresh) {
            self.load_ms
        } else {
            0.0
        }
    }

    /// Score a batch within `timeout` (None: no deadline): the failure model on
    /// every row, the component and time-to-failure models on the rows at or
    /// above the stage-2 gate. Past the deadline the run is terminated (ONNX
    /// Runtime checks between graph nodes, so one long node ends first) and a run
    /// that ended after it is a [`ModelError::Timeout`] whatever it returned.
    pub fn score(
        &mut self,
        rows: &[&[f64]],
        out: &mut Vec<Score>,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), ModelError> {
        out.clear();
        if rows.is_empty() {
            return Ok(());
        }
        let Some(timeout) = timeout else {
            return self.score_batch(rows, out);
        };
        let options = Arc::new(RunOptions::new().map_err(|e| self.infer_err(e))?);
        let t0 = Instant::now();
        let deadline = super::watchdog::Deadline::arm(t0 + timeout, options.clone());
        self.run_options = Some(options);
        let result = self.score_batch(rows, out);
        self.run_options = None;
        drop(deadline);
        if t0.elapsed() > timeout {
            out.clear();
            return Err(ModelError::Timeout {
                org: self.meta.organization_id.clone(),
                version: self.meta.version.clone(),
                rows: rows.len(),
                timeout_ms: timeout.as_millis() as u64,
            });
        }
        result
    }

    fn score_batch(&mut self, rows: &[&[f64]], out: &mut Vec<Score>) -> Result<(), ModelError> {
        let p = self.run_failure(rows)?;
        let gate = self.meta.thresholds.stage2_gate;
        let mut gated = std::mem::take(&mut self.gated);
        gated.clear();
        gated.extend((0..rows.len()).filter(|&i| p[i] >= gate));
        out.extend(p.iter().map(|&probability| Score {
            probability,
            component: None,
            ttf_minutes: None,
        }));
        if !gated.is_empty() {
            let comp = self.run_component(rows, &gated)?;
            let ttf = self.run_ttf(rows, &gated)?;
            let k = comp.len() / gated.len();
            for (j, &i) in gated.iter().enumerate() {
                let probs = &comp[j * k..(j + 1) * k];
                let best = probs
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |b, (c, &q)| if q > b.1 { (c, q) } else { b },
                    );
                out[i].component = Some(best);
                out[i].ttf_minutes = Some(ttf[j].max(0.0));
            }
        }
        self.gated = gated;
        Ok(())
    }
}

/// Features an alert's explanation considers (by importance).
pub const TOP_IMPORTANCE: usize = 12;

/// The `k` features of highest importance that are model inputs, as (input index,
/// importance), highest first, ties by index; features of zero importance are left out.
pub fn top_importance(meta: &ModelMetadata, k: usize) -> Vec<(usize, f64)> {
    let mut v: Vec<(usize, f64)> = meta
        .feature_names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let w = *meta.feature_importance.get(n)?;
            (w.is_finite() && w > 0.0).then_some((i, w))
        })
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

fn max_delta(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(
            0.0,
            |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
        )
}
