"""ONNX details of the training side: float32-exact thresholds and the constant
component model used when only one component was seen."""

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from prognos_ml import onnx_export as OX  # noqa: E402


def test_float32_exact_thresholds_make_onnx_match_lightgbm():
    import lightgbm as lgb
    rng = np.random.default_rng(3)
    # pairs of adjacent float32 values (a, nextafter(a)): LightGBM splits between them at a
    # double midpoint whose nearest float32 is a or b, so rounding-to-nearest thresholds send
    # one of them the wrong way in ONNX; the label depends on which of the pair a row holds
    base = (900 + np.arange(40) * 0.37).astype(np.float32)
    pair = np.stack([base, np.nextafter(base, np.float32(np.inf))], axis=1)
    k = rng.integers(0, 40, size=4000)
    upper = rng.integers(0, 2, size=4000)
    X = np.empty((4000, 3), dtype=np.float32)
    X[:, 0] = pair[k, upper]
    X[:, 1] = rng.normal(size=4000).astype(np.float32)
    X[:, 2] = np.where(rng.random(4000) < 0.1, np.nan, rng.normal(size=4000)).astype(np.float32)
    y = upper
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 63, "min_data_in_leaf": 2,
              "max_bin": 1023, "seed": 1}
    raw = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=30)
    exact = OX.float32_exact(raw)
    # identical decisions on float32 inputs
    np.testing.assert_array_equal(raw.predict(X), exact.predict(X))
    conv = OX.convert(exact, X.shape[1], "t")
    # without the fix the plain conversion disagrees
    import pytest
    with pytest.raises(OX.ParityError):
        OX.parity_check("failure", raw.predict(X), OX.convert(raw, X.shape[1], "t"), X)
    assert OX.parity_check("failure", exact.predict(X), conv, X) <= 1e-5


def test_constant_component_model():
    m = OX.constant_classifier(5, "c")
    X = np.full((4, 5), np.nan, dtype=np.float32)
    probs = OX.run(m, X, "probabilities")
    labels = OX.run(m, X, "label")
    assert probs.shape == (4, 1) and (probs == 1.0).all()
    assert labels.dtype == np.int64 and (labels == 0).all()
    assert OX.parity_check("component", np.ones((4, 1)), m, X) == 0.0


def test_ensemble_exports_the_mean_probability():
    import lightgbm as lgb

    from prognos_ml import models as MD
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) + rng.normal(scale=0.8, size=3000)) > 0.8).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 15, "bagging_fraction": 0.7,
              "bagging_freq": 1, "feature_fraction": 0.7}
    boosters = [OX.float32_exact(lgb.train({**params, "seed": MD.member_seed(11, i)}, lgb.Dataset(X, label=y),
                                           num_boost_round=20)) for i in range(3)]
    ens = MD.Ensemble(boosters)
    m = OX.convert_failure(boosters, X.shape[1], "e")
    assert sum(n.op_type == "TreeEnsembleClassifier" for n in m.graph.node) == 3
    # the graph averages the members' probabilities ...
    mean = np.mean([b.predict(X) for b in boosters], axis=0)
    assert OX.parity_check("failure", mean, m, X) <= 1e-5
    np.testing.assert_array_equal(ens.predict(X), mean)
    # ... which is none of the members alone
    for b in boosters:
        assert np.abs(b.predict(X) - mean).max() > 1e-3
    # same outputs as a single converted model: label is P >= 0.5 up to ties, probabilities [N, 2]
    probs = OX.run(m, X, "probabilities")
    assert probs.shape == (len(X), 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-6)
    labels = OX.run(m, X, "label")
    assert labels.dtype == np.int64 and (labels == (probs[:, 1] > probs[:, 0])).all()
    # importances: each member normalised, then averaged
    fi = ens.feature_importance()
    assert abs(fi.sum() - 1) < 1e-9 and fi[0] > fi[5]
    # an ensemble of one is the plain model
    one = OX.convert_failure(boosters[:1], X.shape[1], "one")
    assert [n.op_type for n in one.graph.node] == [n.op_type for n in OX.convert(boosters[0], X.shape[1], "x").graph.node]
    assert OX.parity_check("failure", boosters[0].predict(X), one, X) <= 1e-5
