"""report.png: ROC, precision-recall, lead-time histogram, top-20 feature importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def write_report(path, y, score, leads, importance: dict, title: str, threshold: float) -> None:
    fig, ax = plt.subplots(2, 2, figsize=(13, 10))
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
