"""Failures, labels, operator feedback and the time-ordered split.

Definitions (shared by training and evaluation):
- A failure is `(machine, component, start, end)`, half-open `[start, end)` in ms.
- A row at time t is **positive** when a failure of its machine *starts* in
  (t, t + horizon]; its component is that (earliest) failure's component and its
  time to failure is `start - t` in minutes.
- A row inside any failure of its machine, `start <= t < end`, is **excluded** (not
  trained on, not scored in metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .common import MS_PER_MIN, FeatureTable, OrgSettings, TrainError, parse_time_ms

HARD_NEGATIVE_WEIGHT = 5.0


def read_org_jsonl(path: str | Path, org: str) -> list[dict]:
    """The JSON objects of a JSONL file that belong to `org` (no organizationId: all)."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise TrainError(f"{path}:{i}: bad JSON: {err}") from None
            if obj.get("organizationId", org) == org:
                out.append(obj)
    return out


def failures_from_events(path: str | Path, org: str) -> pd.DataFrame:
    """Rows of `org` from an events JSONL (`{organizationId, machineId, component, start, end}`)."""
    rows = []
    for e in read_org_jsonl(path, org):
        start = parse_time_ms(e["start"])
        end = parse_time_ms(e["end"]) if e.get("end") is not None else np.iinfo(np.int64).max
        rows.append((str(e["machineId"]), str(e["component"]), start, end, True))
    return _failure_frame(rows)


def failures_from_signals(ft: FeatureTable, settings: OrgSettings) -> pd.DataFrame:
    """Failures from the org's `failure_signals`: per machine, a run of rows where the
    signal is 1 (`kind = "flag"`), or beyond one of its declared limits for at least
    `hold_s` (`kind = "limit"`: value >= high or <= low), is a failure of the signal's
    component, from the first row of the run
    (the rising edge) to the first row after it (the falling edge; one ms after the last
    row when the run reaches the end of the data). NaN samples carry the last known value
    forward. A run already on at a machine's first row has no observed rising edge: its
    rows are excluded but it is not a failure start (`observedStart = False`)."""
    rows = []
    bounds = _machine_bounds(ft.machine)
    for fs in settings.failure_signals:
        sig, comp = fs["signal"], fs["component"]
        if sig not in ft.raw:
            raise TrainError(f"failure signal {sig!r} is not a column of the feature table")
        v = ft.raw[sig]
        kind = fs.get("kind", "flag")
        hold_ms = int(fs.get("hold_s", 60)) * 1000 if kind == "limit" else 0
        if kind == "limit":
            lim = settings.limits.get(sig)
            if not lim:
                raise TrainError(f"failure signal {sig!r} of kind 'limit' has no limits")
            hi, lo = lim.get("high"), lim.get("low")
        for m, (a, b) in bounds.items():
            filled = pd.Series(v[a:b]).ffill()
            if kind == "limit":
                x = np.zeros(b - a, dtype=bool)
                if hi is not None:
                    x |= (filled >= hi).to_numpy()
                if lo is not None:
                    x |= (filled <= lo).to_numpy()
            else:
                x = filled.fillna(0.0).to_numpy() > 0.5
            if not x.any():
                continue
            ts = ft.ts[a:b]
            d = np.diff(x.astype(np.int8), prepend=0, append=0)
            starts = np.flatnonzero(d == 1)
            ends = np.flatnonzero(d == -1)  # index of first row after the run
            for s, e in zip(starts, ends):
                if int(ts[e - 1]) - int(ts[s]) < hold_ms:
                    continue  # a crossing not held long enough is no failure
                end_ms = int(ts[e]) if e < len(ts) else int(ts[-1]) + 1
                rows.append((m, comp, int(ts[s]), end_ms, bool(s > 0)))
    return _failure_frame(rows)


def union_failures(*frames: pd.DataFrame) -> pd.DataFrame:
    """The failures of every frame; one failure (machine, component, start) listed by
    several is kept once, as the first frame gives it."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return _failure_frame([])
    df = pd.concat(frames, ignore_index=True).drop_duplicates(["machine", "component", "start"], keep="first")
    return df.sort_values(["machine", "start", "component"], kind="stable").reset_index(drop=True)


def failures_for(ft: FeatureTable, settings: OrgSettings, events: str | Path | None, org: str
                 ) -> tuple[pd.DataFrame, str]:
    """The labels of training and evaluation: the rising edges of the org's
    `failure_signals` together with the failures of `events` (work orders and given
    ground truth) when given; and a name for where they came from."""
    from_signals = failures_from_signals(ft, settings)
    if not events:
        return from_signals, "failure_signals"
    return union_failures(failures_from_events(events, org), from_signals), "failure_signals+events"


def _failure_frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["machine", "component", "start", "end", "observedStart"])
    df = df.astype({"machine": object, "component": object, "start": np.int64, "end": np.int64,
                    "observedStart": bool})
    return df.sort_values(["machine", "start", "component"], kind="stable").reset_index(drop=True)


def _machine_bounds(machine: np.ndarray) -> dict[str, tuple[int, int]]:
    """Row ranges per machine of a table sorted by (machine, ts)."""
    if len(machine) == 0:
        return {}
    change = np.flatnonzero(machine[1:] != machine[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(machine)]])
    return {str(machine[a]): (int(a), int(b)) for a, b in zip(starts, ends)}


@dataclass
class Labels:
    y: np.ndarray            # int8: 1 positive, 0 negative
    excluded: np.ndarray     # bool: inside a failure
    component: np.ndarray    # object: component of the next failure (None when negative)
    ttf_min: np.ndarray      # float64 minutes to the next failure start (NaN when negative)
    weight: np.ndarray       # float64 sample weight (feedback)
    real_positive: np.ndarray  # bool: positive because a failure really starts (not feedback)


def label_rows(machine: np.ndarray, ts: np.ndarray, failures: pd.DataFrame, horizon_ms: int) -> Labels:
    n = len(ts)
    y = np.zeros(n, np.int8)
    excluded = np.zeros(n, bool)
    comp = np.full(n, None, dtype=object)
    ttf = np.full(n, np.nan)
    bounds = _machine_bounds(machine)
    for m, g in failures.groupby("machine", sort=False):
        if m not in bounds:
            continue
        a, b = bounds[m]
        t = ts[a:b]
        for s, e in zip(g["start"].to_numpy(), g["end"].to_numpy()):
            i, j = np.searchsorted(t, [s, e], side="left")
            excluded[a + i:a + j] = True
        obs = g[g["observedStart"]].sort_values("start", kind="stable")
        starts = obs["start"].to_numpy(np.int64)
        if len(starts) == 0:
            continue
        comps = obs["component"].to_numpy(object)
        k = np.searchsorted(starts, t, side="right")  # first start strictly after t
        has = k < len(starts)
        nxt = np.where(has, starts[np.minimum(k, len(starts) - 1)], np.iinfo(np.int64).max)
        pos = has & (nxt - t <= horizon_ms)
        idx = np.flatnonzero(pos)
        y[a + idx] = 1
        comp[a + idx] = comps[k[idx]]
        ttf[a + idx] = (nxt[idx] - t[idx]) / MS_PER_MIN
    real = (y == 1) & ~excluded
    return Labels(y=y, excluded=excluded, component=comp, ttf_min=ttf, weight=np.ones(n), real_positive=real)


def read_feedback(path: str | Path, org: str) -> list[dict]:
    """Operator feedback records (alerts with isAccurate) of `org`."""
    return read_org_jsonl(path, org)


def apply_feedback(labels: Labels, machine: np.ndarray, ts: np.ndarray, feedback: list[dict],
                   horizon_ms: int, hard_negative_weight: float = HARD_NEGATIVE_WEIGHT) -> dict:
    """Operator feedback on PREDICTIVE alerts (other types and `isAccurate: null` are ignored):
    - `isAccurate = false`: rows of that machine in [ts - horizon, ts] that are negative
      (no real failure starts within the horizon after them) get weight `hard_negative_weight`
      (hard negatives). Rows a real failure follows stay positive: the failure wins.
    - `isAccurate = true`: rows of that machine in [ts - horizon, ts] that are negative become
      positive for the failure model (weight 1): the operator confirmed an imminent failure
      (e.g. prevented by maintenance) the failure signals never showed. They carry no failure
      start, so they do not train the component or time-to-failure models.
    Excluded rows (inside failures) stay excluded."""
    bounds = _machine_bounds(machine)
    counts = {"hardNegativeRows": 0, "confirmedPositiveRows": 0, "alertsUsed": 0, "alertsIgnored": 0}
    for a in feedback:
        acc = a.get("isAccurate")
        if str(a.get("type", "")).upper() != "PREDICTIVE" or acc is None or a.get("ts") is None:
            counts["alertsIgnored"] += 1
            continue
        m = str(a.get("machineId"))
        if m not in bounds:
            counts["alertsIgnored"] += 1
            continue
        counts["alertsUsed"] += 1
        t_alert = parse_time_ms(a["ts"])
        lo, hi = bounds[m]
        t = ts[lo:hi]
        i = lo + int(np.searchsorted(t, t_alert - horizon_ms, side="left"))
        j = lo + int(np.searchsorted(t, t_alert, side="right"))
        sl = slice(i, j)
        free = ~labels.excluded[sl] & ~labels.real_positive[sl]
        if acc is False:
            w = labels.weight[sl]
            w[free] = np.maximum(w[free], hard_negative_weight)
            labels.weight[sl] = w
            counts["hardNegativeRows"] += int(free.sum())
        else:
            yy = labels.y[sl]
            newly = free & (yy == 0)
            yy[newly] = 1
            labels.y[sl] = yy
            w = labels.weight[sl]
            w[newly] = 1.0
            labels.weight[sl] = w
            counts["confirmedPositiveRows"] += int(newly.sum())
    return counts


@dataclass
class Split:
    data_start: int
    data_end: int
    train_end: int          # train: data_start <= ts < train_end
    validation_start: int   # validation: validation_start <= ts < validation_end
    validation_end: int     # exclusive: data_end + 1 ms
    gap_ms: int

    def masks(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        train = ts < self.train_end
        val = (ts >= self.validation_start) & (ts < self.validation_end)
        return train, val


def time_split(ts: np.ndarray, validation_split: float, gap_ms: int,
               start: int | None = None, end: int | None = None) -> Split:
    """Train on the earliest (1 - validation_split) of [start, end], validate on the rest
    after a gap (>= horizon + longest feature window), never randomly."""
    if not 0.0 < validation_split < 1.0:
        raise TrainError(f"validation_split must be in (0, 1), got {validation_split}")
    start = int(ts.min()) if start is None else start
    end = int(ts.max()) if end is None else end
    train_end = start + int(round((1.0 - validation_split) * (end - start)))
    vstart = train_end + gap_ms
    if vstart > end:
        raise TrainError(
            f"data range {end - start} ms is too short for a validation part after a gap of {gap_ms} ms")
    return Split(start, end, train_end, vstart, end + 1, gap_ms)
