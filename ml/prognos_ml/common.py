"""Config, IO and JSON helpers shared by train.py and evaluate.py."""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
KEY_COLUMNS = ("org", "machine", "ts")
DEFAULT_LAGS_S = [60, 120, 300]
DEFAULT_WINDOWS_S = [180, 300, 600]
# training.ensemble: at most this many failure models averaged (inference costs one per member)
MAX_ENSEMBLE = 8
# training.min_validation_events: below this many holdout failures no version is called better
DEFAULT_MIN_VALIDATION_EVENTS = 5


class TrainError(RuntimeError):
    """A failure the CLI reports on stderr with a non-zero exit."""


# --------------------------------------------------------------------------- config
@dataclass
class OrgSettings:
    org: str
    failure_threshold: float
    confidence_threshold: float
    stage2_gate: float
    horizon_minutes: float
    time_to_failure_minutes: float
    component_mapping: dict[str, str]
    general_component: str
    failure_signals: list[dict]
    validation_split: float
    hyperparameters: dict
    lags_s: list[int]
    windows_s: list[int]
    lag_tolerance_ms: int
    deltas_s: list[int] = field(default_factory=list)
    # prediction.for_s in ms: how long the score must hold to alarm
    for_ms: int = 0
    # prediction.immediate_threshold: a score this high alarms without for_s
    immediate_threshold: float | None = None
    baselines_s: list[int] = field(default_factory=list)
    # training.ensemble: failure models averaged, each with its own seed and negatives
    ensemble: int = 1
    # Declared signal limits by signal name: {"high": float | None, "low": float | None}
    limits: dict[str, dict] = field(default_factory=dict)
    # training.validation_folds: machine-grouped folds train.py validates on (None: its default)
    validation_folds: int | None = None
    # training.min_validation_events: fewer holdout failures than this cannot show a version better
    min_validation_events: int = DEFAULT_MIN_VALIDATION_EVENTS

    @property
    def horizon_ms(self) -> int:
        return int(round(self.horizon_minutes * MS_PER_MIN))

    def components_in_order(self) -> list[str]:
        """Non-general components in the mapping's index order."""
        keys = sorted(self.component_mapping, key=lambda k: int(k))
        return [self.component_mapping[k] for k in keys if k != "0"]


def load_org_settings(config_path: str | Path, org: str) -> OrgSettings:
    cfg = tomllib.loads(Path(config_path).read_text())
    orgs = cfg.get("orgs", {})
    if org not in orgs:
        raise TrainError(f"org {org!r} not in {config_path} (orgs: {', '.join(sorted(orgs))})")
    o = orgs[org]
    pred = o.get("prediction", {})
    thr = float(pred.get("failure_threshold", 0.85))
    mapping = {str(k): str(v) for k, v in pred.get("component_mapping", {"0": "General Equipment"}).items()}
    general = pred.get("general_component", mapping.get("0", "General Equipment"))
    feats = o.get("features", {})
    training = o.get("training", {})
    ensemble = training.get("ensemble", 1)
    # `type(...) is int`: a bool is an int in Python, and TOML's `true` is not a size.
    if type(ensemble) is not int or not 1 <= ensemble <= MAX_ENSEMBLE:
        raise TrainError(f"orgs.{org}.training.ensemble: must be an integer in 1..={MAX_ENSEMBLE}, got {ensemble!r}")
    folds = training.get("validation_folds")
    min_events = training.get("min_validation_events", DEFAULT_MIN_VALIDATION_EVENTS)
    for key, v in (("validation_folds", folds), ("min_validation_events", min_events)):
        if v is not None and (type(v) is not int or v < 0):
            raise TrainError(f"orgs.{org}.training.{key}: must be an integer >= 0, got {v!r}")
    return OrgSettings(
        org=org,
        failure_threshold=thr,
        confidence_threshold=float(pred.get("confidence_threshold", 0.7)),
        stage2_gate=float(pred.get("stage2_gate", thr / 2)),
        horizon_minutes=float(pred.get("horizon_minutes", 10)),
        time_to_failure_minutes=float(pred.get("time_to_failure_minutes", 8)),
        component_mapping=mapping,
        general_component=general,
        failure_signals=list(o.get("failure_signals", [])),
        validation_split=float(training.get("validation_split", 0.2)),
        hyperparameters=dict(training.get("hyperparameters", {})),
        lags_s=list(feats.get("lags_s", DEFAULT_LAGS_S)),
        windows_s=list(feats.get("windows_s", DEFAULT_WINDOWS_S)),
        lag_tolerance_ms=int(cfg.get("runtime", {}).get("lag_tolerance_ms", 60_000)),
        deltas_s=list(feats.get("deltas_s", [])),
        for_ms=int(pred.get("for_s", 0)) * 1000,
        immediate_threshold=(float(pred["immediate_threshold"]) if "immediate_threshold" in pred else None),
        baselines_s=list(feats.get("baselines_s", [])),
        ensemble=ensemble,
        validation_folds=folds,
        min_validation_events=min_events,
        limits={str(sig["name"]): {"high": sig["limits"].get("high"), "low": sig["limits"].get("low")}
                for sig in o.get("signals", []) if isinstance(sig.get("limits"), dict)},
    )


# --------------------------------------------------------------------------- data
@dataclass
class FeatureTable:
    machine: np.ndarray          # object array of str, rows sorted by (machine, ts)
    ts: np.ndarray               # int64 ms since epoch
    X: np.ndarray                # float32 [n, n_features] (NaN where undefined)
    feature_names: list[str]
    raw: dict = field(default_factory=dict)   # float64 columns needed for labels (signals)

    def __len__(self) -> int:
        return len(self.ts)


def read_features(path: str | Path, org: str | None = None, keep: list[str] | tuple = ()) -> FeatureTable:
    """Read a `prognos features` Parquet table, rows sorted by (machine, ts). Features
    become float32 (what the ONNX models take), read one column at a time to bound memory;
    `keep` columns are also returned as float64 in `raw`."""
    pf = pq.ParquetFile(path)
    all_names = pf.schema_arrow.names
    names = [n for n in all_names if n not in KEY_COLUMNS]
    if not names:
        raise TrainError(f"{path}: no feature columns")
    keys = pq.read_table(path, columns=[c for c in KEY_COLUMNS if c in all_names])
    sel = None
    if org is not None and "org" in keys.column_names:
        import pyarrow.compute as pc
        mask = pc.equal(keys.column("org"), org)
        if pc.sum(pc.invert(mask)).as_py():
            sel = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            keys = keys.filter(mask)
    if keys.num_rows == 0:
        raise TrainError(f"{path}: no rows for org {org!r}")
    enc = keys.column("machine").combine_chunks().dictionary_encode()
    names_m = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    rank = np.argsort(np.argsort(names_m.astype(str), kind="stable"), kind="stable")
    codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    ts = keys.column("ts").cast("int64").to_numpy()
    order = np.lexsort((ts, codes))
    machine = names_m[np.argsort(rank)][codes[order]]
    ts = ts[order]
    del keys, enc
    X = np.empty((len(ts), len(names)), dtype=np.float32)
    raw = {}
    for j, n in enumerate(names):
        col = pq.read_table(path, columns=[n]).column(0).to_numpy().astype(np.float64, copy=False)
        if sel is not None:
            col = col[sel]
        col = col[order]
        X[:, j] = col
        if n in keep:
            raw[n] = col
    return FeatureTable(machine=machine, ts=ts, X=X, feature_names=names, raw=raw)


def longest_window_ms(feature_names: list[str], s: OrgSettings) -> int:
    """Longest look-back of any feature: windows and baselines, and lags and deltas plus
    the lag tolerance (from the feature names; the config when a family is absent)."""
    def spans(pattern):
        return [int(m.group(1)) for n in feature_names if (m := re.search(pattern, n))]
    wins = spans(r"_rolling_(\d+)s_") + spans(r"_baseline_(\d+)s_")
    lags = spans(r"_lag_(\d+)s$") + spans(r"_delta_(\d+)s$")
    w = max(wins or (s.windows_s + s.baselines_s) or [0]) * 1000
    lag = max(lags or (s.lags_s + s.deltas_s) or [0]) * 1000 + s.lag_tolerance_ms
    return int(max(w, lag))


# --------------------------------------------------------------------------- time/json
def parse_time_ms(v) -> int:
    """RFC 3339 string or epoch ms -> epoch ms."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float):
        return int(v)
    t = pd.Timestamp(v)
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return int(t.value // 1_000_000)


def fmt_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    d = _dt.datetime.fromtimestamp(int(ms) // 1000, tz=_dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(ms) % 1000:03d}Z"


def now_rfc3339() -> str:
    return fmt_ms(int(time.time() * 1000))


def jsonable(o):
    """NaN/inf -> None, numpy scalars/arrays -> Python, recursively."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def dump_json(o) -> str:
    return json.dumps(jsonable(o), allow_nan=False)


def write_json(path: Path, o) -> None:
    Path(path).write_text(json.dumps(jsonable(o), indent=2, allow_nan=False) + "\n")


def emit(stage: str, message: str, **extra) -> None:
    """One progress line on stdout, as the Rust runner relays it."""
    sys.stdout.write(dump_json({"stage": stage, "message": message, **extra}) + "\n")
    sys.stdout.flush()
