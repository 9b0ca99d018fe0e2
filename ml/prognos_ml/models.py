"""LightGBM training of the three models and the bounded hyperparameter search."""

from __future__ import annotations

import itertools

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

# Config names -> LightGBM parameters (num_iterations becomes num_boost_round).
PARAM_NAMES = {
    "num_leaves": "num_leaves",
    "learning_rate": "learning_rate",
    "feature_fraction": "feature_fraction",
    "bagging_fraction": "bagging_fraction",
    "bagging_freq": "bagging_freq",
    "min_data_in_leaf": "min_data_in_leaf",
    "max_depth": "max_depth",
    "objective": "objective",
    "metric": "metric",
    "lambda_l1": "lambda_l1",
    "lambda_l2": "lambda_l2",
    "min_gain_to_split": "min_gain_to_split",
}
DEFAULT_HP = {"num_leaves": 31, "learning_rate": 0.1, "feature_fraction": 0.8, "bagging_fraction": 0.8,
              "bagging_freq": 5, "min_data_in_leaf": 20, "max_depth": 6, "num_iterations": 100,
              "objective": "binary", "metric": "auc",
              # Not a config key: L2 on leaf values. A few hundred failure episodes are easy to
              # memorise; shrinking leaves that rest on little hessian keeps the probabilities of
              # unseen machines from saturating at 1 (see TRAINING.md).
              "lambda_l2": 10.0}

# Negative training rows kept at most (train.py --max-negatives): rows 30 s apart are nearly
# duplicates, so a seeded subset weighted up loses little and bounds the training time.
MAX_NEGATIVES = 200_000

SEARCH_SPACE = {
    "num_leaves": [15, 31, 63],
    "learning_rate": [0.03, 0.05, 0.1, 0.2],
    "min_data_in_leaf": [20, 40, 100],
    "feature_fraction": [0.6, 0.8, 1.0],
    "max_depth": [4, 6, 8],
    "bagging_fraction": [0.7, 0.8, 1.0],
}


# Positive rows weighted by 1 + W * ttf / horizon (train.py --lead-weight), 0 = off.
DEFAULT_LEAD_WEIGHT = 0.0


def weight_by_lead(w: np.ndarray, real_positive: np.ndarray, ttf_min: np.ndarray, horizon_min: float,
                   lead_weight: float) -> None:
    """In place: real positive rows get weight x (1 + lead_weight * ttf / horizon), rescaled so the
    positives' total weight is unchanged (the class balance stays as it was). A row far from the
    failure then counts more than one just before it: the model is pushed to warn early rather than
    to be sure late."""
    if lead_weight < 0:
        raise ValueError(f"lead weight must be >= 0, got {lead_weight}")
    pos = real_positive & np.isfinite(ttf_min)
    if not pos.any() or lead_weight == 0:
        return
    before = w[pos].sum()
    w[pos] *= 1.0 + lead_weight * np.clip(ttf_min[pos] / horizon_min, 0.0, 1.0)
    w[pos] *= before / w[pos].sum()


def base_params(seed: int, threads: int) -> dict:
    return {"verbose": -1, "seed": seed, "deterministic": True, "force_row_wise": True,
            "num_threads": threads, "feature_pre_filter": False}


# Class weighting of the failure model: scale_pos_weight = (neg / pos) ** power.
IMBALANCE_POWERS = {"none": None, "sqrt": 0.5, "scale_pos_weight": 1.0}
DEFAULT_IMBALANCE = "0.6"


def imbalance_power(imbalance: str) -> float | None:
    """`none`, `sqrt` (0.5), `scale_pos_weight` (1, the full ratio) or a power in (0, 1]."""
    if imbalance in IMBALANCE_POWERS:
        return IMBALANCE_POWERS[imbalance]
    try:
        x = float(imbalance)
    except ValueError:
        x = float("nan")
    if not 0.0 < x <= 1.0:
        raise ValueError(f"imbalance must be none, sqrt, scale_pos_weight or a power in (0, 1], got {imbalance!r}")
    return x


def failure_params(hp: dict, pos: float, neg: float, seed: int, threads: int, imbalance: str) -> tuple[dict, int]:
    hp = {**DEFAULT_HP, **hp}
    if hp.get("objective", "binary") != "binary":
        raise ValueError(f"failure model objective must be 'binary', got {hp['objective']!r}")
    p = base_params(seed, threads)
    for k, v in hp.items():
        if k in PARAM_NAMES:
            p[PARAM_NAMES[k]] = v
        elif k != "num_iterations":
            p[k] = v  # anything else is passed through (LightGBM knows its aliases)
    power = imbalance_power(imbalance)
    if pos > 0 and power is not None:
        p["scale_pos_weight"] = float((neg / pos) ** power)
    return p, int(hp.get("num_iterations", 100))


def subsample_negatives(y: np.ndarray, w: np.ndarray, idx: np.ndarray, max_negatives: int, rng):
    """Rows `idx` with every positive, every weighted (feedback) row and at most
    `max_negatives` of the other negatives, seeded; returns (kept indices in order, the
    negatives' keep rate). The caller divides the kept negatives' weights by the rate."""
    plain = (y[idx] == 0) & (w[idx] == 1.0)
    n = int(plain.sum())
    if max_negatives <= 0 or n <= max_negatives:
        return idx, 1.0
    rate = max_negatives / n
    keep = ~plain
    keep[np.flatnonzero(plain)[rng.permutation(n)[:max_negatives]]] = True
    return idx[keep], rate


def train_failure(X, y, w, hp, seed, threads, imbalance):
    pos = float(w[y == 1].sum())
    neg = float(w[y == 0].sum())
    params, rounds = failure_params(hp, pos, neg, seed, threads, imbalance)
    ds = lgb.Dataset(X, label=y, weight=w, free_raw_data=True)
    return lgb.train(params, ds, num_boost_round=rounds), params, rounds


def member_seed(seed: int, i: int) -> int:
    """The seed of ensemble member `i`: member 0 is the run's seed (an ensemble of one
    is the single model), the others are spaced so neighbouring run seeds do not share
    members."""
    return seed + 1000 * i


class Ensemble:
    """Failure models of the same data with different seeds and negative draws; predicts
    their mean probability (what `onnx_export.convert_failure` exports)."""

    def __init__(self, boosters):
        self.boosters = list(boosters)

    def predict(self, X):
        return np.mean([b.predict(X) for b in self.boosters], axis=0)

    def feature_importance(self, importance_type="gain"):
        """Each member's importances normalised to sum 1, averaged."""
        gs = [b.feature_importance(importance_type=importance_type).astype(np.float64) for b in self.boosters]
        return np.mean([g / g.sum() if g.sum() > 0 else g for g in gs], axis=0)


def _small_params(hp: dict, n: int, seed: int, threads: int) -> tuple[dict, int]:
    hp = {**DEFAULT_HP, **hp}
    p = base_params(seed, threads)
    p.update({"num_leaves": min(int(hp["num_leaves"]), 15), "learning_rate": float(hp["learning_rate"]),
              "max_depth": int(hp["max_depth"]), "feature_fraction": float(hp["feature_fraction"]),
              "min_data_in_leaf": int(max(5, min(int(hp["min_data_in_leaf"]), n // 20)))})
    return p, int(hp.get("num_iterations", 100))


def train_component(X, cls, n_classes, hp, seed, threads):
    p, rounds = _small_params(hp, len(cls), seed, threads)
    p.update({"objective": "multiclass", "num_class": n_classes, "metric": "multi_logloss"})
    return lgb.train(p, lgb.Dataset(X, label=cls), num_boost_round=rounds), p


def train_ttf(X, minutes, hp, seed, threads):
    p, rounds = _small_params(hp, len(minutes), seed, threads)
    p.update({"objective": "regression", "metric": "l1"})
    return lgb.train(p, lgb.Dataset(X, label=minutes), num_boost_round=rounds), p


def candidates(hp: dict, trials: int, seed: int) -> list[dict]:
    """The configured hyperparameters first, then distinct random draws from SEARCH_SPACE."""
    base = {**DEFAULT_HP, **hp}
    keys = list(SEARCH_SPACE)
    grid = list(itertools.product(*[SEARCH_SPACE[k] for k in keys]))
    rng = np.random.default_rng(seed)
    out = [base]
    seen = {tuple(base.get(k) for k in keys)}
    for i in rng.permutation(len(grid)):
        if len(out) >= trials:
            break
        combo = grid[i]
        if combo in seen:
            continue
        seen.add(combo)
        out.append({**base, **dict(zip(keys, combo))})
    return out[:max(trials, 1)]


def tune(X_in, y_in, w_in, X_out, y_out, hp, trials, seed, threads, imbalance, log):
    """Bounded random search on an inner time split of the training part, by AUC."""
    results = []
    best, best_auc = None, -1.0
    for i, cand in enumerate(candidates(hp, trials, seed)):
        booster, _, _ = train_failure(X_in, y_in, w_in, cand, seed, threads, imbalance)
        s = booster.predict(X_out)
        auc = float(roc_auc_score(y_out, s)) if 0 < y_out.sum() < len(y_out) else float("nan")
        results.append({"trial": i, "hyperparameters": cand, "auc": auc})
        log(i, cand, auc)
        if auc > best_auc:
            best, best_auc = cand, auc
    return (best or {**DEFAULT_HP, **hp}), results
