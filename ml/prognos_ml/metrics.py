"""Row and event metrics of failure scores (one definition for train.py and evaluate.py).

Row metrics are over non-excluded rows, alarm = score >= threshold.
Event metrics (an alarm row: score >= threshold on this row and on every row of the
machine for the `for_ms` before it, like `prediction.for_s` of the alerts, or a
score at or above `immediate`, like `prediction.immediate_threshold`):
- failures: failures with an observed start in the scored range [from, to);
- eventRecall: share of those with at least one scored row >= threshold in
  [start - horizon, start);
- lead time of a detected failure: start - first such row, minutes; median and p10
  (the 10th percentile, i.e. 90% of detections come at least this early);
- falseAlarmsPerMachineDay: alarm episodes are maximal runs of consecutive rows (per
  machine, in time order, excluded rows breaking runs) scored >= threshold, runs closer
  than 5 minutes (next run's first row - previous run's last row < 5 min) merged; an
  episode is true when one of its rows lies in [start - horizon, start) of some failure of
  the machine, else false. Divided by machine-days: per machine, last - first ts of its
  rows in the range plus one sampling interval (median spacing), summed, / 86 400 000 ms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .common import MS_PER_DAY, MS_PER_MIN

EPISODE_MERGE_MS = 5 * MS_PER_MIN


def row_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    y = np.asarray(y).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    n = tp + tn + fp + fn
    auc = float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else None
    return {
        "accuracy": (tp + tn) / n if n else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "auc": auc,
        "confusionMatrix": [[tn, fp], [fn, tp]],  # rows: actual 0/1, columns: predicted 0/1
        "positives": int(y.sum()),
        "rows": n,
    }


def held(machine: np.ndarray, ts: np.ndarray, above: np.ndarray, for_ms: int) -> np.ndarray:
    """Rows (sorted by machine, ts) where `above` has held on every row of the machine
    since at least `for_ms` before: a run of consecutive `above` rows counts from its
    first row's ts."""
    above = np.asarray(above, bool)
    if for_ms <= 0 or not above.any():
        return above
    same = np.r_[False, np.asarray(machine[1:]) == np.asarray(machine[:-1])]
    start = above & ~(np.r_[False, above[:-1]] & same)
    run = np.cumsum(start) - 1
    since = np.asarray(ts)[start][np.maximum(run, 0)]
    return above & (np.asarray(ts) - since >= for_ms)


def event_metrics(machine: np.ndarray, ts: np.ndarray, score: np.ndarray, excluded: np.ndarray,
                  failures: pd.DataFrame, threshold: float, horizon_ms: int,
                  range_from: int, range_to: int, for_ms: int = 0, immediate: float | None = None) -> dict:
    """`machine`, `ts`, `score`, `excluded`: every row of the scored range, sorted by
    (machine, ts). `failures`: all failures of the org (any time)."""
    above = (score >= threshold) & ~excluded
    alarm = held(machine, ts, above, for_ms)
    if immediate is not None:
        alarm = alarm | (above & (score >= immediate))
    obs = failures[failures["observedStart"]]
    in_range = obs[(obs["start"] >= range_from) & (obs["start"] < range_to)]
    fail_by_m = {m: g["start"].to_numpy(np.int64) for m, g in obs.groupby("machine")}

    machine_days = 0.0
    leads: list[float] = []
    detected = 0
    false_alarms = 0
    episodes = 0
    rows_by_m = {}
    if len(ts):
        change = np.flatnonzero(machine[1:] != machine[:-1]) + 1
        for a, b in zip(np.concatenate([[0], change]), np.concatenate([change, [len(ts)]])):
            rows_by_m[str(machine[a])] = (int(a), int(b))
    for m, (a, b) in rows_by_m.items():
        t = ts[a:b]
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        machine_days += (float(t[-1] - t[0]) + step) / MS_PER_DAY
        al = alarm[a:b]
        if not al.any():
            continue
        # runs of consecutive alarm rows
        d = np.diff(al.astype(np.int8), prepend=0, append=0)
        rs, re_ = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
        # merge runs closer than 5 minutes
        eps = []
        cur_s, cur_e = rs[0], re_[0]
        for s, e in zip(rs[1:], re_[1:]):
            if t[s] - t[cur_e] < EPISODE_MERGE_MS:
                cur_e = e
            else:
                eps.append((cur_s, cur_e))
                cur_s, cur_e = s, e
        eps.append((cur_s, cur_e))
        starts = fail_by_m.get(m, np.empty(0, np.int64))
        alarm_ts = t[al]
        for s, e in eps:
            episodes += 1
            ets = alarm_ts[(alarm_ts >= t[s]) & (alarm_ts <= t[e])]
            # true when some alarm row of the episode is in [start - horizon, start)
            k = np.searchsorted(starts, ets, side="right")
            ok = (k < len(starts)) & (starts[np.minimum(k, max(len(starts) - 1, 0))] - ets <= horizon_ms) \
                if len(starts) else np.zeros(len(ets), bool)
            if not ok.any():
                false_alarms += 1
    for m, st in zip(in_range["machine"], in_range["start"].to_numpy(np.int64)):
        if m not in rows_by_m:
            continue
        a, b = rows_by_m[m]
        t, al = ts[a:b], alarm[a:b]
        w = al & (t >= st - horizon_ms) & (t < st)
        if w.any():
            detected += 1
            leads.append((st - t[w][0]) / MS_PER_MIN)
    n_fail = int(len(in_range[in_range["machine"].isin(list(rows_by_m))]))
    return {
        "eventRecall": detected / n_fail if n_fail else None,
        "medianLeadMinutes": float(np.median(leads)) if leads else None,
        "p10LeadMinutes": float(np.percentile(leads, 10)) if leads else None,
        "falseAlarmsPerMachineDay": false_alarms / machine_days if machine_days else None,
        "failures": n_fail,
        "detectedFailures": detected,
        "falseAlarms": false_alarms,
        "alarmEpisodes": episodes,
        "machineDays": machine_days,
        "leadMinutes": leads,
    }


def all_metrics(machine, ts, score, y, excluded, failures, threshold, horizon_ms, range_from, range_to,
                for_ms: int = 0, immediate: float | None = None) -> dict:
    keep = ~excluded
    rm = row_metrics(y[keep], score[keep], threshold)
    em = event_metrics(machine, ts, score, excluded, failures, threshold, horizon_ms, range_from, range_to, for_ms,
                       immediate)
    return {**rm, **em}


# --------------------------------------------------------------------------- intervals
# Intervals are 95 % two-sided; `interval95` in the figures.
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval of a proportion k of n (None when n = 0). Unlike the normal
    approximation it stays inside [0, 1] and is not empty at 0 of n or n of n, which is
    where small event counts live."""
    if n <= 0:
        return None
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # exact at the ends, where rounding would leave 1e-17 off
    lo = 0.0 if k == 0 else float(max(0.0, centre - half))
    hi = 1.0 if k == n else float(min(1.0, centre + half))
    return [lo, hi]


def poisson_rate_interval(count: int, exposure: float, confidence: float = 0.95) -> list[float] | None:
    """Exact (Garwood) interval of a Poisson rate `count / exposure` from chi-square
    quantiles (None without exposure): lower chi2(a/2; 2c)/2, upper chi2(1 - a/2; 2c + 2)/2."""
    if not exposure or exposure <= 0:
        return None
    from scipy.stats import chi2
    a = 1.0 - confidence
    lo = 0.0 if count == 0 else float(chi2.ppf(a / 2, 2 * count)) / 2
    hi = float(chi2.ppf(1 - a / 2, 2 * count + 2)) / 2
    return [lo / exposure, hi / exposure]


def _ratio(k, n):
    return k / n if n else None


def figures(m: dict) -> dict:
    """The validation figures of one `all_metrics` result (or a pooled one): each with the
    counts it rests on, the number of failures scored, and a 95 % interval where one is
    meaningful. Row counts overstate the evidence (rows 30 s apart are not independent),
    so their intervals are too narrow; the event figures are the ones to judge by."""
    n_fail = int(m["failures"])
    det = int(m["detectedFailures"])
    fa, md, eps = int(m["falseAlarms"]), float(m["machineDays"]), int(m["alarmEpisodes"])
    (tn, fp), (fn, tp) = m["confusionMatrix"]
    leads = list(m.get("leadMinutes") or [])
    out = {
        "failures": n_fail,
        "eventRecall": {"value": _ratio(det, n_fail), "detected": det, "failures": n_fail,
                        "interval95": wilson_interval(det, n_fail)},
        "medianLeadMinutes": {"value": float(np.median(leads)) if leads else None, "detected": det,
                              "failures": n_fail},
        "p10LeadMinutes": {"value": float(np.percentile(leads, 10)) if leads else None, "detected": det,
                           "failures": n_fail},
        "falseAlarmsPerMachineDay": {"value": _ratio(fa, md), "falseAlarms": fa, "machineDays": md,
                                     "failures": n_fail, "interval95": poisson_rate_interval(fa, md)},
        "alarmPrecision": {"value": _ratio(eps - fa, eps), "trueAlarms": eps - fa, "alarmEpisodes": eps,
                           "failures": n_fail, "interval95": wilson_interval(eps - fa, eps)},
        "rowPrecision": {"value": _ratio(tp, tp + fp), "truePositiveRows": int(tp), "alarmRows": int(tp + fp),
                         "failures": n_fail, "interval95": wilson_interval(tp, tp + fp)},
        "rowRecall": {"value": _ratio(tp, tp + fn), "truePositiveRows": int(tp), "positiveRows": int(tp + fn),
                      "failures": n_fail, "interval95": wilson_interval(tp, tp + fn)},
    }
    if "auc" in m:
        out["auc"] = {"value": m["auc"], "positiveRows": int(tp + fn), "rows": int(tp + fn + tn + fp),
                      "failures": n_fail}
    return out


def pool(results: list[dict]) -> dict:
    """Several `all_metrics` results (the folds) as one: counts summed (detected of failures,
    false alarms over machine-days, confusion matrices), leads concatenated. No pooled AUC:
    the folds' scores come from different models."""
    cm = np.sum([np.array(r["confusionMatrix"]) for r in results], axis=0).tolist() if results else [[0, 0], [0, 0]]
    return {
        "failures": sum(int(r["failures"]) for r in results),
        "detectedFailures": sum(int(r["detectedFailures"]) for r in results),
        "falseAlarms": sum(int(r["falseAlarms"]) for r in results),
        "alarmEpisodes": sum(int(r["alarmEpisodes"]) for r in results),
        "machineDays": float(sum(float(r["machineDays"]) for r in results)),
        "confusionMatrix": cm,
        "leadMinutes": [x for r in results for x in r["leadMinutes"]],
    }
