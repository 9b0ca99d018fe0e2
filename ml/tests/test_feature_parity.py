"""Train/serve parity of the feature table: `prognos features` (the live dataflow)
on a simulated day against
  - an exact recomputation of the definitions (two-pass with math.fsum) to 1e-12
    relative, on a sample of rows, and
  - an independent pandas computation (merge_asof backward with tolerance,
    rolling(f"{W}s", closed="right")) to 1e-7 relative on every row.
"""

import math
import subprocess
import tomllib

import numpy as np
import pandas as pd
import pytest

ORGS = ["acme-heat", "borealis-forge", "cobalt-thermal"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, prognos_bin, example_config):
    sim = tmp_path_factory.mktemp("sim")
    out = tmp_path_factory.mktemp("features")
    subprocess.run([str(prognos_bin), "simulate", "--orgs", "3", "--machines", "3", "--hours", "24",
                    "--seed", "5", "--failure-rate", "2", "--out", str(sim)], check=True, capture_output=True)
    subprocess.run([str(prognos_bin), "features", "--config", str(example_config), "-w", "2",
                    "--input", *[str(sim / f"{o}.jsonl") for o in ORGS], "--out", str(out)],
                   check=True, capture_output=True)
    cfg = tomllib.loads(example_config.read_text())
    return sim, out, cfg


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


def feature_spec(org, tol_ms):
    signals = [s["name"] for s in org["signals"]]
    kinds = {s["name"]: s["kind"] for s in org["signals"]}
    f = org.get("features", {})
    fsig = f.get("signals", signals)
    return signals, kinds, fsig, f.get("lags_s", [60, 120, 300]), f.get("windows_s", [180, 300, 600]), \
        f.get("stats", ["mean", "std", "min", "max"]), tol_ms


def pandas_features(df, spec):
    """pandas' own computation, plus for each std column the magnitude of the values in
    its window (`__scale` columns): pandas' running variance is exact only to about
    1e-8 of that magnitude (e.g. 3e-6 on a window of constant 100.0 after a 0.0 left it),
    so std is compared relative to the data's scale, not to a std that may be 0."""
    signals, kinds, fsig, lags, windows, stats, tol_ms = spec
    parts = []
    for machine, g in df.groupby("machine", sort=True):
        g = g.sort_values("ts").reset_index(drop=True)
        out = pd.DataFrame({"machine": machine, "ts": g["ts"]})
        for s in signals:
            out[s] = g[s]
        right = g[["ts"] + fsig].rename(columns={"ts": "lag_ts"})
        for s in fsig:
            for lag in lags:
                left = pd.DataFrame({"key": g["ts"] - pd.Timedelta(seconds=lag)})
                m = pd.merge_asof(left, right[["lag_ts", s]], left_on="key", right_on="lag_ts",
                                  direction="backward", tolerance=pd.Timedelta(milliseconds=tol_ms))
                out[f"{s}_lag_{lag}s"] = m[s].to_numpy()
        gi = g.set_index("ts")
        for s in fsig:
            for w in windows:
                r = gi[s].rolling(f"{w}s", closed="right")
                if kinds[s] == "boolean":
                    out[f"{s}_rolling_{w}s_rate"] = r.mean().to_numpy()
                else:
                    for st in stats:
                        out[f"{s}_rolling_{w}s_{st}"] = getattr(r, st)().to_numpy()
                    out[f"{s}_rolling_{w}s_std__scale"] = (
                        gi[s].abs().rolling(f"{w}s", closed="right").max().to_numpy())
        parts.append(out.copy())
    return pd.concat(parts).sort_values(["machine", "ts"]).reset_index(drop=True)


def to_ms(ts):
    """Epoch milliseconds of a tz-aware datetime column."""
    return ((ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)


def exact_row(g, i, spec):
    """Exact recomputation of one row's features from the machine's rows g (sorted)."""
    signals, kinds, fsig, lags, windows, stats, tol_ms = spec
    times = to_ms(g["ts"])
    t = int(times[i])
    vals = {}
    for s in signals:
        vals[s] = g[s].iloc[i]
    for s in fsig:
        for lag in lags:
            target = t - lag * 1000
            j = int(np.searchsorted(times, target, side="right")) - 1
            ok = j >= 0 and times[j] >= target - tol_ms
            vals[f"{s}_lag_{lag}s"] = g[s].iloc[j] if ok else math.nan
    for s in fsig:
        for w in windows:
            a = int(np.searchsorted(times, t - w * 1000, side="right"))
            xs = [x for x in g[s].iloc[a:i + 1] if not math.isnan(x)]
            n = len(xs)
            mean = math.fsum(xs) / n if n else math.nan
            if kinds[s] == "boolean":
                vals[f"{s}_rolling_{w}s_rate"] = mean
                continue
            for st in stats:
                if st == "mean":
                    v = mean
                elif st == "std":
                    v = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n >= 2 else math.nan
                elif st == "min":
                    v = min(xs) if n else math.nan
                else:
                    v = max(xs) if n else math.nan
                vals[f"{s}_rolling_{w}s_{st}"] = v
    return vals


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
        scale = ref[c + "__scale"] if c.endswith("_std") else None
        assert_close(table[c], ref[c], 1e-7, f"{org_id}.{c}", scale)


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
        for i in rng.choice(len(g), size=120, replace=False):
            want = exact_row(g, int(i), spec)
            for name, v in want.items():
                have = t[name].iloc[i]
                if math.isnan(v):
                    assert math.isnan(have), (org_id, machine, i, name)
                else:
                    assert abs(have - v) <= 1e-12 * max(abs(v), 1.0), (org_id, machine, i, name, have, v)
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
