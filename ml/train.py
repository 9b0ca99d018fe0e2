#!/usr/bin/env python3
"""Train one model version (failure, component, time-to-failure) for one org.

    python ml/train.py --org ORG --config CONFIG.toml --features FEATS/ORG.parquet \
        [--events EVENTS.jsonl] [--feedback FEEDBACK.jsonl] --out VERSION_DIR --version VERSION \
        [--tune] [--trials N] [--seed S] [--threads T] [--imbalance POWER|sqrt|scale_pos_weight|none]
        [--max-negatives N] [--lead-weight W] [--folds K] [--no-report]

Progress: one JSON object per line on stdout ({"stage", "message", ...}); the last line
is {"stage": "done", "metrics": {...}}. Errors: a message on stderr and a non-zero exit
(2: bad input / cannot train, 3: ONNX parity check failed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# OpenMP threads spin while waiting; on a shared machine that makes LightGBM 5-10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from prognos_ml import folds as F  # noqa: E402
from prognos_ml import labels as L  # noqa: E402
from prognos_ml import metrics as M  # noqa: E402
from prognos_ml import models as MD  # noqa: E402
from prognos_ml import onnx_export as OX  # noqa: E402
from prognos_ml.common import (TrainError, emit, fmt_ms, load_org_settings, longest_window_ms,  # noqa: E402
                               now_rfc3339, read_features, write_json)

TEST_VECTOR_ROWS = 8


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--org", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--features", required=True, help="the org's Parquet feature table")
    p.add_argument("--events", help="failure events JSONL (work orders, ground truth): labels are these "
                                      "together with the rising edges of the org's failure_signals")
    p.add_argument("--feedback", help="operator feedback JSONL (alerts with isAccurate)")
    p.add_argument("--out", required=True, help="version directory to write")
    p.add_argument("--version", required=True)
    p.add_argument("--tune", action="store_true", help="bounded random search on an inner time split")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=int(os.environ.get("PROGNOS_TRAIN_THREADS", "2")))
    p.add_argument("--imbalance", default=MD.DEFAULT_IMBALANCE,
                   help="class weighting of the failure model, scale_pos_weight = (neg/pos)^power: a power "
                        f"in (0, 1] (default {MD.DEFAULT_IMBALANCE}), sqrt (0.5), scale_pos_weight (1) or none")
    p.add_argument("--max-negatives", type=int,
                   default=int(os.environ.get("PROGNOS_TRAIN_MAX_NEGATIVES", str(MD.MAX_NEGATIVES))),
                   help="train the failure model on at most this many negative rows (a seeded random "
                        "subset, weighted up so the class balance is unchanged); 0 = all")
    p.add_argument("--lead-weight", type=float,
                   default=float(os.environ.get("PROGNOS_TRAIN_LEAD_WEIGHT", str(MD.DEFAULT_LEAD_WEIGHT))),
                   help="weight a real positive row by 1 + W * (minutes to the failure / horizon), then "
                        "rescale the positives to their former total: the early warnings count more "
                        f"(default {MD.DEFAULT_LEAD_WEIGHT}; 0 = every positive alike)")
    p.add_argument("--folds", type=int, default=_env_int("PROGNOS_TRAIN_FOLDS"),
                   help="machine-grouped validation folds, one extra failure model each (default: the org's "
                        f"training.validation_folds, else {F.DEFAULT_FOLDS}; 0 or 1 = none)")
    p.add_argument("--no-report", action="store_true", help="skip report.png")
    p.add_argument("--failures-out", help="write the failures labelled (observed starts: work orders, given "
                                          "events, failure-signal edges) here as failure events JSONL")
    return p.parse_args(argv)


def _env_int(name):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


class Log:
    def __init__(self):
        self.t0 = time.time()
        self.entries = []

    def __call__(self, stage, message, **extra):
        e = {"stage": stage, "message": message, "elapsedSeconds": round(time.time() - self.t0, 3), **extra}
        self.entries.append({"at": now_rfc3339(), **e})
        emit(**e)


def pick_test_rows(ts_val_idx: np.ndarray, X: np.ndarray, y: np.ndarray, score: np.ndarray, rng) -> np.ndarray:
    """8 rows: highest-scored, positives, natural-NaN rows, then random; two get extra NaN."""
    idx = ts_val_idx
    chosen: list[int] = []

    def add(cands, k):
        for c in cands:
            if len(chosen) >= TEST_VECTOR_ROWS or k <= 0:
                break
            if c not in chosen:
                chosen.append(int(c))
                k -= 1

    add(idx[np.argsort(-score)][:2], 2)
    add(rng.permutation(idx[y[idx] == 1]), 2)
    add(rng.permutation(idx[np.isnan(X[idx]).any(axis=1)]), 1)
    add(rng.permutation(idx), TEST_VECTOR_ROWS)
    return np.array(chosen[:TEST_VECTOR_ROWS])


def fold_count(args, s) -> int:
    """--folds (or PROGNOS_TRAIN_FOLDS), else the org's training.validation_folds, else the default."""
    if args.folds is not None:
        return args.folds
    return s.validation_folds if s.validation_folds is not None else F.DEFAULT_FOLDS


def validate_folds(args, s, ft, lab, failures, hp, gap, log) -> dict:
    """The machine-grouped, time-respecting folds (`prognos_ml/folds.py`): per fold one
    failure model with the run's hyperparameters, seed and negatives rule (ensemble member
    0's settings), scored by LightGBM on the fold's validation rows at the org's alarm
    rule; figures per fold and pooled over the folds."""
    k = fold_count(args, s)
    out = {"configured": k, "k": 0, "perFold": [], "pooled": None, "enoughEvents": False}
    fs = F.FoldSettings(folds=k, gap_ms=gap, seed=args.seed)
    folds = []
    if k >= 2:
        try:
            vstart, vend = F.validation_window(ft.ts, fs)
            folds = F.grouped_folds(ft.machine, ft.ts, fs, F.failures_per_machine(failures, vstart, vend))
        except TrainError as e:
            out["disabled"] = str(e)
    if not folds:
        out.setdefault("disabled", f"{k} folds configured" if k < 2 else "fewer than two machines")
        log("folds", f"skipped: {out['disabled']}")
        return out
    out.update(k=len(folds), seed=args.seed, validationFraction=fs.validation_fraction, gapMs=gap,
               validationStart=fmt_ms(folds[0].validation_start), validationEnd=fmt_ms(folds[0].validation_end))
    results = []
    for f in folds:
        t0 = time.time()
        entry = {"fold": f.index, "machines": f.machines}
        tr = np.zeros(len(ft), bool)
        tr[f.train] = True
        tr &= ~lab.excluded
        v = f.validation
        if lab.y[tr].sum() == 0 or not (~lab.excluded[v]).any():
            entry["skipped"] = "no positive training rows" if lab.y[tr].sum() == 0 else "no validation rows"
            out["perFold"].append(entry)
            log("folds", f"fold {f.index + 1} of {len(folds)}: skipped, {entry['skipped']}", fold=f.index)
            continue
        idx, rate = MD.subsample_negatives(lab.y, lab.weight, np.flatnonzero(tr), args.max_negatives,
                                           np.random.default_rng([args.seed, 2, f.index]))
        X, y, w = ft.X[idx], lab.y[idx], lab.weight[idx].copy()
        w[(y == 0) & (w == 1.0)] /= rate
        if args.lead_weight:
            MD.weight_by_lead(w, lab.real_positive[idx], lab.ttf_min[idx], s.horizon_minutes, args.lead_weight)
        booster, _, _ = MD.train_failure(X, y, w, hp, args.seed, args.threads, args.imbalance)
        del X, w
        score = booster.predict(ft.X[v])
        m = M.all_metrics(ft.machine[v], ft.ts[v], score, lab.y[v], lab.excluded[v], failures, s.failure_threshold,
                          s.horizon_ms, f.validation_start, f.validation_end, s.for_ms, s.immediate_threshold)
        results.append(m)
        entry.update(trainRows=int(tr.sum()), trainPositives=int(lab.y[tr].sum()),
                     validationRows=int((~lab.excluded[v]).sum()), **M.figures(m))
        out["perFold"].append(entry)
        log("folds", f"fold {f.index + 1} of {len(folds)}: {len(f.machines)} machines, "
            f"{m['detectedFailures']} of {m['failures']} failures detected, "
            f"{m['falseAlarms']} false alarms in {m['machineDays']:.1f} machine-days",
            fold=f.index, failures=m["failures"], detectedFailures=m["detectedFailures"],
            falseAlarms=m["falseAlarms"], seconds=round(time.time() - t0, 3))
    if results:
        out["pooled"] = M.figures(M.pool(results))
        out["enoughEvents"] = out["pooled"]["failures"] >= s.min_validation_events
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    MD.imbalance_power(args.imbalance)  # refuse a bad value before any work
    log = Log()
    s = load_org_settings(args.config, args.org)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    # ---- load
    sig_cols = [fs["signal"] for fs in s.failure_signals]
    ft = read_features(args.features, args.org, keep=sig_cols)
    names = ft.feature_names
    log("load", f"read {len(ft)} rows x {len(names)} features", rows=len(ft), features=len(names))

    # ---- labels
    failures, source = L.failures_for(ft, s, args.events, args.org)
    lab = L.label_rows(ft.machine, ft.ts, failures, s.horizon_ms)
    fb_counts = None
    if args.feedback:
        fb_counts = L.apply_feedback(lab, ft.machine, ft.ts, L.read_feedback(args.feedback, args.org), s.horizon_ms)
    log("label", f"{len(failures)} failures from {source}; {int((lab.y[~lab.excluded] == 1).sum())} positive rows, "
        f"{int(lab.excluded.sum())} excluded", failures=len(failures), source=source, feedback=fb_counts)

    if args.failures_out:
        import json
        with open(args.failures_out, "w") as f:
            for r in failures[failures["observedStart"]].itertuples():
                f.write(json.dumps({"organizationId": args.org, "machineId": str(r.machine),
                                    "component": str(r.component), "start": fmt_ms(int(r.start)),
                                    "end": fmt_ms(int(r.end))}) + "\n")

    # ---- split
    gap = s.horizon_ms + longest_window_ms(names, s)
    sp = L.time_split(ft.ts, s.validation_split, gap)
    tr_all, va_all = sp.masks(ft.ts)
    tr = tr_all & ~lab.excluded
    va = va_all & ~lab.excluded
    if lab.y[tr].sum() == 0:
        raise TrainError(f"no positive rows in the training part ({fmt_ms(sp.data_start)} .. {fmt_ms(sp.train_end)}): "
                         "no failure starts there")
    if tr.sum() == 0 or va.sum() == 0:
        raise TrainError("empty training or validation part")
    log("split", f"train < {fmt_ms(sp.train_end)}, validation >= {fmt_ms(sp.validation_start)} (gap {gap // 1000} s)",
        trainRows=int(tr.sum()), validationRows=int(va.sum()))

    def member_rows(seed):
        """Training rows of one failure model: its own seeded draw of negatives."""
        idx, rate = MD.subsample_negatives(lab.y, lab.weight, np.flatnonzero(tr), args.max_negatives,
                                           np.random.default_rng([seed, 1]))
        X, y, w = ft.X[idx], lab.y[idx], lab.weight[idx].copy()
        w[(y == 0) & (w == 1.0)] /= rate
        if args.lead_weight:
            MD.weight_by_lead(w, lab.real_positive[idx], lab.ttf_min[idx], s.horizon_minutes, args.lead_weight)
        return idx, X, y, w, rate

    tr_idx, X_tr, y_tr, w_tr, neg_rate = member_rows(args.seed)
    if neg_rate < 1.0:
        log("split", f"negatives subsampled: {len(tr_idx)} of {int(tr.sum())} training rows kept, "
            f"negative weight x{1 / neg_rate:.2f}", keptRows=int(len(tr_idx)), negativeRate=neg_rate)

    # ---- tune
    hp = {**MD.DEFAULT_HP, **s.hyperparameters}
    tuning = None
    if args.tune:
        tr_ts = ft.ts[tr]
        try:
            inner = L.time_split(tr_ts, 0.2, gap, start=sp.data_start, end=int(tr_ts.max()))
            a, b = inner.masks(tr_ts)
        except TrainError as e:
            inner, a, b = None, np.zeros(len(tr_ts), bool), np.zeros(len(tr_ts), bool)
            log("tune", f"skipped: {e}")
        if inner is None:
            pass
        elif y_tr[a].sum() == 0 or y_tr[b].sum() == 0:
            log("tune", "skipped: the inner split has no positives on one side")
        else:
            def tlog(i, cand, auc):
                log("tune", f"trial {i}: auc {auc:.4f}", trial=i, auc=auc,
                    hyperparameters={k: cand[k] for k in MD.SEARCH_SPACE})
            hp, results = MD.tune(X_tr[a], y_tr[a], w_tr[a], X_tr[b], y_tr[b], s.hyperparameters,
                                  min(args.trials, 100), args.seed, args.threads, args.imbalance, tlog)
            tuning = {"trials": results, "best": hp, "innerSplit": {
                "trainEnd": fmt_ms(inner.train_end), "validationStart": fmt_ms(inner.validation_start)}}

    # ---- train
    seeds = [MD.member_seed(args.seed, i) for i in range(s.ensemble)]
    boosters = []
    for i, seed in enumerate(seeds):
        if i > 0:  # member 0 reuses the rows drawn (and tuned on) above
            del X_tr, w_tr
            _, X_tr, y_tr, w_tr, _ = member_rows(seed)
        booster, fparams, rounds = MD.train_failure(X_tr, y_tr, w_tr, hp, seed, args.threads, args.imbalance)
        boosters.append(OX.float32_exact(booster))
        member = f" (ensemble member {i + 1} of {len(seeds)}, seed {seed})" if len(seeds) > 1 else ""
        log("train", f"failure model: {rounds} rounds{member}", model="failure", seed=seed)
    del X_tr, w_tr
    failure = MD.Ensemble(boosters)

    comp_rows = tr & lab.real_positive
    if not comp_rows.any():
        raise TrainError("no failure starts in the training part (only feedback positives): "
                         "cannot train the component and time-to-failure models")
    seen = set(lab.component[comp_rows])
    order = [c for c in s.components_in_order() if c in seen] + sorted(seen - set(s.components_in_order()))
    X_pos = ft.X[comp_rows]
    if len(order) >= 2:
        cls = np.array([order.index(c) for c in lab.component[comp_rows]])
        comp_booster, cparams = MD.train_component(X_pos, cls, len(order), hp, args.seed, args.threads)
        comp_booster = OX.float32_exact(comp_booster)
        log("train", f"component model: {len(order)} classes on {len(cls)} rows", model="component")
    else:
        comp_booster, cparams = None, {"fallback": "constant"}
        if not order:
            order = [s.general_component]
        log("train", f"component model: only {order[0]!r} seen, constant model", model="component")
    ttf_booster, tparams = MD.train_ttf(X_pos, lab.ttf_min[comp_rows], hp, args.seed, args.threads)
    ttf_booster = OX.float32_exact(ttf_booster)
    log("train", f"time-to-failure model on {int(comp_rows.sum())} rows", model="ttf")

    # ---- export + parity
    n_f = len(names)
    m_fail = OX.convert_failure(failure.boosters, n_f, f"{args.org}-{args.version}-failure")
    m_comp = (OX.convert(comp_booster, n_f, f"{args.org}-{args.version}-component") if comp_booster
              else OX.constant_classifier(n_f, f"{args.org}-{args.version}-component"))
    m_ttf = OX.convert(ttf_booster, n_f, f"{args.org}-{args.version}-ttf")
    sessions = {k: OX.session(m) for k, m in (("failure", m_fail), ("component", m_comp), ("ttf", m_ttf))}
    log("export", "converted to ONNX", opset=OX.OPSET)

    Xv_all = ft.X[va_all]
    refs = {
        "failure": failure.predict(Xv_all),
        "component": comp_booster.predict(Xv_all) if comp_booster else np.ones((len(Xv_all), 1)),
        "ttf": ttf_booster.predict(Xv_all),
    }
    deltas = {k: OX.parity_check(k, refs[k], sessions[k], Xv_all) for k in refs}
    log("parity", "LightGBM and onnxruntime agree on the validation set", maxAbsDelta=deltas,
        rows=int(len(Xv_all)))

    # ---- metrics (on the exported failure model's onnxruntime scores)
    score_all = OX.onnx_outputs("failure", sessions["failure"], Xv_all)
    metrics = M.all_metrics(ft.machine[va_all], ft.ts[va_all], score_all, lab.y[va_all], lab.excluded[va_all],
                            failures, s.failure_threshold, s.horizon_ms, sp.validation_start, sp.validation_end,
                            s.for_ms, s.immediate_threshold)
    pos_va = va & lab.real_positive
    extra = {}
    if pos_va.any():
        cp = OX.onnx_outputs("component", sessions["component"], ft.X[pos_va])
        pred_c = np.array(order)[cp.argmax(axis=1)]
        extra["componentAccuracy"] = float((pred_c == lab.component[pos_va]).mean())
        tt = OX.onnx_outputs("ttf", sessions["ttf"], ft.X[pos_va])
        extra["ttfMaeMinutes"] = float(np.abs(tt - lab.ttf_min[pos_va]).mean())
    metrics.update(extra)
    log("metrics", f"validation: auc {metrics['auc']}, event recall {metrics['eventRecall']}, "
        f"false alarms/machine-day {metrics['falseAlarmsPerMachineDay']}", metrics={
            k: metrics[k] for k in ("auc", "eventRecall", "medianLeadMinutes", "falseAlarmsPerMachineDay")})

    # ---- folds: more validation events than the holdout has, each by a model blind to its machine's future
    t_folds = time.time()
    fold_figures = validate_folds(args, s, ft, lab, failures, hp, gap, log)
    holdout = M.figures(metrics)
    validation = {
        "confidence": 0.95,
        "minEvents": s.min_validation_events,
        "enoughEvents": holdout["failures"] >= s.min_validation_events,
        "holdout": {"range": {"from": fmt_ms(sp.validation_start), "to": fmt_ms(sp.validation_end)}, **holdout},
        "folds": fold_figures,
    }
    if fold_figures["pooled"]:
        p = fold_figures["pooled"]
        log("folds", f"pooled over {fold_figures['k']} folds: {p['eventRecall']['detected']} of {p['failures']} "
            f"failures detected; holdout {holdout['failures']} failures (at least {s.min_validation_events} "
            f"needed to compare versions)", seconds=round(time.time() - t_folds, 3),
            enoughEvents=validation["enoughEvents"])

    # ---- test vector
    va_idx = np.flatnonzero(va_all)
    score_by_row = np.full(len(ft), -1.0)
    score_by_row[va_all] = score_all
    picks = pick_test_rows(va_idx, ft.X, lab.y * ~lab.excluded, score_by_row[va_idx], rng)
    tv = ft.X[picks].copy()
    if len(tv) >= 3:  # missing signals at serving time: a quarter, three, and all features NaN
        tv[-1, rng.choice(n_f, size=max(1, n_f // 4), replace=False)] = np.nan
        tv[-2, rng.choice(n_f, size=min(3, n_f), replace=False)] = np.nan
        tv[-3, :] = np.nan
    tv_ref = {"failure": failure.predict(tv),
              "component": comp_booster.predict(tv) if comp_booster else np.ones((len(tv), 1)),
              "ttf": ttf_booster.predict(tv)}
    for k in tv_ref:
        OX.parity_check(k, tv_ref[k], sessions[k], tv)
    test_vector = {
        "input": tv.astype(np.float64),
        "failureProbability": OX.onnx_outputs("failure", sessions["failure"], tv).astype(np.float64),
        "componentProbabilities": OX.onnx_outputs("component", sessions["component"], tv).astype(np.float64),
        "timeToFailureMinutes": OX.onnx_outputs("ttf", sessions["ttf"], tv).astype(np.float64),
    }

    # ---- artifacts
    import onnx
    onnx.save(m_fail, out / "failure.onnx")
    onnx.save(m_comp, out / "component.onnx")
    onnx.save(m_ttf, out / "ttf.onnx")

    def importance(b):
        g = b.feature_importance(importance_type="gain").astype(np.float64)
        tot = g.sum()
        return {n: (float(v / tot) if tot > 0 else 0.0) for n, v in zip(names, g)}

    fi = importance(failure)
    write_json(out / "feature_importance.json", {
        "importanceType": "gain", "normalized": "sum to 1 per model",
        "failure": fi,
        "component": importance(comp_booster) if comp_booster else None,
        "ttf": importance(ttf_booster)})

    metric_keys = ["accuracy", "precision", "recall", "auc", "confusionMatrix", "eventRecall",
                   "medianLeadMinutes", "p10LeadMinutes", "falseAlarmsPerMachineDay", "failures", "machineDays"]
    rows_info = {"train": int(tr.sum()), "validation": int(va.sum()), "trainPositives": int(y_tr.sum()),
                 "validationPositives": int(lab.y[va].sum()), "excluded": int(lab.excluded.sum())}
    split_info = {"trainEnd": fmt_ms(sp.train_end), "validationStart": fmt_ms(sp.validation_start),
                  "validationEnd": fmt_ms(sp.validation_end), "gapMs": sp.gap_ms,
                  "note": "train: ts < trainEnd; validation: validationStart <= ts < validationEnd (exclusive)"}
    write_json(out / "validation_metrics.json", {
        "organizationId": args.org, "version": args.version, "threshold": s.failure_threshold,
        "range": {"from": fmt_ms(sp.validation_start), "to": fmt_ms(sp.validation_end)},
        "metrics": metrics, "parityMaxAbsDelta": deltas, "validation": validation})

    meta = {
        "organizationId": args.org,
        "version": args.version,
        "createdAt": now_rfc3339(),
        "featureNames": names,
        "components": {str(i): c for i, c in enumerate(order)},
        "generalComponent": s.general_component,
        "thresholds": {"failure": s.failure_threshold, "confidence": s.confidence_threshold,
                       "stage2Gate": s.stage2_gate,
                       **({} if s.immediate_threshold is None else {"immediate": s.immediate_threshold})},
        "horizonMinutes": s.horizon_minutes,
        "timeToFailureMinutes": s.time_to_failure_minutes,
        "dataRange": {"start": fmt_ms(sp.data_start), "end": fmt_ms(sp.data_end)},
        "split": split_info,
        "rows": rows_info,
        "labels": {"source": source, "failures": int(len(failures)), "feedback": fb_counts},
        "hyperparameters": {**{k: hp[k] for k in hp}, "imbalance": args.imbalance,
                            "scalePosWeight": fparams.get("scale_pos_weight"), "seed": args.seed,
                            "negativeRate": neg_rate, "leadWeight": args.lead_weight,
                            "ensemble": len(seeds), "ensembleSeeds": seeds,
                            "tuned": bool(tuning)},
        "metrics": {k: metrics.get(k) for k in metric_keys} | extra,
        "validation": validation,
        "featureImportance": fi,
        "testVector": test_vector,
        "onnx": {"opset": OX.OPSET, "input": OX.INPUT_NAME,
                 "files": {"failure": "failure.onnx", "component": "component.onnx", "ttf": "ttf.onnx"},
                 "outputs": {"failure": ["label", "probabilities"], "component": ["label", "probabilities"],
                             "ttf": ["variable"]}},
    }
    write_json(out / "metadata.json", meta)

    if not args.no_report:
        from prognos_ml.report import write_report
        write_report(out / "report.png", lab.y[va], score_by_row[va], metrics.get("leadMinutes", []), fi,
                     f"{args.org} {args.version}", s.failure_threshold, validation)
    log("artifacts", f"wrote {out}")
    write_json(out / "training_log.json", {"organizationId": args.org, "version": args.version,
                                           "componentParams": cparams, "ttfParams": tparams,
                                           "failureParams": fparams, "numBoostRound": rounds,
                                           "tuning": tuning, "entries": log.entries})
    emit("done", f"version {args.version} trained in {time.time() - log.t0:.1f} s",
         metrics=meta["metrics"], elapsedSeconds=round(time.time() - log.t0, 3))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OX.ParityError as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(3)
    except (TrainError, ValueError, KeyError, FileNotFoundError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        if os.environ.get("PROGNOS_DEBUG"):
            traceback.print_exc()
        sys.exit(2)
