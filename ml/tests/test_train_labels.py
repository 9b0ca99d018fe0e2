"""Unit tests of the training definitions on hand-made data: labels at the horizon
edges, exclusion inside failures, failure-signal edges, feedback, the time split, the
event metrics and the bounded search."""

import json
import sys
import pathlib

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from prognos_ml import labels as L  # noqa: E402
from prognos_ml import metrics as M  # noqa: E402
from prognos_ml import models as MD  # noqa: E402
from prognos_ml.common import FeatureTable, OrgSettings  # noqa: E402

MIN = 60_000
H = 10 * MIN


def failures(*rows):
    return L._failure_frame([(m, c, s, e, True) for m, c, s, e in rows])


def grid(machine="m1", n=200, step=30_000, t0=0):
    ts = t0 + np.arange(n, dtype=np.int64) * step
    return np.array([machine] * n, dtype=object), ts


def test_horizon_edges():
    machine, ts = grid()
    start = 60 * MIN  # a row sits exactly at start and at start - horizon
    lab = L.label_rows(machine, ts, failures(("m1", "Heating", start, start + 20 * MIN)), H)
    at = {int(t): i for i, t in enumerate(ts)}
    assert lab.y[at[start - H]] == 1, "failure starting exactly at t + horizon is positive"
    assert lab.ttf_min[at[start - H]] == pytest.approx(10.0)
    assert lab.y[at[start - H - 30_000]] == 0, "just beyond the horizon is negative"
    assert lab.y[at[start - 30_000]] == 1 and lab.component[at[start - 30_000]] == "Heating"
    assert lab.ttf_min[at[start - 30_000]] == pytest.approx(0.5)
    # a failure starting at t: not positive for t (and t is inside the failure: excluded)
    assert lab.excluded[at[start]]
    assert not lab.real_positive[at[start]]
    # inside [start, end) excluded, end itself not
    inside = (ts >= start) & (ts < start + 20 * MIN)
    assert (lab.excluded == inside).all()
    assert not lab.excluded[at[start + 20 * MIN]]
    # positives are exactly the rows in [start - h, start)
    assert ((lab.y == 1) & ~lab.excluded).sum() == 20


def test_failure_starting_at_t_not_positive_without_exclusion_overlap():
    # single row at t == start of another machine's failure: no effect across machines
    m = np.array(["a", "a", "b"], dtype=object)
    ts = np.array([0, 30_000, 30_000], dtype=np.int64)
    lab = L.label_rows(m, ts, failures(("b", "X", 30_000, 90_000)), H)
    assert list(lab.y[:2]) == [0, 0] and not lab.excluded[:2].any()
    assert lab.excluded[2] and not lab.real_positive[2]


def test_earliest_following_failure_wins_and_overlaps_excluded():
    machine, ts = grid()
    f = failures(("m1", "A", 30 * MIN, 35 * MIN), ("m1", "B", 33 * MIN, 50 * MIN))
    lab = L.label_rows(machine, ts, f, H)
    i = int(np.searchsorted(ts, 25 * MIN))
    assert lab.component[i] == "A" and lab.ttf_min[i] == pytest.approx(5.0)
    assert lab.excluded[(ts >= 30 * MIN) & (ts < 50 * MIN)].all()


def settings(**kw):
    base = dict(org="o", failure_threshold=0.85, confidence_threshold=0.7, stage2_gate=0.425,
                horizon_minutes=10, time_to_failure_minutes=8,
                component_mapping={"0": "General", "1": "Heating", "2": "Sensing"},
                general_component="General",
                failure_signals=[{"signal": "heater_fault", "component": "Heating"},
                                 {"signal": "tc_fault", "component": "Sensing"}],
                validation_split=0.2, hyperparameters={}, lags_s=[60], windows_s=[600], lag_tolerance_ms=60_000)
    base.update(kw)
    return OrgSettings(**base)


def test_failures_from_signals_rising_and_falling_edges():
    machine, ts = grid(n=20)
    heater = np.zeros(20)
    heater[5:9] = 1.0          # rising edge at row 5, falling at row 9
    heater[7] = np.nan         # a gap inside the run carries the last value
    heater[15:] = 1.0          # runs to the end: end = last ts + 1 ms
    tc = np.zeros(20)
    tc[0:3] = 1.0              # already on at the first row: not an observed start
    ft = FeatureTable(machine=machine, ts=ts, X=np.zeros((20, 1), np.float32), feature_names=["x"],
                      raw={"heater_fault": heater, "tc_fault": tc})
    f = L.failures_from_signals(ft, settings())
    h = f[f.component == "Heating"]
    assert list(h.start) == [ts[5], ts[15]]
    assert list(h.end) == [ts[9], ts[19] + 1]
    s = f[f.component == "Sensing"]
    assert list(s.start) == [ts[0]] and not s.observedStart.iloc[0]
    lab = L.label_rows(machine, ts, f, H)
    assert lab.excluded[0:3].all() and lab.excluded[5:9].all()
    assert not lab.y[3] or lab.component[3] == "Heating"


def test_a_limit_crossing_held_for_hold_s_is_a_failure_from_the_crossing():
    machine, ts = grid(n=30)  # rows every 30 s
    temp = np.full(30, 340.0)
    temp[4:6] = 371.0          # 30 s beyond 370: shorter than hold_s = 60, no failure
    temp[10:14] = 372.0        # 90 s beyond: a failure from row 10 to row 14
    temp[12] = np.nan          # a gap inside the run carries the last value
    temp[20:] = 369.0          # below the limit: nothing
    temp[25:] = 375.0          # beyond to the end: end = last ts + 1 ms
    ft = FeatureTable(machine=machine, ts=ts, X=np.zeros((30, 1), np.float32), feature_names=["x"],
                      raw={"bearing_temp": temp})
    s = settings(failure_signals=[{"signal": "bearing_temp", "component": "Heating", "kind": "limit",
                                   "hold_s": 60}],
                 limits={"bearing_temp": {"high": 370.0, "low": None}})
    f = L.failures_from_signals(ft, s)
    assert list(f.start) == [ts[10], ts[25]]
    assert list(f.end) == [ts[14], ts[29] + 1]
    assert f.observedStart.all()
    # A low limit counts the same way; without limits the kind is refused.
    low = settings(failure_signals=[{"signal": "bearing_temp", "component": "Heating", "kind": "limit",
                                     "hold_s": 0}],
                   limits={"bearing_temp": {"high": None, "low": 345.0}})
    fl = L.failures_from_signals(ft, low)  # 340 is below 345 outside the high runs
    assert list(fl.start) == [ts[0], ts[6], ts[14]]
    assert list(fl.observedStart) == [False, True, True], "already beyond at the first row"
    with pytest.raises(L.TrainError, match="no limits"):
        L.failures_from_signals(ft, settings(failure_signals=[{"signal": "bearing_temp",
                                                               "component": "Heating", "kind": "limit"}]))


def test_labels_are_rising_edges_together_with_work_orders(tmp_path):
    machine, ts = grid(n=40)
    heater = np.zeros(40)
    heater[5:9] = 1.0  # a rising edge of Heating at row 5
    ft = FeatureTable(machine=machine, ts=ts, X=np.zeros((40, 1), np.float32), feature_names=["x"],
                      raw={"heater_fault": heater, "tc_fault": np.zeros(40)})
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        # a work order no signal shows
        {"organizationId": "o", "machineId": "m1", "component": "Sensing", "start": int(ts[25]), "end": int(ts[27])},
        # the rising edge entered again as a work order: one failure
        {"machineId": "m1", "component": "Heating", "start": int(ts[5]), "end": int(ts[9])},
        # another org's
        {"organizationId": "p", "machineId": "m1", "component": "Sensing", "start": int(ts[30])},
    ]) + "\n")
    f, source = L.failures_for(ft, settings(), str(events), "o")
    assert source == "failure_signals+events"
    assert list(zip(f.component, f.start)) == [("Heating", ts[5]), ("Sensing", ts[25])]
    only_signals, source = L.failures_for(ft, settings(), None, "o")
    assert source == "failure_signals" and list(only_signals.start) == [ts[5]]
    # no signal rose: the work orders alone
    ft.raw["heater_fault"] = np.zeros(40)
    f, _ = L.failures_for(ft, settings(), str(events), "o")
    assert list(f.start) == [ts[5], ts[25]]


def test_feedback_hard_negatives_and_confirmations():
    machine, ts = grid(n=200)
    start = 60 * MIN
    lab = L.label_rows(machine, ts, failures(("m1", "Heating", start, start + 10 * MIN)), H)
    fb = [
        # false alarm far from any failure: rows in [ts - h, ts] become hard negatives
        {"type": "PREDICTIVE", "isAccurate": False, "machineId": "m1", "ts": 30 * MIN, "component": "Heating"},
        # false alarm just before a real failure: the failure wins, rows stay positive
        {"type": "PREDICTIVE", "isAccurate": False, "machineId": "m1", "ts": start - MIN, "component": "Heating"},
        # confirmed alert without a failure signal: rows become positive (failure model only)
        {"type": "PREDICTIVE", "isAccurate": True, "machineId": "m1", "ts": 90 * MIN, "component": "Heating"},
        {"type": "CRITICAL", "isAccurate": False, "machineId": "m1", "ts": 95 * MIN},
        {"type": "PREDICTIVE", "isAccurate": None, "machineId": "m1", "ts": 95 * MIN},
    ]
    counts = L.apply_feedback(lab, machine, ts, fb, H, hard_negative_weight=5.0)
    assert counts["alertsUsed"] == 3 and counts["alertsIgnored"] == 2
    hard = (ts >= 20 * MIN) & (ts <= 30 * MIN)
    assert (lab.weight[hard] == 5.0).all() and (lab.y[hard] == 0).all()
    pre = (ts >= start - H) & (ts < start)
    assert (lab.y[pre] == 1).all() and (lab.weight[pre] == 1.0).all()
    conf = (ts >= 80 * MIN) & (ts <= 90 * MIN)
    assert (lab.y[conf] == 1).all() and not lab.real_positive[conf].any()
    # the second false alarm adds the 2 negative rows in [start - 11 min, start - h)
    assert counts["hardNegativeRows"] == hard.sum() + 2 and counts["confirmedPositiveRows"] == conf.sum()


def test_time_split_has_gap_and_no_overlap():
    _, ts = grid(n=3000)
    gap = H + 600_000
    sp = L.time_split(ts, 0.2, gap)
    tr, va = sp.masks(ts)
    assert not (tr & va).any()
    assert ts[va].min() >= sp.train_end + gap
    assert ts[tr].max() < sp.train_end
    assert ts[va].max() == ts.max() and sp.validation_end == ts.max() + 1
    assert sp.train_end == pytest.approx(ts.min() + 0.8 * (ts.max() - ts.min()), abs=1)
    with pytest.raises(Exception):
        L.time_split(ts[:10], 0.2, gap)


def test_event_metrics_definitions():
    machine, ts = grid(n=400)  # 200 minutes
    start = 100 * MIN
    f = failures(("m1", "A", start, start + 10 * MIN))
    lab = L.label_rows(machine, ts, f, H)
    score = np.zeros(len(ts))
    score[(ts >= start - 6 * MIN) & (ts < start)] = 0.9        # detection, lead 6 min
    score[(ts >= 20 * MIN) & (ts <= 21 * MIN)] = 0.9           # false alarm episode ...
    score[(ts >= 24 * MIN) & (ts <= 25 * MIN)] = 0.9           # ... merged (gap 3 min < 5)
    score[(ts >= 40 * MIN) & (ts <= 41 * MIN)] = 0.9           # second false alarm (gap 15 min)
    score[(ts >= start) & (ts < start + 10 * MIN)] = 0.99      # inside the failure: ignored
    m = M.all_metrics(machine, ts, score, lab.y, lab.excluded, f, 0.85, H, int(ts[0]), int(ts[-1]) + 1)
    assert m["failures"] == 1 and m["eventRecall"] == 1.0
    assert m["medianLeadMinutes"] == pytest.approx(6.0) and m["p10LeadMinutes"] == pytest.approx(6.0)
    assert m["falseAlarms"] == 2 and m["alarmEpisodes"] == 3
    assert m["machineDays"] == pytest.approx(400 * 30_000 / 86_400_000)
    assert m["falseAlarmsPerMachineDay"] == pytest.approx(2 / m["machineDays"])
    tn, fp = m["confusionMatrix"][0]
    fn, tp = m["confusionMatrix"][1]
    assert tp == 12 and fn == 8 and fp > 0 and tn + fp + fn + tp == (~lab.excluded).sum()


def test_event_metrics_for_ms_wait_for_the_score_to_hold():
    machine, ts = grid(n=400)  # 30 s rows
    start = 100 * MIN
    f = failures(("m1", "A", start, start + 10 * MIN))
    lab = L.label_rows(machine, ts, f, H)
    score = np.zeros(len(ts))
    score[(ts >= start - 6 * MIN) & (ts < start)] = 0.9        # held 6 min: detected 1 min later
    score[(ts >= 20 * MIN) & (ts <= 20 * MIN + 30_000)] = 0.9  # two rows (30 s): no alarm at 60 s
    score[(ts >= 40 * MIN) & (ts <= 41 * MIN)] = 0.9           # three rows (60 s): one alarm row
    args = (machine, ts, score, lab.y, lab.excluded, f, 0.85, H, int(ts[0]), int(ts[-1]) + 1)
    now = M.all_metrics(*args)
    held = M.all_metrics(*args, for_ms=60_000)
    assert now["falseAlarms"] == 2 and held["falseAlarms"] == 1
    assert now["medianLeadMinutes"] == pytest.approx(6.0)
    assert held["medianLeadMinutes"] == pytest.approx(5.0)
    assert held["eventRecall"] == 1.0
    # a score at or above `immediate` alarms on its own row, without for_ms
    sure = score.copy()
    sure[ts == 50 * MIN] = 0.97                                 # one row, far from the failure
    sure[ts == start - 6 * MIN] = 0.97                          # first precursor row
    args2 = (machine, ts, sure, lab.y, lab.excluded, f, 0.85, H, int(ts[0]), int(ts[-1]) + 1)
    waits = M.all_metrics(*args2, for_ms=60_000)
    at_once = M.all_metrics(*args2, for_ms=60_000, immediate=0.95)
    assert waits["falseAlarms"] == 1 and at_once["falseAlarms"] == 2
    assert waits["medianLeadMinutes"] == pytest.approx(5.0)
    assert at_once["medianLeadMinutes"] == pytest.approx(6.0)
    # a run of rows is per machine: one machine's run does not continue another's
    m2 = np.array(["a", "a", "b", "b"])
    t2 = np.array([0, 30_000, 60_000, 90_000])
    assert M.held(m2, t2, np.array([True, True, True, True]), 30_000).tolist() == [False, True, False, True]


def test_tuning_candidates_are_bounded_and_deterministic():
    a = MD.candidates({"num_leaves": 31}, 5, seed=7)
    b = MD.candidates({"num_leaves": 31}, 5, seed=7)
    assert a == b and len(a) == 5 and a[0]["num_leaves"] == 31
    assert len({tuple(sorted((k, str(v)) for k, v in c.items())) for c in a}) == 5
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=600) > 1.2).astype(int)
    best, res = MD.tune(X[:400], y[:400], np.ones(400), X[400:], y[400:], {"num_iterations": 10}, 3, 1, 1,
                        "sqrt", lambda *a: None)
    assert len(res) == 3 and best == max(res, key=lambda r: r["auc"])["hyperparameters"]


def test_lead_weight_favours_early_positives_and_keeps_the_positive_total():
    w = np.array([1.0, 1.0, 1.0, 1.0, 5.0])
    real = np.array([True, True, True, False, False])
    ttf = np.array([1.0, 5.0, 10.0, np.nan, np.nan])
    MD.weight_by_lead(w, real, ttf, 10.0, 3.0)
    assert w[0] < w[1] < w[2]
    assert w[:3].sum() == pytest.approx(3.0)
    assert w[2] / w[0] == pytest.approx(4.0 / 1.3)
    assert list(w[3:]) == [1.0, 5.0], "negatives and feedback rows keep their weights"
    off = np.ones(3)
    MD.weight_by_lead(off, real[:3], ttf[:3], 10.0, 0.0)
    assert list(off) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError):
        MD.weight_by_lead(off, real[:3], ttf[:3], 10.0, -1.0)
