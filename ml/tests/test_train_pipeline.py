"""End-to-end training on a small simulated run (3 orgs x 4 machines x 72 h, failure
rate 2): labels from failure signals equal labels from events, the split leaks nothing,
train.py writes every artifact with the documented metadata, the test vector is
reproduced by onnxruntime, the parity check catches a tampered model, and evaluate.py
reproduces train.py's validation metrics."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import pytest

ML = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ML))

from prognos_ml import labels as L  # noqa: E402
from prognos_ml import onnx_export as OX  # noqa: E402
from prognos_ml.common import load_org_settings, longest_window_ms, parse_time_ms, read_features  # noqa: E402

ORGS = ["acme-heat", "borealis-forge", "cobalt-thermal"]
ORG = "cobalt-thermal"  # the smallest feature set: fastest end-to-end
PY = sys.executable


@pytest.fixture(scope="module")
def sim(tmp_path_factory, prognos_bin, example_config):
    root = tmp_path_factory.mktemp("train")
    subprocess.run([str(prognos_bin), "simulate", "--orgs", "3", "--machines", "4", "--hours", "72", "--seed", "3",
                    "--failure-rate", "2", "--out", str(root / "sim")], check=True, capture_output=True)
    subprocess.run([str(prognos_bin), "features", "--config", str(example_config), "-w", "2",
                    "--input", *[str(root / "sim" / f"{o}.jsonl") for o in ORGS], "--out", str(root / "feats")],
                   check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def small_config(tmp_path_factory, example_config):
    """The example config with small failure models for ORG (40 rounds per
    ensemble member instead of 400): what these tests check does not depend on
    their size."""
    text = example_config.read_text()
    at = text.index(f"[orgs.{ORG}.training.hyperparameters]")
    head, tail = text[:at], text[at:]
    assert "\nnum_iterations = 400\n" in tail
    path = tmp_path_factory.mktemp("config") / "prognos.toml"
    path.write_text(head + tail.replace("\nnum_iterations = 400\n", "\nnum_iterations = 40\n", 1))
    return path


@pytest.fixture(scope="module")
def trained(sim, small_config):
    out = sim / "v1"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    p = subprocess.run([PY, str(ML / "train.py"), "--org", ORG, "--config", str(small_config),
                        "--features", str(sim / "feats" / f"{ORG}.parquet"), "--events", str(sim / "sim" / "events.jsonl"),
                        "--out", str(out), "--version", "v1", "--seed", "3"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    return out, lines


@pytest.mark.parametrize("org", ORGS)
def test_signal_labels_equal_event_labels(sim, example_config, org):
    s = load_org_settings(example_config, org)
    ft = read_features(sim / "feats" / f"{org}.parquet", org, keep=[f["signal"] for f in s.failure_signals])
    from_events = L.failures_from_events(sim / "sim" / "events.jsonl", org)
    from_signals = L.failures_from_signals(ft, s)
    assert len(from_events) > 0
    a = L.label_rows(ft.machine, ft.ts, from_events, s.horizon_ms)
    b = L.label_rows(ft.machine, ft.ts, from_signals, s.horizon_ms)
    assert (a.y == b.y).all() and (a.excluded == b.excluded).all()
    assert (a.component == b.component).all()
    np.testing.assert_array_equal(a.ttf_min, b.ttf_min)
    # the same failures (events ending after the data may differ only in their end)
    assert list(from_events.start) == list(from_signals.start)
    assert list(from_events.component) == list(from_signals.component)


def test_split_has_no_leakage(sim, example_config, trained):
    out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    s = load_org_settings(example_config, ORG)
    ft = read_features(sim / "feats" / f"{ORG}.parquet", ORG)
    gap = s.horizon_ms + longest_window_ms(ft.feature_names, s)
    assert gap >= s.horizon_ms + max(s.windows_s) * 1000
    train_end = parse_time_ms(meta["split"]["trainEnd"])
    vstart = parse_time_ms(meta["split"]["validationStart"])
    vend = parse_time_ms(meta["split"]["validationEnd"])
    assert vstart - train_end >= gap
    tr = ft.ts < train_end
    va = (ft.ts >= vstart) & (ft.ts < vend)
    assert not (tr & va).any()
    assert ft.ts[va].min() >= train_end + gap
    assert ft.ts[tr].max() < train_end
    lab = L.label_rows(ft.machine, ft.ts, L.failures_from_events(sim / "sim" / "events.jsonl", ORG), s.horizon_ms)
    assert meta["rows"]["train"] == int((tr & ~lab.excluded).sum())
    assert meta["rows"]["validation"] == int((va & ~lab.excluded).sum())
    assert meta["rows"]["excluded"] == int(lab.excluded.sum())
    # training labels look at most a horizon ahead: no train label sees a validation row
    assert train_end + s.horizon_ms <= vstart


def test_artifacts_and_metadata(sim, trained):
    out, lines = trained
    for f in ["failure.onnx", "component.onnx", "ttf.onnx", "metadata.json", "feature_importance.json",
              "validation_metrics.json", "training_log.json", "report.png"]:
        assert (out / f).stat().st_size > 0, f
    assert all({"stage", "message"} <= set(x) for x in lines)
    assert lines[-1]["stage"] == "done" and "auc" in lines[-1]["metrics"]
    assert {"load", "label", "split", "train", "export", "parity", "metrics"} <= {x["stage"] for x in lines}

    text = (out / "metadata.json").read_text()
    assert "NaN" not in text
    meta = json.loads(text)
    keys = {"organizationId", "version", "createdAt", "featureNames", "components", "generalComponent", "thresholds",
            "horizonMinutes", "timeToFailureMinutes", "dataRange", "split", "rows", "hyperparameters", "metrics",
            "featureImportance", "testVector", "onnx"}
    assert keys <= set(meta)
    assert meta["organizationId"] == ORG and meta["version"] == "v1"
    import pyarrow.parquet as pq
    cols = pq.ParquetFile(sim / "feats" / f"{ORG}.parquet").schema_arrow.names
    assert meta["featureNames"] == [c for c in cols if c not in ("org", "machine", "ts")]
    assert meta["generalComponent"] == "General Equipment"
    assert meta["thresholds"] == {"failure": 0.6, "confidence": 0.7, "stage2Gate": 0.4, "immediate": 0.9}
    assert meta["horizonMinutes"] == 10 and meta["timeToFailureMinutes"] == 8
    comps = meta["components"]
    assert list(comps) == [str(i) for i in range(len(comps))]
    assert set(comps.values()) <= {"Heating System", "Temperature Sensing", "Quench System", "Atmosphere Control"}
    assert {"start", "end"} <= set(meta["dataRange"])
    assert {"trainEnd", "validationStart", "validationEnd"} <= set(meta["split"])
    assert {"train", "validation", "trainPositives", "validationPositives", "excluded"} <= set(meta["rows"])
    assert meta["rows"]["trainPositives"] > 0 and meta["rows"]["validationPositives"] > 0
    m = meta["metrics"]
    for k in ["accuracy", "precision", "recall", "auc", "confusionMatrix", "eventRecall", "medianLeadMinutes",
              "p10LeadMinutes", "falseAlarmsPerMachineDay", "failures", "machineDays"]:
        assert k in m, k
    assert m["failures"] > 0 and m["machineDays"] > 0 and 0 <= m["eventRecall"] <= 1
    assert m["falseAlarmsPerMachineDay"] >= 0 and 0.5 < m["auc"] <= 1
    assert np.array(m["confusionMatrix"]).sum() == meta["rows"]["validation"]
    fi = meta["featureImportance"]
    assert list(fi) == meta["featureNames"] and abs(sum(fi.values()) - 1) < 1e-9
    # the example config averages three failure models for this org (training.ensemble)
    hp = meta["hyperparameters"]
    assert hp["ensemble"] == 3 and hp["ensembleSeeds"] == [3, 1003, 2003] and hp["seed"] == 3
    members = [n for n in onnx.load(out / "failure.onnx").graph.node if n.op_type == "TreeEnsembleClassifier"]
    assert len(members) == 3
    log = json.loads((out / "training_log.json").read_text())["entries"]
    assert [e.get("seed") for e in log if e.get("model") == "failure"] == [3, 1003, 2003]
    assert meta["onnx"] == {**meta["onnx"], "opset": 15, "input": "input",
                            "files": {"failure": "failure.onnx", "component": "component.onnx", "ttf": "ttf.onnx"}}


def test_test_vector_reproduced_by_onnxruntime(trained):
    out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    tv = meta["testVector"]
    X = np.array([[np.nan if v is None else v for v in row] for row in tv["input"]], dtype=np.float32)
    assert X.shape == (8, len(meta["featureNames"]))
    assert np.isnan(X).any()
    import onnxruntime as ort
    outs = {}
    for kind, f in meta["onnx"]["files"].items():
        sess = ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
        i = sess.get_inputs()[0]
        assert i.name == "input" and i.shape[1] == len(meta["featureNames"])
        assert i.type == "tensor(float)"
        names = [o.name for o in sess.get_outputs()]
        outs[kind] = dict(zip(names, sess.run(None, {"input": X})))
    assert set(outs["failure"]) == {"label", "probabilities"} and outs["failure"]["label"].dtype == np.int64
    assert outs["failure"]["probabilities"].shape == (8, 2)
    assert outs["component"]["probabilities"].shape == (8, len(meta["components"]))
    assert outs["ttf"]["variable"].shape == (8, 1)
    np.testing.assert_allclose(outs["failure"]["probabilities"][:, 1], tv["failureProbability"], atol=1e-5)
    np.testing.assert_allclose(outs["component"]["probabilities"], tv["componentProbabilities"], atol=1e-5)
    np.testing.assert_allclose(outs["ttf"]["variable"][:, 0], tv["timeToFailureMinutes"], atol=1e-5)


def _tamper_leaf(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for node in m.graph.node:
        for a in node.attribute:
            if a.name in ("class_weights", "target_weights"):
                w = list(a.floats)
                # the leaf a validation row is most likely to reach: change all leaves of tree 0
                w = [v + 0.5 for v in w[:64]] + w[64:]
                del a.floats[:]
                a.floats.extend(w)
                return m
    raise AssertionError("no tree ensemble found")


def test_parity_check_rejects_tampered_models(sim, trained):
    import lightgbm  # noqa: F401
    out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    ft = read_features(sim / "feats" / f"{ORG}.parquet", ORG)
    X = ft.X[-3000:]
    good = {k: onnx.load(out / f) for k, f in meta["onnx"]["files"].items()}
    refs = {k: OX.onnx_outputs(k, good[k], X) for k in good}
    for k in good:  # the untampered models pass against their own outputs
        assert OX.parity_check(k, refs[k], good[k], X) <= 1e-6
    for k in ("failure", "ttf"):
        with pytest.raises(OX.ParityError, match=f"{k} model"):
            OX.parity_check(k, refs[k], _tamper_leaf(good[k]), X)
    # a changed split threshold
    m = onnx.ModelProto()
    m.CopyFrom(good["failure"])
    for node in m.graph.node:
        for a in node.attribute:
            if a.name == "nodes_values":
                v = np.array(a.floats)
                v[:200] = v[:200] * 0.9 - 1.0
                del a.floats[:]
                a.floats.extend(v.tolist())
    with pytest.raises(OX.ParityError, match="failure model"):
        OX.parity_check("failure", refs["failure"], m, X)
    # a swapped file: the ttf model where the failure model should be
    with pytest.raises((OX.ParityError, Exception)):
        OX.parity_check("failure", refs["failure"], good["ttf"], X)
    # and the real LightGBM booster of a fresh model against a tampered export
    import lightgbm as lgb
    y = (np.nan_to_num(X[:, 0]) > np.nanmedian(X[:, 0])).astype(int)
    b = OX.float32_exact(lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 7},
                                   lgb.Dataset(X, label=y), num_boost_round=5))
    conv = OX.convert(b, X.shape[1], "t")
    Xn = X.copy()
    Xn[::7, ::3] = np.nan
    assert OX.parity_check("failure", b.predict(Xn), conv, Xn) <= 1e-4
    with pytest.raises(OX.ParityError, match=r"failure model: max \|delta\|"):
        OX.parity_check("failure", b.predict(Xn), _tamper_leaf(conv), Xn)


def test_evaluate_reproduces_validation_metrics(sim, small_config, trained):
    out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    p = subprocess.run([PY, str(ML / "evaluate.py"), "--version-dir", str(out),
                        "--features", str(sim / "feats" / f"{ORG}.parquet"),
                        "--events", str(sim / "sim" / "events.jsonl"), "--config", str(small_config), "--org", ORG,
                        "--from", meta["split"]["validationStart"], "--to", meta["split"]["validationEnd"]],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["metrics"]
    want = json.loads((out / "validation_metrics.json").read_text())["metrics"]
    for k, v in meta["metrics"].items():
        if k in ("componentAccuracy", "ttfMaeMinutes"):
            continue
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-12) if isinstance(v, float) else got[k] == v, k
    assert got == {k: v for k, v in want.items() if k not in ("componentAccuracy", "ttfMaeMinutes")}


def test_train_from_failure_signals_and_feedback(sim, small_config, tmp_path):
    """No --events: labels from failure_signals; feedback is accepted and counted."""
    fb = tmp_path / "feedback.jsonl"
    fb.write_text("\n".join(json.dumps(a) for a in [
        {"organizationId": ORG, "type": "PREDICTIVE", "isAccurate": False, "machineId": "CT-F01",
         "ts": "2024-01-01T12:00:00.000Z", "component": "Heating System"},
        {"organizationId": ORG, "type": "PREDICTIVE", "isAccurate": True, "machineId": "CT-F02",
         "ts": "2024-01-01T13:00:00.000Z", "component": "Quench System"}]) + "\n")
    out = tmp_path / "v2"
    p = subprocess.run([PY, str(ML / "train.py"), "--org", ORG, "--config", str(small_config),
                        "--features", str(sim / "feats" / f"{ORG}.parquet"), "--feedback", str(fb),
                        "--out", str(out), "--version", "v2", "--no-report"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["labels"]["source"] == "failure_signals"
    assert meta["labels"]["feedback"]["alertsUsed"] == 2


@pytest.mark.parametrize("value, shown", [("0", "0"), ("9", "9"), ("true", "True"), ("2.0", "2.0")])
def test_bad_ensemble_size_is_refused(example_config, tmp_path, value, shown):
    text = example_config.read_text()
    at = text.index("[orgs.cobalt-thermal.training]\n")
    head, tail = text[:at], text[at:]
    assert "\nensemble = 3\n" in tail
    text = head + tail.replace("\nensemble = 3\n", f"\nensemble = {value}\n", 1)
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(L.TrainError, match=rf"orgs\.cobalt-thermal\.training\.ensemble: must be an integer in 1\.\.=8, got {shown}$"):
        load_org_settings(tmp_path / "c.toml", ORG)


def test_errors_go_to_stderr_with_nonzero_exit(sim, example_config, tmp_path):
    p = subprocess.run([PY, str(ML / "train.py"), "--org", "no-such-org", "--config", str(example_config),
                        "--features", str(sim / "feats" / f"{ORG}.parquet"), "--out", str(tmp_path / "x"),
                        "--version", "v"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "no-such-org" in p.stderr
