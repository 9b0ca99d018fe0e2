"""Train/serve parity of the feature table: `prognos features` (the live dataflow)
on a simulated day against
  - an exact recomputation of the definitions (two-pass with math.fsum) to 1e-12
    relative, on a sample of rows, and
  - an independent pandas computation (merge_asof backward with tolerance,
    rolling(f"{W}s", closed="right")) to 1e-7 relative on every row,
covering every feature family of the example config: derived signals (difference,
deviation, median deviation), current values, lags, deltas, rolling windows and pooled features.

A deviation (a value minus its rolling mean) and everything computed from one is
compared relative to the magnitude of the values the mean was taken of: the mean's
rounding error is relative to them, and the deviation itself may cancel to ~0.
"""

import math
import statistics
import subprocess
import tomllib
import warnings

import numpy as np
import pandas as pd
import pytest

ORGS = ["acme-heat", "borealis-forge", "cobalt-thermal"]
DEVIATIONS = {"deviation", "median_deviation"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, prognos_bin, example_config):
    sim = tmp_path_factory.mktemp("sim")
    out = tmp_path_factory.mktemp("features")
    subprocess.run([str(prognos_bin), "simulate", "--orgs", "3", "--machines", "3", "--hours", "12",
                    "--seed", "5", "--failure-rate", "2", "--out", str(sim)], check=True, capture_output=True)
    subprocess.run([str(prognos_bin), "features", "--config", str(example_config), "-w", "2",
                    "--input", *[str(sim / f"{o}.jsonl") for o in ORGS], "--out", str(out)],
                   check=True, capture_output=True)
    cfg = tomllib.loads(example_config.read_text())
    return sim, out, cfg


def feature_spec(org, tol_ms):
    f = org.get("features", {})
    derived = f.get("derived", [])
    signals = [s["name"] for s in org["signals"]] + [d["name"] for d in derived]
    kinds = {s["name"]: s["kind"] for s in org["signals"]} | {d["name"]: "continuous" for d in derived}
    return dict(signals=signals, kinds=kinds, derived=derived, current=f.get("current", signals),
                fsig=f.get("signals", signals), lags=f.get("lags_s", [60, 120, 300]),
                deltas=f.get("deltas_s", []), windows=f.get("windows_s", [180, 300, 600]),
                stats=f.get("stats", ["mean", "std", "min", "max"]), pooled=f.get("pooled", []),
                tol_ms=tol_ms)


def pooled_features(spec):
    """(name, stat, member feature names) of each pooled feature, in feature order."""
    sfx = [f"_lag_{lag}s" for lag in spec["lags"]] + [f"_delta_{lag}s" for lag in spec["deltas"]] \
        + [f"_rolling_{w}s_{st}" for w in spec["windows"] for st in spec["stats"]]
    for p in spec["pooled"]:
        with_current = all(m in spec["current"] for m in p["of"])
        for st in p["stats"]:
            for s in ([""] if with_current else []) + sfx:
                yield f"{p['name']}_{st}{s}", st, [f"{m}{s}" for m in p["of"]]


def pool(stat, xs):
    """max / min / max_abs over the members (arrays or scalars), NaN ignored."""
    a = np.vstack([np.atleast_1d(np.asarray(x, dtype=float)) for x in xs])
    if stat == "max_abs":
        a = np.abs(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        return (np.nanmin if stat == "min" else np.nanmax)(a, axis=0)


def canonical(sim, org_id, org):
    """The org's raw rows mapped to canonical signals, as the schema mapper would."""
    raw = pd.read_json(sim / f"{org_id}.jsonl", lines=True, dtype=False)
    t = raw[org["time_column"]]
    ts = (pd.to_datetime(t, format="ISO8601", utc=True) if isinstance(t.iloc[0], str)
          else pd.to_datetime(t, unit="ms", utc=True))
    df = pd.DataFrame({"machine": raw[org["machine_column"]].astype(str), "ts": ts})
    for s in org["signals"]:
        df[s["name"]] = raw[s["column"]].astype(float)
    return df.sort_values(["machine", "ts"], kind="stable").reset_index(drop=True)


def with_derived_pandas(g, spec):
    """One machine's rows (sorted) plus the derived signals, by pandas; and per signal
    the magnitude its error is relative to (0: must be exact)."""
    g = g.copy()
    scale = {s: 0.0 for s in spec["signals"]}
    gi = g.set_index("ts")
    for d in spec["derived"]:
        a = g[d["of"][0]]
        if d["kind"] == "difference":
            g[d["name"]] = a - g[d["of"][1]]
        elif d["kind"] == "ratio":
            b = g[d["of"][1]]
            g[d["name"]] = a / b.where(b != 0)
        else:
            r = gi[d["of"][0]].rolling(f"{d['window_s']}s", closed="right")
            base = r.median() if d["kind"] == "median_deviation" else r.mean()
            g[d["name"]] = a.to_numpy() - base.to_numpy()
        gi = g.set_index("ts")
        ops = [scale[o] for o in d["of"]]
        mag = max(float(np.nanmax(np.abs(g[o].to_numpy()))) for o in d["of"])
        # pandas' rolling mean and variance drift by ~1e-8 of the magnitudes the
        # series has seen, so a deviation's features (values small next to their
        # operand's) are compared relative to the operand's magnitude, even a
        # median deviation's, which is itself exact.
        scale[d["name"]] = mag + sum(ops) if d["kind"] in DEVIATIONS or any(ops) else 0.0
    return g, scale


def test_example_config_covers_every_feature_family(example_config):
    """The parity tests below are only as wide as the example config."""
    cfg = tomllib.loads(example_config.read_text())
    for org_id in ORGS:
        spec = feature_spec(cfg["orgs"][org_id], 60_000)
        assert spec["lags"] and spec["deltas"] and spec["windows"], org_id
        kinds = {d["kind"] for d in spec["derived"]}
        assert "difference" in kinds and kinds & DEVIATIONS, org_id
        derived = {d["name"] for d in spec["derived"]}
        assert derived & set(spec["fsig"]) and derived & set(spec["current"]), org_id
        # A deviation of a derived signal (chained) is covered too.
        assert any(d["kind"] in DEVIATIONS and d["of"][0] in derived for d in spec["derived"]), org_id
    kinds = {d["kind"] for o in ORGS for d in feature_spec(cfg["orgs"][o], 60_000)["derived"]}
    assert DEVIATIONS <= kinds, "both deviation baselines"
    pools = [p for o in ORGS for p in feature_spec(cfg["orgs"][o], 60_000)["pooled"]]
    assert {st for p in pools for st in p["stats"]} == {"max", "min", "max_abs"}, "every pool statistic"


def pandas_features(df, spec):
    """pandas' own computation, plus per column the magnitude its error is relative to
    (`__scale` columns): pandas' running variance is exact only to about 1e-8 of the
    data's magnitude (e.g. 3e-6 on a window of constant 100.0 after a 0.0 left it), so
    std is compared relative to the window's magnitude, not to a std that may be 0;
    features of a deviation relative to the deviation's operand magnitude."""
    sp = spec
    kinds, fsig, tol = sp["kinds"], sp["fsig"], pd.Timedelta(milliseconds=sp["tol_ms"])
    parts = []
    for machine, g in df.groupby("machine", sort=True):
        g = g.sort_values("ts").reset_index(drop=True)
        g, sig_scale = with_derived_pandas(g, sp)
        out = pd.DataFrame({"machine": machine, "ts": g["ts"]})

        def put(name, values, s, window_scale=None):
            out[name] = values
            sc = np.full(len(g), sig_scale[s])
            if window_scale is not None:
                sc = np.maximum(sc, window_scale)
            out[name + "__scale"] = sc
        for s in sp["current"]:
            put(s, g[s].to_numpy(), s)
        right = g[["ts"] + fsig].rename(columns={"ts": "lag_ts"})

        def lagged(s, lag):
            left = pd.DataFrame({"key": g["ts"] - pd.Timedelta(seconds=lag)})
            m = pd.merge_asof(left, right[["lag_ts", s]], left_on="key", right_on="lag_ts",
                              direction="backward", tolerance=tol)
            return m[s].to_numpy()
        for s in fsig:
            for lag in sp["lags"]:
                put(f"{s}_lag_{lag}s", lagged(s, lag), s)
        for s in fsig:
            for lag in sp["deltas"]:
                put(f"{s}_delta_{lag}s", g[s].to_numpy() - lagged(s, lag), s)
        gi = g.set_index("ts")
        for s in fsig:
            for w in sp["windows"]:
                r = gi[s].rolling(f"{w}s", closed="right")
                if kinds[s] == "boolean":
                    put(f"{s}_rolling_{w}s_rate", r.mean().to_numpy(), s)
                    continue
                mag = gi[s].abs().rolling(f"{w}s", closed="right").max().to_numpy()
                for st in sp["stats"]:
                    put(f"{s}_rolling_{w}s_{st}", getattr(r, st)().to_numpy(), s,
                        mag if st == "std" else None)
        for name, st, members in pooled_features(sp):
            out[name] = pool(st, [out[m].to_numpy() for m in members])
            out[name + "__scale"] = np.max([out[m + "__scale"].to_numpy() for m in members], axis=0)
        parts.append(out.copy())
    return pd.concat(parts).sort_values(["machine", "ts"]).reset_index(drop=True)


def to_ms(ts):
    """Epoch milliseconds of a tz-aware datetime column."""
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)


def exact_values(g, spec):
    """One machine's declared values plus its derived signals computed exactly (a
    deviation's mean by math.fsum over its window, a median deviation's median by
    statistics.median), and per signal the magnitude its
    error is relative to."""
    times = to_ms(g["ts"])
    vals = {s: g[s].to_numpy(dtype=float) for s in g.columns if s not in ("machine", "ts")}
    scale = {s: 0.0 for s in spec["signals"]}
    for d in spec["derived"]:
        a = vals[d["of"][0]]
        if d["kind"] == "difference":
            v = a - vals[d["of"][1]]
        elif d["kind"] == "ratio":
            b = vals[d["of"][1]]
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(b == 0, np.nan, a / b)
        else:
            lo = np.searchsorted(times, times - d["window_s"] * 1000, side="right")
            v = np.empty(len(a))
            base = statistics.median if d["kind"] == "median_deviation" else lambda xs: math.fsum(xs) / len(xs)
            for i in range(len(a)):
                xs = [x for x in a[lo[i]:i + 1] if not math.isnan(x)]
                v[i] = a[i] - base(xs) if xs and not math.isnan(a[i]) else math.nan
        vals[d["name"]] = v
        ops = [scale[o] for o in d["of"]]
        mag = max(float(np.nanmax(np.abs(vals[o]))) for o in d["of"])
        # A median of exact values is exact; a mean is not.
        scale[d["name"]] = mag + sum(ops) if d["kind"] == "deviation" or any(ops) else 0.0
    return times, vals, scale


def exact_row(times, vals, scale, i, spec):
    """Exact recomputation of row i's features, each with the magnitude its error is
    relative to."""
    sp = spec
    kinds = sp["kinds"]
    t = int(times[i])
    out = {}

    def lag_row(lag):
        target = t - lag * 1000
        j = int(np.searchsorted(times, target, side="right")) - 1
        return j if j >= 0 and times[j] >= target - sp["tol_ms"] else None

    def window(s, w):
        a = int(np.searchsorted(times, t - w * 1000, side="right"))
        return [x for x in vals[s][a:i + 1] if not math.isnan(x)]
    for s in sp["current"]:
        out[s] = (vals[s][i], scale[s])
    for s in sp["fsig"]:
        for lag in sp["lags"]:
            j = lag_row(lag)
            out[f"{s}_lag_{lag}s"] = (vals[s][j] if j is not None else math.nan, scale[s])
    for s in sp["fsig"]:
        for lag in sp["deltas"]:
            j = lag_row(lag)
            out[f"{s}_delta_{lag}s"] = (vals[s][i] - vals[s][j] if j is not None else math.nan, 2 * scale[s])
    for s in sp["fsig"]:
        for w in sp["windows"]:
            xs = window(s, w)
            n = len(xs)
            mean = math.fsum(xs) / n if n else math.nan
            if kinds[s] == "boolean":
                out[f"{s}_rolling_{w}s_rate"] = (mean, 0.0)
                continue
            for st in sp["stats"]:
                if st == "mean":
                    v = mean
                elif st == "std":
                    v = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n >= 2 else math.nan
                elif st == "min":
                    v = min(xs) if n else math.nan
                else:
                    v = max(xs) if n else math.nan
                out[f"{s}_rolling_{w}s_{st}"] = (v, 2 * scale[s])
    for name, st, members in pooled_features(sp):
        out[name] = (float(pool(st, [out[m][0] for m in members])[0]), max(out[m][1] for m in members))
    return out


def assert_close(have, want, rel, what, scale=None):
    have, want = np.asarray(have, dtype=float), np.asarray(want, dtype=float)
    assert (np.isnan(have) == np.isnan(want)).all(), f"{what}: NaN pattern differs"
    m = ~np.isnan(want)
    scale = np.maximum(np.abs(want[m]), 1.0) if scale is None else \
        np.maximum(np.maximum(np.abs(want[m]), np.asarray(scale, dtype=float)[m]), 1.0)
    err = np.abs(have[m] - want[m]) / scale
    assert err.max(initial=0.0) <= rel, f"{what}: max rel error {err.max():.3g} > {rel}"


@pytest.mark.parametrize("org_id", ORGS)
def test_features_match_pandas(run, org_id):
    sim, out, cfg = run
    org = cfg["orgs"][org_id]
    spec = feature_spec(org, cfg["runtime"]["lag_tolerance_ms"])
    table = pd.read_parquet(out / f"{org_id}.parquet").sort_values(["machine", "ts"]).reset_index(drop=True)
    df = canonical(sim, org_id, org)
    assert len(table) == len(df), "one feature row per input row"
    ref = pandas_features(df, spec)
    names = [c for c in table.columns if c not in ("org", "machine", "ts")]
    ref_names = [c for c in ref.columns if c not in ("machine", "ts") and not c.endswith("__scale")]
    assert names == ref_names, "feature names and order"
    assert (table["ts"].to_numpy() == ref["ts"].to_numpy()).all()
    for c in names:
        assert_close(table[c], ref[c], 1e-7, f"{org_id}.{c}", ref[c + "__scale"])


@pytest.mark.parametrize("org_id", ORGS)
def test_features_match_exact_recomputation(run, org_id):
    sim, out, cfg = run
    org = cfg["orgs"][org_id]
    spec = feature_spec(org, cfg["runtime"]["lag_tolerance_ms"])
    table = pd.read_parquet(out / f"{org_id}.parquet")
    df = canonical(sim, org_id, org)
    rng = np.random.default_rng(11)
    checked = 0
    for machine, g in df.groupby("machine"):
        g = g.sort_values("ts").reset_index(drop=True)
        t = table[table["machine"] == machine].sort_values("ts").reset_index(drop=True)
        times, vals, scale = exact_values(g, spec)
        for i in rng.choice(len(g), size=120, replace=False):
            want = exact_row(times, vals, scale, int(i), spec)
            assert list(want) == [c for c in t.columns if c not in ("org", "machine", "ts")]
            for name, (v, sc) in want.items():
                have = t[name].iloc[i]
                if math.isnan(v):
                    assert math.isnan(have), (org_id, machine, i, name)
                else:
                    assert abs(have - v) <= 1e-12 * max(abs(v), sc, 1.0), (org_id, machine, i, name, have, v)
            checked += 1
    assert checked == 360


def test_same_table_for_any_worker_count(run, tmp_path, prognos_bin, example_config):
    sim, out, _ = run
    inputs = [str(sim / f"{o}.jsonl") for o in ORGS]
    for workers in (1, 4):
        dest = tmp_path / f"w{workers}"
        subprocess.run([str(prognos_bin), "features", "--config", str(example_config), "-w", str(workers),
                        "--input", *inputs, "--out", str(dest)], check=True, capture_output=True)
        for o in ORGS:
            assert (dest / f"{o}.parquet").read_bytes() == (out / f"{o}.parquet").read_bytes(), (o, workers)
