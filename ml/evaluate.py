#!/usr/bin/env python3
"""Score an existing model version on the rows in [from, to) and print its metrics as JSON.

    python ml/evaluate.py --version-dir DIR --features FEATS/ORG.parquet --events EVENTS.jsonl \
        --config CONFIG.toml --org ORG --from TS --to TS

Uses the version's ONNX failure model through onnxruntime, the version's featureNames
(columns are selected by name, so a table with more or reordered columns works), and the
same labelling and metric definitions as train.py (prognos_ml.labels / prognos_ml.metrics).
Labels are the rising edges of the org's failure_signals, with the failures of --events
when given (train.py's union). The threshold and horizon
are the version's own (metadata.json), so a candidate and the active model are compared
under the settings each was trained for; --threshold overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from prognos_ml import labels as L  # noqa: E402
from prognos_ml import metrics as M  # noqa: E402
from prognos_ml import onnx_export as OX  # noqa: E402
from prognos_ml.common import (TrainError, dump_json, fmt_ms, load_org_settings, parse_time_ms,  # noqa: E402
                               read_features)


def evaluate(version_dir, features, config, org, t_from, t_to, events=None, threshold=None) -> dict:
    vdir = Path(version_dir)
    meta = json.loads((vdir / "metadata.json").read_text())
    if meta.get("organizationId") not in (None, org):
        raise TrainError(f"version {vdir} belongs to {meta['organizationId']!r}, not {org!r}")
    s = load_org_settings(config, org)
    names = meta["featureNames"]
    keep = [fs["signal"] for fs in s.failure_signals]
    ft = read_features(features, org, keep=keep)
    missing = [n for n in names if n not in ft.feature_names]
    if missing:
        raise TrainError(f"feature table lacks the version's features: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    col = {n: j for j, n in enumerate(ft.feature_names)}
    X = ft.X[:, [col[n] for n in names]]

    failures, _ = L.failures_for(ft, s, events, org)
    horizon_ms = int(round(float(meta.get("horizonMinutes", s.horizon_minutes)) * 60_000))
    thr = float(threshold if threshold is not None else meta.get("thresholds", {}).get("failure", s.failure_threshold))
    lab = L.label_rows(ft.machine, ft.ts, failures, horizon_ms)
    sel = (ft.ts >= t_from) & (ft.ts < t_to)
    if not sel.any():
        raise TrainError(f"no rows in [{fmt_ms(t_from)}, {fmt_ms(t_to)})")
    model = vdir / meta.get("onnx", {}).get("files", {}).get("failure", "failure.onnx")
    score = OX.onnx_outputs("failure", OX.session(model), X[sel])
    metrics = M.all_metrics(ft.machine[sel], ft.ts[sel], score, lab.y[sel], lab.excluded[sel], failures,
                            thr, horizon_ms, t_from, t_to, s.for_ms, s.immediate_threshold)
    return {"organizationId": org, "version": meta.get("version"), "threshold": thr,
            "range": {"from": fmt_ms(t_from), "to": fmt_ms(t_to)}, "metrics": metrics}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version-dir", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--events")
    p.add_argument("--config", required=True)
    p.add_argument("--org", required=True)
    p.add_argument("--from", dest="t_from", required=True, help="RFC 3339 or epoch ms (inclusive)")
    p.add_argument("--to", dest="t_to", required=True, help="RFC 3339 or epoch ms (exclusive)")
    p.add_argument("--threshold", type=float)
    a = p.parse_args(argv)
    t_from, t_to = parse_time_ms(_num(a.t_from)), parse_time_ms(_num(a.t_to))
    if t_to <= t_from:
        raise TrainError("--to must be after --from")
    print(dump_json(evaluate(a.version_dir, a.features, a.config, a.org, t_from, t_to, a.events, a.threshold)))
    return 0


def _num(v: str):
    return int(v) if v.isdigit() else v


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (TrainError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"evaluate.py: {e}", file=sys.stderr)
        sys.exit(2)
