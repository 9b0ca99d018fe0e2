#!/usr/bin/env python3
"""Add a version's operating-point curve to its report.png.

    python ml/plot_curve.py --version-dir DIR

Reads `DIR/metadata.json` (`operatingPoint`: the threshold sweep on the validation
rows, see README "Operating points") and appends a panel below `DIR/report.png`:
event recall and false episodes per machine-day against the failure threshold, one
line per `for_s`, the rules and forecasts alone as dashed lines, the budget and the
chosen point marked. Without a report.png (trained with --no-report) or a sweep it
does nothing. Prints {"stage": "done", ...} like the other scripts.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402


def curve_figure(op: dict, title: str):
    pts = op["points"]
    fig, (ax_r, ax_f) = plt.subplots(1, 2, figsize=(12, 4))
    for f in sorted({p["forS"] for p in pts}):
        line = sorted((p for p in pts if p["forS"] == f), key=lambda p: p["failureThreshold"])
        t = [p["failureThreshold"] for p in line]
        ax_r.plot(t, [p["eventRecall"] if p["eventRecall"] is not None else float("nan") for p in line],
                  marker=".", label=f"for_s {f}")
        ax_f.plot(t, [p["falseAlarmsPerMachineDay"] if p["falseAlarmsPerMachineDay"] is not None
                      else float("nan") for p in line], marker=".", label=f"for_s {f}")
    rf = op["rulesAndForecasts"]
    if rf.get("eventRecall") is not None:
        ax_r.axhline(rf["eventRecall"], color="grey", ls="--", label="rules + forecasts")
    if rf.get("falseAlarmsPerMachineDay") is not None:
        ax_f.axhline(rf["falseAlarmsPerMachineDay"], color="grey", ls="--", label="rules + forecasts")
    if op.get("budget") is not None:
        ax_f.axhline(op["budget"], color="red", ls=":", label=f"budget {op['budget']}")
    c = op.get("chosen")
    if c is not None:
        p = pts[c]
        ax_r.plot([p["failureThreshold"]], [p["eventRecall"]], "r*", ms=14, label="chosen")
        ax_f.plot([p["failureThreshold"]], [p["falseAlarmsPerMachineDay"]], "r*", ms=14, label="chosen")
    n = pts[0]["failures"] if pts else 0
    ax_r.set(xlabel="failure threshold", ylabel="event recall", ylim=(-0.02, 1.02),
             title=f"event recall ({n} validation failures)")
    ax_f.set(xlabel="failure threshold", ylabel="false episodes per machine-day",
             title="false alarms (validation rows)")
    for ax in (ax_r, ax_f):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version-dir", required=True)
    args = ap.parse_args(argv)
    d = Path(args.version_dir)
    meta = json.loads((d / "metadata.json").read_text())
    op, report = meta.get("operatingPoint"), d / "report.png"
    if not op or not op.get("points") or not report.exists():
        print(json.dumps({"stage": "done", "message": "no curve or no report: nothing drawn"}))
        return 0
    fig = curve_figure(op, f"{meta.get('organizationId')} {meta.get('version')}: operating points")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    top, bottom = Image.open(report).convert("RGB"), Image.open(buf).convert("RGB")
    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    out.save(report)
    print(json.dumps({"stage": "done", "message": f"curve added to {report}", "height": out.height}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
