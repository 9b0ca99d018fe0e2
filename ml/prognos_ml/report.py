"""report.png: ROC, precision-recall, lead-time histogram, top-20 feature importance, and
the validation figures (holdout, each fold, pooled) with their event counts and intervals."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _line(name: str, f: dict) -> str:
    """One row of figures: event recall with its counts and interval, false alarms likewise."""
    r, fa = f["eventRecall"], f["falseAlarmsPerMachineDay"]
    ri = r["interval95"] or [None, None]
    rec = f"recall {r['detected']}/{r['failures']} = {_pct(r['value'])} [{_pct(ri[0])}, {_pct(ri[1])}]"
    if fa["interval95"]:
        far = (f"false alarms {fa['falseAlarms']} in {fa['machineDays']:.1f} machine-days = {fa['value']:.2f}/day "
               f"[{fa['interval95'][0]:.2f}, {fa['interval95'][1]:.2f}]")
    else:
        far = "false alarms n/a"
    lead = f["medianLeadMinutes"]["value"]
    return f"{name:<22}{rec:<38}{far}   median lead {'n/a' if lead is None else f'{lead:.1f} min'}"


def validation_lines(validation: dict) -> list[str]:
    """The report's text panel: a line per holdout, fold and pooled figure set."""
    lines = [_line("holdout", validation["holdout"])]
    folds = validation["folds"]
    for f in folds["perFold"]:
        name = f"fold {f['fold'] + 1} ({len(f['machines'])} machines)"
        lines.append(f"{name:<22}skipped: {f['skipped']}" if "skipped" in f else _line(name, f))
    if folds["pooled"]:
        lines.append(_line(f"pooled, {folds['k']} folds", folds["pooled"]))
    elif folds.get("disabled"):
        lines.append(f"{'folds':<22}none: {folds['disabled']}")
    verdict = "enough" if validation["enoughEvents"] else "too few"
    lines.append(f"95% intervals (Wilson; exact Poisson for false alarms). Holdout failures "
                 f"{validation['holdout']['failures']}: {verdict} to compare versions (at least {validation['minEvents']}).")
    return lines


def write_report(path, y, score, leads, importance: dict, title: str, threshold: float,
                 validation: dict | None = None) -> None:
    if validation is None:
        fig, ax = plt.subplots(2, 2, figsize=(13, 10))
    else:
        lines = validation_lines(validation)
        fig = plt.figure(figsize=(13, 10 + 0.17 * len(lines) + 0.3))
        grid = fig.add_gridspec(3, 2, height_ratios=[5, 5, 0.17 * len(lines) + 0.3])
        ax = np.array([[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)])
        text = fig.add_subplot(grid[2, :])
        text.axis("off")
        text.text(0, 1, "\n".join(lines), family="monospace", fontsize=8, va="top", ha="left",
                  transform=text.transAxes)
    y = np.asarray(y).astype(int)
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, score)
        ax[0, 0].plot(fpr, tpr)
        p, r, _ = precision_recall_curve(y, score)
        ax[0, 1].plot(r, p)
    ax[0, 0].plot([0, 1], [0, 1], "k--", lw=0.5)
    ax[0, 0].set(title="ROC (validation rows)", xlabel="false positive rate", ylabel="true positive rate")
    ax[0, 1].set(title="Precision-recall (validation rows)", xlabel="recall", ylabel="precision")
    ax[1, 0].hist(leads, bins=np.arange(0, 11, 1) if len(leads) else 10)
    ax[1, 0].set(title=f"Lead time of detected failures (threshold {threshold})", xlabel="minutes", ylabel="failures")
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:20][::-1]
    ax[1, 1].barh([k for k, _ in top], [v for _, v in top])
    ax[1, 1].set(title="Top 20 features (gain, normalized)")
    ax[1, 1].tick_params(axis="y", labelsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
