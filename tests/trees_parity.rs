//! The built-in tree-ensemble evaluator against ONNX Runtime (the reference) on
//! random ensembles — regressors, binary and three-class classifiers, every
//! split mode, missing values sent either way — and random rows with NaNs and
//! values exactly on thresholds: the same outputs within the tolerance a
//! version's load-time check uses.

use ort::session::Session;
use ort::value::TensorRef;
use prognos::onnx_runtime;
use prognos_dataflows::models::runner::ENGINE_TOLERANCE;
use prognos_dataflows::models::trees::TreeModel;
use prognos_dataflows::models::trees::writer::{NodeSpec, SplitSpec, TreeSpec, ensemble, model};
use proptest::prelude::*;

const MODES: [&str; 6] = [
    "BRANCH_LEQ",
    "BRANCH_LT",
    "BRANCH_GTE",
    "BRANCH_GT",
    "BRANCH_EQ",
    "BRANCH_NEQ",
];

/// What a tree is grown from: per node in breadth-first order, whether it
/// splits and how (feature, threshold index, mode, missing goes true), and a
/// leaf weight.
type NodeDraw = (bool, usize, usize, usize, bool, f32);

/// Grow a tree of at most `max_nodes` nodes from `draws`; leaf weights go to
/// `class`.
fn grow(draws: &[NodeDraw], features: usize, thresholds: &[f32], class: i64) -> TreeSpec {
    let max_nodes = draws.len().max(1);
    let mut splits: Vec<Option<SplitSpec>> = vec![None];
    let mut weights = Vec::new();
    let mut next = 0;
    while next < splits.len() {
        let (split, f, t, m, miss, w) = draws[next % draws.len()];
        if split && splits.len() + 2 <= max_nodes {
            let (yes, no) = (splits.len() as i64, splits.len() as i64 + 1);
            splits[next] = Some((
                (f % features) as i64,
                thresholds[t % thresholds.len()],
                MODES[m % MODES.len()].to_string(),
                miss,
                yes,
                no,
            ));
            splits.push(None);
            splits.push(None);
        } else {
            weights.push((next as i64, class, w));
        }
        next += 1;
    }
    TreeSpec { splits, weights }
}

/// The kinds of graph onnxmltools writes for LightGBM.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Regressor,
    Binary,
    ThreeClass,
}

fn graph(kind: Kind, trees: &[TreeSpec], features: i64) -> (Vec<u8>, &'static str, usize) {
    match kind {
        Kind::Regressor => {
            let e = ensemble(trees, false, 1, "NONE", "input", &["variable"]);
            (
                model(&[e], "input", features, &[], &[("variable", 1, Some(1))]),
                "variable",
                1,
            )
        }
        Kind::Binary | Kind::ThreeClass => {
            let (labels, post) = match kind {
                Kind::Binary => (2, "LOGISTIC"),
                _ => (3, "SOFTMAX"),
            };
            let e = ensemble(
                trees,
                true,
                labels,
                post,
                "input",
                &["label", "probabilities"],
            );
            (
                model(
                    &[e],
                    "input",
                    features,
                    &[],
                    &[("label", 7, None), ("probabilities", 1, Some(labels))],
                ),
                "probabilities",
                labels as usize,
            )
        }
    }
}

fn ort_scores(bytes: &[u8], output: &str, rows: &[f32], n: usize, f: usize) -> Vec<f32> {
    let env = onnx_runtime::init().expect("ONNX Runtime").environment;
    let mut s = Session::builder(&env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap();
    let t = TensorRef::from_array_view(([n, f], rows)).unwrap();
    let out = s.run(ort::inputs![t]).unwrap();
    out[output].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

fn case() -> impl Strategy<Value = (Kind, usize, Vec<Vec<NodeDraw>>, Vec<f32>, Vec<u8>)> {
    let kind = prop_oneof![
        Just(Kind::Regressor),
        Just(Kind::Binary),
        Just(Kind::ThreeClass)
    ];
    let draw = (
        any::<bool>(),
        0usize..16,
        0usize..8,
        0usize..6,
        any::<bool>(),
        -2.0f32..2.0,
    );
    (
        kind,
        1usize..7,
        prop::collection::vec(prop::collection::vec(draw, 1..32), 1..24),
        prop::collection::vec(-3.0f32..3.0, 8),
        // Per value: 0 NaN, 1 a threshold exactly, else random.
        prop::collection::vec(any::<u8>(), 1..400),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_evaluator_scores_as_onnx_runtime(
        (kind, features, draws, thresholds, picks) in case()
    ) {
        let classes = match kind { Kind::ThreeClass => 3, _ => 1 };
        let trees: Vec<TreeSpec> = draws
            .iter()
            .enumerate()
            .map(|(t, d)| grow(d, features, &thresholds, (t % classes) as i64))
            .collect();
        let (bytes, output, width) = graph(kind, &trees, features as i64);
        let n = picks.len().div_ceil(features);
        let rows: Vec<f32> = (0..n * features)
            .map(|i| {
                let p = picks[i % picks.len()].wrapping_add((i / picks.len()) as u8);
                match p % 5 {
                    0 => f32::NAN,
                    1 => thresholds[p as usize % thresholds.len()],
                    _ => (p as f32 - 128.0) / 40.0,
                }
            })
            .collect();
        let want = ort_scores(&bytes, output, &rows, n, features);
        // ONNX Runtime treats a binary classifier without a negative weight
        // apart; the evaluator leaves it to ONNX Runtime.
        let no_negative = trees.iter().flat_map(|t| &t.weights).all(|w| w.2 >= 0.0);
        if matches!(kind, Kind::Binary) && no_negative {
            let e = TreeModel::from_onnx(&bytes, output).unwrap_err();
            prop_assert!(e.to_string().contains("not supported"), "{e}");
            return Ok(());
        }
        // Nor a multi-class one where a class has no leaf weight.
        if matches!(kind, Kind::ThreeClass) && trees.len() < 3 {
            let e = TreeModel::from_onnx(&bytes, output).unwrap_err();
            prop_assert!(e.to_string().contains("not supported"), "{e}");
            return Ok(());
        }
        let mut ours = TreeModel::from_onnx(&bytes, output).unwrap();
        prop_assert_eq!(ours.width(), width);
        let mut got = Vec::new();
        ours.predict(&rows, n, features, &mut got).unwrap();
        prop_assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = (*g as f64 - *w as f64).abs() / (*w as f64).abs().max(1.0);
            prop_assert!(d <= ENGINE_TOLERANCE, "output {i}: ours {g}, ONNX Runtime {w} ({kind:?})");
        }
    }
}

/// A graph the evaluator does not handle is named so, and a loaded version
/// says which engine scores each model (the slow-model case of
/// `inference_parity` is the ONNX Runtime path end to end).
#[test]
fn graphs_beyond_tree_ensembles_are_left_to_onnx_runtime() {
    let e = ensemble(
        &[grow(&[(false, 0, 0, 0, false, 1.0)], 2, &[0.0], 0)],
        false,
        1,
        "NONE",
        "input",
        &["y"],
    );
    let abs = NodeSpec {
        op_type: "Abs".into(),
        inputs: vec!["y".into()],
        outputs: vec!["variable".into()],
        ..NodeSpec::default()
    };
    let bytes = model(&[e, abs], "input", 2, &[], &[("variable", 1, Some(1))]);
    let err = TreeModel::from_onnx(&bytes, "variable").unwrap_err();
    assert!(err.to_string().contains("Abs"), "{err}");
}
