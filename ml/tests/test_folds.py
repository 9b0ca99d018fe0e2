"""Machine-grouped, time-respecting folds against a row-by-row reference on random
machines and times; the intervals against known values; and train.py's validation
figures on a small synthetic table (no prognos binary needed)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ML = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ML))

from prognos_ml import folds as F  # noqa: E402
from prognos_ml import metrics as M  # noqa: E402
from prognos_ml.common import TrainError, load_org_settings  # noqa: E402

MIN = 60_000


def random_rows(rng):
    """Machines with their own start, length and irregular spacing, rows shuffled."""
    n_m = int(rng.integers(1, 12))
    machine, ts = [], []
    for j in range(n_m):
        t0 = int(rng.integers(0, 3000)) * MIN
        n = int(rng.integers(1, 400))
        t = t0 + np.cumsum(rng.integers(1, 5 * MIN, size=n))
        machine += [f"m{j:02d}"] * n
        ts.append(t)
    machine = np.array(machine, dtype=object)
    ts = np.concatenate(ts).astype(np.int64)
    perm = rng.permutation(len(ts))
    return machine[perm], ts[perm]


def reference(machine, ts, settings, groups):
    """Row by row: fold i validates group i in the window, trains on the other groups and on
    group i before the window minus the gap."""
    start, end = int(ts.min()), int(ts.max())
    vstart = start + int(round((1 - settings.validation_fraction) * (end - start)))
    out = []
    for group in groups:
        tr, va = [], []
        for r, (m, t) in enumerate(zip(machine, ts)):
            if m in group:
                if t >= vstart:
                    va.append(r)
                elif t < vstart - settings.gap_ms:
                    tr.append(r)
            else:
                tr.append(r)
        out.append((tr, va))
    return out


def test_grouped_folds_never_put_a_machines_future_in_its_own_training_fold():
    checked = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        machine, ts = random_rows(rng)
        settings = F.FoldSettings(folds=int(rng.integers(0, 7)), gap_ms=int(rng.integers(0, 600)) * MIN,
                                  validation_fraction=float(rng.uniform(0.05, 0.95)), seed=seed)
        failures = ({m: int(rng.integers(0, 4)) for m in set(machine)} if seed % 2 else None)
        try:
            folds = F.grouped_folds(machine, ts, settings, failures)
        except TrainError as e:
            assert "no training time" in str(e)
            start, end = ts.min(), ts.max()
            assert start + round((1 - settings.validation_fraction) * (end - start)) - settings.gap_ms <= start
            continue
        names = sorted(set(machine))
        k = min(settings.folds, len(names))
        if k < 2:
            assert folds == []
            continue
        assert len(folds) == k and all(f.machines for f in folds)
        # every machine in exactly one group
        assert sorted(m for f in folds for m in f.machines) == names
        for f in folds:
            assert not np.intersect1d(f.train, f.validation).size
            assert (np.diff(f.train) > 0).all() and (np.diff(f.validation) > 0).all()
            for m in names:
                val_ts = ts[f.validation][machine[f.validation] == m]
                if not len(val_ts):
                    continue
                checked += 1
                train_ts = ts[f.train][machine[f.train] == m]
                # the property: nothing of the machine at or after its first validation row minus the gap
                assert not (train_ts >= val_ts.min() - settings.gap_ms).any(), (seed, f.index, m)
        # the same folds as the row-by-row definition
        ref = reference(machine, ts, settings, [f.machines for f in folds])
        for f, (tr, va) in zip(folds, ref):
            assert f.train.tolist() == tr and f.validation.tolist() == va
        # deterministic, and the same rows whatever their order
        again = F.grouped_folds(machine, ts, settings, failures)
        assert [f.machines for f in again] == [f.machines for f in folds]
        perm = rng.permutation(len(ts))
        shuffled = F.grouped_folds(machine[perm], ts[perm], settings, failures)
        for a, b in zip(folds, shuffled):
            assert a.machines == b.machines
            assert sorted(zip(machine[a.train], ts[a.train])) == sorted(zip(machine[perm][b.train], ts[perm][b.train]))
    assert checked > 500


def test_groups_balance_failures_then_machines():
    names = [f"m{i}" for i in range(10)]
    failures = {"m0": 5, "m1": 4, "m2": 1, "m3": 1, "m4": 1, "m5": 1, "m6": 0, "m7": 0, "m8": 0, "m9": 0}
    for seed in range(20):
        groups = F.machine_groups(names, 3, seed, failures)
        load = [sum(failures[m] for m in g) for g in groups]
        assert sorted(load) == [4, 4, 5], (seed, groups)
        assert sorted(len(g) for g in groups) == [3, 3, 4], (seed, groups)
        assert F.machine_groups(names, 3, seed, failures) == groups
    # no failures given: sizes differ by at most one, and the seed changes the deal
    deals = {tuple(map(tuple, F.machine_groups(names, 3, seed))) for seed in range(10)}
    assert len(deals) > 1
    assert all(sorted(len(g) for g in d) == [3, 3, 4] for d in deals)


def test_fewer_than_two_folds_or_machines_is_no_folds():
    ts = np.arange(100, dtype=np.int64) * MIN
    two = np.array(["a", "b"] * 50, dtype=object)
    assert F.grouped_folds(two, ts, F.FoldSettings(folds=1, gap_ms=0)) == []
    assert F.grouped_folds(np.array(["a"] * 100, dtype=object), ts, F.FoldSettings(folds=3, gap_ms=0)) == []
    assert len(F.grouped_folds(two, ts, F.FoldSettings(folds=3, gap_ms=0))) == 2
    with pytest.raises(TrainError, match="no training time"):
        F.grouped_folds(two, ts, F.FoldSettings(folds=2, gap_ms=60 * MIN))


def test_wilson_and_poisson_intervals():
    assert M.wilson_interval(0, 0) is None
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = M.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = M.wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    # few events, wide interval; many, narrow
    assert np.diff(M.wilson_interval(3, 4))[0] > 3 * np.diff(M.wilson_interval(300, 400))[0]
    # Garwood: 0 events -> [0, 3.689], 5 events -> [1.6235, 11.668], per unit exposure
    lo, hi = M.poisson_rate_interval(0, 1.0)
    assert lo == 0.0 and hi == pytest.approx(3.6889, abs=1e-3)
    lo, hi = M.poisson_rate_interval(5, 2.0)
    assert (lo, hi) == (pytest.approx(1.6235 / 2, abs=1e-3), pytest.approx(11.6683 / 2, abs=1e-3))
    assert M.poisson_rate_interval(3, 0.0) is None


def _result(failures, detected, false_alarms, days, cm, leads):
    return {"failures": failures, "detectedFailures": detected, "falseAlarms": false_alarms,
            "alarmEpisodes": false_alarms + detected, "machineDays": days, "confusionMatrix": cm,
            "leadMinutes": leads}


def test_pooled_figures_sum_the_counts():
    a = _result(3, 2, 1, 2.0, [[90, 2], [3, 5]], [4.0, 6.0])
    b = _result(4, 1, 3, 4.0, [[80, 4], [6, 10]], [2.0])
    f = M.figures(M.pool([a, b]))
    assert f["failures"] == 7
    assert f["eventRecall"] == {"value": 3 / 7, "detected": 3, "failures": 7, "interval95": M.wilson_interval(3, 7)}
    fa = f["falseAlarmsPerMachineDay"]
    assert (fa["falseAlarms"], fa["machineDays"], fa["value"]) == (4, 6.0, 4 / 6)
    assert fa["interval95"] == M.poisson_rate_interval(4, 6.0)
    assert f["rowPrecision"]["truePositiveRows"] == 15 and f["rowPrecision"]["alarmRows"] == 21
    assert f["rowRecall"]["positiveRows"] == 24
    assert f["medianLeadMinutes"]["value"] == 4.0
    assert f["alarmPrecision"]["trueAlarms"] == 3 and f["alarmPrecision"]["alarmEpisodes"] == 7
    assert "auc" not in f
    # every figure carries the number of failures it rests on
    assert all(v["failures"] == 7 for k, v in f.items() if isinstance(v, dict))
    assert M.figures(M.pool([]))["eventRecall"]["value"] is None


def _config(tmp_path, training: str) -> pathlib.Path:
    p = tmp_path / "c.toml"
    p.write_text(f"""
[orgs.syn.prediction]
failure_threshold = 0.5
horizon_minutes = 10

[orgs.syn.training]
{training}

[orgs.syn.training.hyperparameters]
num_iterations = 15
num_leaves = 7
min_data_in_leaf = 5
""")
    return p


def test_settings_read_folds_and_min_events(tmp_path):
    s = load_org_settings(_config(tmp_path, ""), "syn")
    assert s.validation_folds is None and s.min_validation_events == 5
    s = load_org_settings(_config(tmp_path, "validation_folds = 4\nmin_validation_events = 12"), "syn")
    assert s.validation_folds == 4 and s.min_validation_events == 12
    for bad in ("validation_folds = -1", "validation_folds = 2.0", "min_validation_events = true"):
        with pytest.raises(TrainError, match=r"orgs\.syn\.training\.(validation_folds|min_validation_events)"):
            load_org_settings(_config(tmp_path, bad), "syn")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """6 machines x 2 days at one row a minute; a failure every ~5 h per machine, announced
    by a ramp of one feature over the 10 minutes before it."""
    root = tmp_path_factory.mktemp("syn")
    rng = np.random.default_rng(7)
    frames, events = [], []
    for j in range(6):
        m = f"M{j}"
        ts = np.arange(2 * 24 * 60, dtype=np.int64) * MIN + 1_700_000_000_000
        x = rng.normal(size=len(ts))
        t = 30 * MIN + int(rng.integers(0, 120)) * MIN
        while ts[0] + t < ts[-1] - 20 * MIN:
            start = int(ts[0] + t)
            i = int(np.searchsorted(ts, start))
            x[max(0, i - 10):i] += np.linspace(1, 4, i - max(0, i - 10))
            events.append({"organizationId": "syn", "machineId": m, "component": "General Equipment",
                           "start": start, "end": start + 10 * MIN})
            t += int(rng.integers(3 * 60, 7 * 60)) * MIN
        frames.append(pd.DataFrame({"org": "syn", "machine": m, "ts": ts,
                                    "x_rolling_600s_mean": x.astype(np.float32),
                                    "noise": rng.normal(size=len(ts)).astype(np.float32)}))
    pq.write_table(pa.Table.from_pandas(pd.concat(frames, ignore_index=True), preserve_index=False),
                   root / "syn.parquet")
    (root / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root


def _train(root, config, out, *extra):
    p = subprocess.run([sys.executable, str(ML / "train.py"), "--org", "syn", "--config", str(config),
                        "--features", str(root / "syn.parquet"), "--events", str(root / "events.jsonl"),
                        "--out", str(out), "--version", "v1", "--threads", "1", *extra],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert p.returncode == 0, p.stderr
    return [json.loads(x) for x in p.stdout.splitlines()]


def test_train_reports_holdout_and_fold_figures(synthetic, tmp_path):
    config = _config(tmp_path, "validation_folds = 2\nmin_validation_events = 8")
    lines = _train(synthetic, config, tmp_path / "v1", "--folds", "3")
    meta = json.loads((tmp_path / "v1" / "metadata.json").read_text())
    # the holdout's metrics block is as before
    assert {"accuracy", "precision", "recall", "auc", "confusionMatrix", "eventRecall", "medianLeadMinutes",
            "p10LeadMinutes", "falseAlarmsPerMachineDay", "failures", "machineDays"} <= set(meta["metrics"])
    v = meta["validation"]
    assert v == json.loads((tmp_path / "v1" / "validation_metrics.json").read_text())["validation"]
    assert v["minEvents"] == 8 and v["confidence"] == 0.95
    h = v["holdout"]
    assert h["failures"] == meta["metrics"]["failures"] > 0
    assert v["enoughEvents"] == (h["failures"] >= 8)
    assert h["eventRecall"]["value"] == meta["metrics"]["eventRecall"]
    assert h["eventRecall"]["interval95"] == M.wilson_interval(h["eventRecall"]["detected"], h["failures"])
    assert h["range"]["from"] == meta["split"]["validationStart"]
    folds = v["folds"]
    assert folds["configured"] == 3 and folds["k"] == 3 and len(folds["perFold"]) == 3  # --folds wins
    assert sorted(m for f in folds["perFold"] for m in f["machines"]) == [f"M{j}" for j in range(6)]
    done = [f for f in folds["perFold"] if "skipped" not in f]
    assert done, folds["perFold"]
    pooled = folds["pooled"]
    assert pooled["failures"] == sum(f["failures"] for f in done)
    assert pooled["eventRecall"]["detected"] == sum(f["eventRecall"]["detected"] for f in done)
    assert pooled["falseAlarmsPerMachineDay"]["falseAlarms"] == sum(
        f["falseAlarmsPerMachineDay"]["falseAlarms"] for f in done)
    # the folds validate the later half of every machine: more failures than the holdout's fifth
    assert pooled["failures"] > h["failures"]
    assert folds["enoughEvents"] == (pooled["failures"] >= 8)
    for f in done + [h, pooled]:
        for name, fig in f.items():
            if isinstance(fig, dict) and "value" in fig:
                assert fig["failures"] == f["failures"], name
    lo, hi = pooled["eventRecall"]["interval95"]
    assert lo <= pooled["eventRecall"]["value"] <= hi
    assert [x["fold"] for x in lines if x["stage"] == "folds" and "fold" in x] == [0, 1, 2]
    assert (tmp_path / "v1" / "report.png").stat().st_size > 0


def test_train_folds_from_the_org_setting_or_off(synthetic, tmp_path):
    _train(synthetic, _config(tmp_path, "validation_folds = 2"), tmp_path / "a", "--no-report")
    folds = json.loads((tmp_path / "a" / "metadata.json").read_text())["validation"]["folds"]
    assert folds["k"] == 2 and len(folds["perFold"]) == 2
    _train(synthetic, _config(tmp_path, "validation_folds = 2"), tmp_path / "b", "--no-report", "--folds", "0")
    v = json.loads((tmp_path / "b" / "metadata.json").read_text())["validation"]
    assert v["folds"]["k"] == 0 and v["folds"]["pooled"] is None and "disabled" in v["folds"]
    assert v["minEvents"] == 5 and v["holdout"]["failures"] > 0
