//! Feature state against a from-scratch reference: for every row it scans the
//! machine's earlier rows (lag by linear search, window statistics by a corrected
//! two-pass over the window with error-free summation), sharing no code with the
//! incremental implementation.

use std::sync::Arc;

use proptest::prelude::*;

use super::{FeatureSpec, MachineFeatures};
use crate::config::{
    Config, DerivedKind, DerivedSignalConfig, FeaturesConfig, OrgConfig, PoolStat, PooledConfig,
    SignalConfig, SignalKind, SignalLimits, Stat, TIME_TO_LIMIT_CAP_MIN,
};

const EXAMPLE: &str = include_str!("../../../config/prognos.example.toml");
const TOL: f64 = 1e-12;

fn example() -> Config {
    Config::from_toml_str(EXAMPLE).expect("example config is valid")
}

/// An org with the given signals and features, the rest borrowed from the example.
fn org_with(kinds: &[SignalKind], features: FeaturesConfig) -> OrgConfig {
    let mut org = example().orgs["cobalt-thermal"].clone();
    org.signals = kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| SignalConfig {
            name: format!("s{i}"),
            column: format!("c{i}"),
            kind,
            unit: None,
            limits: None,
        })
        .collect();
    org.features = features;
    org
}

/// Error-free summation (Shewchuk / Python's `math.fsum` partials).
fn fsum(xs: impl IntoIterator<Item = f64>) -> f64 {
    let mut partials: Vec<f64> = Vec::new();
    for mut x in xs {
        let mut i = 0;
        for j in 0..partials.len() {
            let mut y = partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        partials.truncate(i);
        partials.push(x);
    }
    partials.iter().rev().sum()
}

/// What a reference feature must be compared with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Copied or exactly computed values (current, lag, min, max, rate).
    Exact(f64),
    /// Mean or std: within `TOL` relative, or `TOL * scale` absolute (`scale` =
    /// largest |x| in the window) where cancellation makes relative error meaningless.
    Close { v: f64, scale: f64 },
    /// Anything computed from a deviation (a value minus a mean): within `TOL *
    /// scale` absolute, `scale` bounding the magnitudes the mean was taken of; no
    /// relative bound (the difference may cancel to ~0).
    Dev { v: f64, scale: f64 },
}

/// Every row's declared values followed by its derived ones, straight from the
/// config (a deviation's mean by error-free summation over a scan of the window),
/// and per value signal the magnitude its error is relative to: 0 for values the
/// implementation must reproduce exactly (declared signals, differences and
/// ratios of exact values), else a bound on the magnitudes that went into it.
fn expand(org: &OrgConfig, rows: &[(i64, Vec<f64>)]) -> (Vec<Vec<f64>>, Vec<f64>) {
    let names: Vec<&str> = org.value_signals().iter().map(|s| s.name).collect();
    let idx = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let directs: Vec<Option<(Direct, usize, usize)>> = org
        .features
        .derived
        .iter()
        .map(|d| d.expr.as_ref().map(|src| direct(src, &names)))
        .collect();
    let mut vals: Vec<Vec<f64>> = Vec::with_capacity(rows.len());
    for (j, (t, values)) in rows.iter().enumerate() {
        let mut v = values.clone();
        for (d, direct) in org.features.derived.iter().zip(&directs) {
            if let Some((f, a, b)) = *direct {
                v.push(direct_value(f, v[a], v[b]));
                continue;
            }
            let a = v[idx(&d.of[0])];
            let x = match d.kind {
                DerivedKind::Difference => a - v[idx(&d.of[1])],
                DerivedKind::Ratio => {
                    let b = v[idx(&d.of[1])];
                    if b == 0.0 { f64::NAN } else { a / b }
                }
                DerivedKind::Deviation | DerivedKind::MedianDeviation => {
                    // The operand's non-NaN samples in `(t - window, t]`.
                    let k = idx(&d.of[0]);
                    let lo = t - d.window_s.unwrap() as i64 * 1000;
                    let mut xs: Vec<f64> = (0..j)
                        .rev()
                        .take_while(|&q| rows[q].0 > lo)
                        .map(|q| vals[q][k])
                        .chain([a])
                        .filter(|x| !x.is_nan())
                        .collect();
                    xs.sort_by(f64::total_cmp);
                    let n = xs.len();
                    let base = match n {
                        _ if d.kind == DerivedKind::Deviation => exact_mean(&xs),
                        0 => f64::NAN,
                        _ if n % 2 == 1 => xs[n / 2],
                        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
                    };
                    a - base
                }
                DerivedKind::ToLimit | DerivedKind::TimeToLimit => {
                    let l = org.signal(&d.of[0]).and_then(|s| s.limits.clone());
                    let (high, low) = l.map_or((None, None), |l| (l.high, l.low));
                    if d.kind == DerivedKind::ToLimit {
                        crate::config::distance_to_limit(a, high, low)
                    } else if a.is_nan() {
                        f64::NAN
                    } else {
                        // The operand's finite samples in `[t - window, t]`, fitted
                        // in two passes.
                        let k = idx(&d.of[0]);
                        let w = d.window_s.unwrap() as i64 * 1000;
                        let mut pts: Vec<(i64, f64)> = (0..j)
                            .filter(|&q| rows[q].0 >= t - w && vals[q][k].is_finite())
                            .map(|q| (rows[q].0, vals[q][k]))
                            .collect();
                        pts.push((*t, a));
                        let (n, fit) = crate::alerts::trend::brute(&pts, w);
                        let span = pts.last().unwrap().0 - pts[0].0;
                        match fit {
                            Some(f) if n >= 5 && span >= (w / 4).max(1) => {
                                crate::alerts::trend::minutes_to_limit(f, high, low)
                                    .map_or(TIME_TO_LIMIT_CAP_MIN, |m| m.min(TIME_TO_LIMIT_CAP_MIN))
                            }
                            _ => f64::NAN,
                        }
                    }
                }
                DerivedKind::Expression => unreachable!("evaluated above"),
            };
            v.push(x);
        }
        vals.push(v);
    }
    let mut scale = vec![0.0f64; names.len()];
    let magnitude = |k: usize, vals: &[Vec<f64>]| {
        vals.iter()
            .map(|v| v[k])
            .filter(|x| !x.is_nan())
            .fold(0.0f64, |m, x| m.max(x.abs()))
    };
    for (j, d) in org.features.derived.iter().enumerate() {
        let k = org.signals.len() + j;
        let ops: Vec<usize> = d.of.iter().map(|n| idx(n)).collect();
        let inherited: f64 = ops.iter().map(|&o| scale[o]).sum();
        scale[k] = match d.kind {
            DerivedKind::Deviation => magnitude(ops[0], &vals) + 2.0 * inherited,
            // The median of exact values is exact; `a` and the median each carry
            // at most the operand's error.
            DerivedKind::MedianDeviation => 2.0 * inherited,
            _ if inherited > 0.0 => {
                inherited + ops.iter().map(|&o| magnitude(o, &vals)).sum::<f64>()
            }
            _ => 0.0,
        };
    }
    (vals, scale)
}

/// Mean of `xs` by error-free summation, NaN when empty.
fn exact_mean(xs: &[f64]) -> f64 {
    fsum(xs.iter().copied()) / xs.len() as f64
}

/// Reference features of row `i` from the expanded rows, straight from the
/// definitions.
fn reference(
    org: &OrgConfig,
    tol_ms: i64,
    rows: &[(i64, Vec<f64>)],
    (vals, approx): (&[Vec<f64>], &[f64]),
    i: usize,
) -> Vec<Expect> {
    let t = rows[i].0;
    let names: Vec<&str> = org.value_signals().iter().map(|s| s.name).collect();
    let idx = |name: &str| names.iter().position(|n| *n == name).unwrap();
    // A copied value of signal `k`: exact unless it came out of a deviation.
    let copied = |k: usize, v: f64| {
        if approx[k] > 0.0 {
            Expect::Dev {
                v,
                scale: 2.0 * approx[k],
            }
        } else {
            Expect::Exact(v)
        }
    };
    let fs = org.feature_signals();
    let mut out: Vec<Expect> = org
        .current_signals()
        .iter()
        .map(|s| copied(idx(s.name), vals[i][idx(s.name)]))
        .collect();
    // The row a lag/delta of `l` seconds takes, if any.
    let lag_row = |l: u64| {
        let target = t - l as i64 * 1000;
        (0..=i)
            .rev()
            .find(|&j| rows[j].0 <= target)
            .filter(|&j| rows[j].0 >= target - tol_ms)
    };
    for s in &fs {
        let k = idx(s.name);
        for &l in &org.features.lags_s {
            out.push(copied(k, lag_row(l).map_or(f64::NAN, |j| vals[j][k])));
        }
    }
    for s in &fs {
        let k = idx(s.name);
        for &l in &org.features.deltas_s {
            // One subtraction of two exact values: exact.
            let v = lag_row(l).map_or(f64::NAN, |j| vals[i][k] - vals[j][k]);
            out.push(if approx[k] > 0.0 {
                Expect::Dev {
                    v,
                    scale: 4.0 * approx[k],
                }
            } else {
                Expect::Exact(v)
            });
        }
    }
    // Non-NaN samples of value `k` with ts in (t - w, t], newest first.
    let window = |k: usize, w: u64| -> Vec<f64> {
        let lo = t - w as i64 * 1000;
        (0..=i)
            .rev()
            .take_while(|&j| rows[j].0 > lo)
            .map(|j| vals[j][k])
            .filter(|x| !x.is_nan())
            .collect()
    };
    let scale_of = |xs: &[f64]| xs.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for s in &fs {
        let k = idx(s.name);
        for &w in &org.features.windows_s {
            let xs = window(k, w);
            let n = xs.len() as f64;
            let scale = scale_of(&xs);
            match s.kind {
                SignalKind::Boolean => {
                    let ones = xs.iter().filter(|&&x| x != 0.0).count() as f64;
                    out.push(Expect::Exact(if xs.is_empty() {
                        f64::NAN
                    } else {
                        ones / n
                    }));
                }
                SignalKind::Continuous => {
                    let mean = exact_mean(&xs);
                    // Corrected two-pass: sum (x-m)^2 - (sum (x-m))^2 / n, squares
                    // split exactly with fma, so the rounding of m costs nothing.
                    let d: Vec<f64> = xs.iter().map(|x| x - mean).collect();
                    let sq = fsum(d.iter().flat_map(|&d| {
                        let hi = d * d;
                        [hi, d.mul_add(d, -hi)]
                    }));
                    let sd = fsum(d.iter().copied());
                    let var = (sq - sd * sd / n) / (n - 1.0);
                    for st in &org.features.stats {
                        let e = match st {
                            _ if xs.is_empty() => Expect::Exact(f64::NAN),
                            Stat::Mean => Expect::Close { v: mean, scale },
                            Stat::Std if xs.len() < 2 => Expect::Exact(f64::NAN),
                            Stat::Std => Expect::Close {
                                v: var.max(0.0).sqrt(),
                                scale,
                            },
                            Stat::Min => Expect::Exact(xs.iter().copied().fold(f64::NAN, f64::min)),
                            Stat::Max => Expect::Exact(xs.iter().copied().fold(f64::NAN, f64::max)),
                        };
                        out.push(match e {
                            Expect::Exact(v) | Expect::Close { v, .. } if approx[k] > 0.0 => {
                                Expect::Dev {
                                    v,
                                    scale: 4.0 * approx[k] + scale,
                                }
                            }
                            e => e,
                        });
                    }
                }
            }
        }
    }
    let pooled = reference_pooled(org, &out);
    out.extend(pooled);
    out
}

/// Pooled features from the finished reference features, found by name (the
/// member's feature with the same suffix), not by offset.
fn reference_pooled(org: &OrgConfig, features: &[Expect]) -> Vec<Expect> {
    let all = org.feature_names();
    let by_name: std::collections::HashMap<&str, Expect> = all
        .iter()
        .map(String::as_str)
        .zip(features.iter().copied())
        .collect();
    let f = &org.features;
    let current: Vec<&str> = org.current_signals().iter().map(|s| s.name).collect();
    let mut suffixes: Vec<String> = Vec::new();
    suffixes.extend(f.lags_s.iter().map(|l| format!("_lag_{l}s")));
    suffixes.extend(f.deltas_s.iter().map(|l| format!("_delta_{l}s")));
    for w in &f.windows_s {
        suffixes.extend(
            f.stats
                .iter()
                .map(|st| format!("_rolling_{w}s_{}", st.name())),
        );
    }
    let mut out = Vec::new();
    let mut names = Vec::new();
    for pool in &f.pooled {
        let with_current = pool.of.iter().all(|m| current.contains(&m.as_str()));
        let sfx = with_current
            .then(String::new)
            .into_iter()
            .chain(suffixes.iter().cloned());
        let sfx: Vec<String> = sfx.collect();
        for &stat in &pool.stats {
            for s in &sfx {
                names.push(format!("{}_{}{s}", pool.name, stat.name()));
                let members: Vec<Expect> = pool
                    .of
                    .iter()
                    .map(|m| by_name[format!("{m}{s}").as_str()])
                    .collect();
                let vs = members.iter().map(|e| match *e {
                    Expect::Exact(v) | Expect::Close { v, .. } | Expect::Dev { v, .. } => v,
                });
                let vs: Vec<f64> = vs.filter(|v| !v.is_nan()).collect();
                let v = match stat {
                    _ if vs.is_empty() => f64::NAN,
                    PoolStat::Max => vs.iter().copied().reduce(f64::max).unwrap(),
                    PoolStat::Min => vs.iter().copied().reduce(f64::min).unwrap(),
                    PoolStat::MaxAbs => vs.iter().map(|v| v.abs()).reduce(f64::max).unwrap(),
                };
                // The pooled value is one of the members: within the largest of
                // their error bounds.
                let scale = members
                    .iter()
                    .map(|e| match *e {
                        Expect::Exact(_) => 0.0,
                        Expect::Close { v, scale } => scale.max(v.abs()),
                        Expect::Dev { scale, .. } => scale,
                    })
                    .fold(0.0f64, f64::max);
                out.push(if scale == 0.0 {
                    Expect::Exact(v)
                } else {
                    Expect::Dev { v, scale }
                });
            }
        }
    }
    assert_eq!(names, org.pooled_feature_names(), "pooled feature names");
    out
}

/// Run the incremental state over `rows` and compare rows `i % every == 0` with the
/// reference. Returns the largest relative error of a mean/std seen.
fn check(
    org: &OrgConfig,
    tol_ms: u64,
    rows: &[(i64, Vec<f64>)],
    every: usize,
) -> Result<f64, String> {
    let spec = Arc::new(FeatureSpec::from_org(org, tol_ms));
    let names = spec.names();
    if names != org.feature_names() {
        return Err(format!("names {names:?} != {:?}", org.feature_names()));
    }
    let mut m = MachineFeatures::new(spec.clone());
    let mut out = Vec::new();
    let mut max_rel = 0.0f64;
    let (vals, approx) = expand(org, rows);
    for (i, (ts, values)) in rows.iter().enumerate() {
        out.clear();
        m.push(*ts, values, &mut out);
        if out.len() != spec.len() {
            return Err(format!(
                "row {i}: {} features, spec says {}",
                out.len(),
                spec.len()
            ));
        }
        if i % every != 0 {
            continue;
        }
        let want = reference(org, tol_ms as i64, rows, (&vals, &approx), i);
        if want.len() != out.len() {
            return Err(format!("row {i}: reference has {} features", want.len()));
        }
        for (j, (&got, e)) in out.iter().zip(&want).enumerate() {
            let ok = match *e {
                Expect::Exact(v) => (v.is_nan() && got.is_nan()) || v == got,
                Expect::Close { v, scale } => {
                    if v.is_nan() || got.is_nan() {
                        v.is_nan() && got.is_nan()
                    } else {
                        let err = (got - v).abs();
                        if v != 0.0 {
                            max_rel = max_rel.max(err / v.abs());
                        }
                        err <= TOL * v.abs() || err <= TOL * scale
                    }
                }
                Expect::Dev { v, scale } => {
                    (v.is_nan() && got.is_nan()) || (got - v).abs() <= TOL * scale
                }
            };
            if !ok {
                return Err(format!(
                    "row {i} (ts {ts}) feature {} = {got:e}, reference {e:?}",
                    names[j]
                ));
            }
        }
    }
    Ok(max_rel)
}

#[test]
fn names_match_config_for_example_orgs() {
    let cfg = example();
    assert_eq!(cfg.orgs.len(), 3);
    for (id, org) in &cfg.orgs {
        let spec = FeatureSpec::from_org(org, cfg.runtime.lag_tolerance_ms);
        assert_eq!(spec.names(), org.feature_names(), "org {id}");
        assert_eq!(spec.len(), org.feature_names().len(), "org {id}");
        assert_eq!(
            spec.history_ms() as u64,
            org.history_ms(cfg.runtime.lag_tolerance_ms),
            "org {id}"
        );
    }
    let cobalt = FeatureSpec::from_org(&cfg.orgs["cobalt-thermal"], 60_000);
    assert_eq!(cobalt.len(), 186, "the benchmark's default furnace");
}

#[test]
fn pooled_features_take_max_min_and_magnitude_over_members_ignoring_nan() {
    use SignalKind::Continuous;
    let mut org = org_with(
        &[Continuous, Continuous, Continuous],
        FeaturesConfig {
            lags_s: vec![60],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    org.features.pooled = vec![PooledConfig {
        name: "zone".into(),
        of: vec!["s0".into(), "s1".into(), "s2".into()],
        stats: vec![PoolStat::Max, PoolStat::Min, PoolStat::MaxAbs],
    }];
    let spec = Arc::new(FeatureSpec::from_org(&org, 0));
    assert_eq!(
        spec.names(),
        [
            "s0",
            "s1",
            "s2",
            "s0_lag_60s",
            "s1_lag_60s",
            "s2_lag_60s",
            "zone_max",
            "zone_max_lag_60s",
            "zone_min",
            "zone_min_lag_60s",
            "zone_max_abs",
            "zone_max_abs_lag_60s",
        ]
    );
    let mut m = MachineFeatures::new(spec);
    let mut out = Vec::new();
    m.push(0, &[f64::NAN, f64::NAN, f64::NAN], &mut out);
    assert!(
        out[6..].iter().all(|v| v.is_nan()),
        "all members NaN: {out:?}"
    );
    out.clear();
    m.push(60_000, &[1.0, -5.0, f64::NAN], &mut out);
    // Lags point at the all-NaN row.
    let pooled: Vec<f64> = out[6..].iter().step_by(2).copied().collect();
    assert_eq!(pooled, [1.0, -5.0, 5.0]);
    assert!(out[6..].iter().skip(1).step_by(2).all(|v| v.is_nan()));
    out.clear();
    m.push(120_000, &[2.0, 3.0, -4.0], &mut out);
    assert_eq!(out[6..], [3.0, 1.0, -4.0, -5.0, 4.0, 5.0]);
}

#[test]
fn pools_sharing_no_current_value_pool_only_the_history() {
    use SignalKind::Continuous;
    let mut org = org_with(
        &[Continuous, Continuous],
        FeaturesConfig {
            current: Some(vec!["s0".into()]),
            lags_s: vec![],
            windows_s: vec![60],
            stats: vec![Stat::Max],
            ..FeaturesConfig::default()
        },
    );
    org.features.pooled = vec![PooledConfig {
        name: "p".into(),
        of: vec!["s1".into(), "s0".into()],
        stats: vec![PoolStat::Min],
    }];
    assert_eq!(
        org.feature_names(),
        [
            "s0",
            "s0_rolling_60s_max",
            "s1_rolling_60s_max",
            "p_min_rolling_60s_max"
        ]
    );
    let spec = Arc::new(FeatureSpec::from_org(&org, 0));
    let mut m = MachineFeatures::new(spec);
    let mut out = Vec::new();
    m.push(0, &[7.0, 2.0], &mut out);
    out.clear();
    m.push(1_000, &[1.0, 3.0], &mut out);
    assert_eq!(out, [1.0, 7.0, 3.0, 3.0]);
}

fn one_signal(kind: SignalKind, lags_s: Vec<u64>, windows_s: Vec<u64>) -> OrgConfig {
    org_with(
        &[kind],
        FeaturesConfig {
            lags_s,
            windows_s,
            ..FeaturesConfig::default()
        },
    )
}

/// Features of the last row after pushing `rows` into a fresh state.
fn last(org: &OrgConfig, tol_ms: u64, rows: &[(i64, f64)]) -> Vec<f64> {
    let mut m = MachineFeatures::new(Arc::new(FeatureSpec::from_org(org, tol_ms)));
    let mut out = Vec::new();
    for &(ts, x) in rows {
        out.clear();
        m.push(ts, &[x], &mut out);
    }
    out
}

#[test]
fn window_excludes_sample_at_t_minus_w() {
    let org = one_signal(SignalKind::Continuous, vec![], vec![60]);
    // [current, mean, std, min, max]
    let f = last(&org, 0, &[(0, 1.0), (60_000, 3.0)]);
    assert_eq!(f[1], 3.0);
    assert!(f[2].is_nan(), "one sample: std is NaN");
    assert_eq!((f[3], f[4]), (3.0, 3.0));
    let f = last(&org, 0, &[(1, 1.0), (60_000, 3.0)]);
    assert_eq!(f[1], 2.0, "sample at t - W + 1ms is inside");
    assert_eq!(f[2], 2.0f64.sqrt());
    assert_eq!((f[3], f[4]), (1.0, 3.0));
    // A gap longer than the window leaves only the current row; a NaN row none.
    let f = last(&org, 0, &[(0, 1.0), (10_000, 2.0), (500_000, f64::NAN)]);
    assert!(f[1..].iter().all(|x| x.is_nan()), "{f:?}");
}

#[test]
fn boolean_rate_window_boundary() {
    let org = one_signal(SignalKind::Boolean, vec![], vec![60]);
    let f = last(&org, 0, &[(0, 1.0), (30_000, 0.0), (60_000, 1.0)]);
    assert_eq!(f[1], 0.5, "ts 0 is out, 30 s and 60 s are in");
    let f = last(&org, 0, &[(1, 1.0), (30_000, f64::NAN), (60_000, 0.0)]);
    assert_eq!(f[1], 0.5, "NaN is not a sample");
}

#[test]
fn lag_boundaries() {
    let org = one_signal(SignalKind::Continuous, vec![60], vec![]);
    let tol = 10_000;
    let lag = |rows: &[(i64, f64)]| last(&org, tol, rows)[1];
    assert_eq!(
        lag(&[(0, 1.0), (60_000, 2.0)]),
        1.0,
        "ts == t - L is included"
    );
    assert!(
        lag(&[(0, 1.0), (59_999, 2.0)]).is_nan(),
        "ts > t - L is not"
    );
    assert_eq!(
        lag(&[(0, 1.0), (70_000, 2.0)]),
        1.0,
        "ts == t - L - tol is included"
    );
    assert!(
        lag(&[(0, 1.0), (70_001, 2.0)]).is_nan(),
        "ts < t - L - tol is not"
    );
    // The latest row wins even when this signal is missing in it.
    assert!(lag(&[(0, 1.0), (30_000, f64::NAN), (90_000, 5.0)]).is_nan());
    assert_eq!(
        lag(&[(0, 1.0), (30_000, 7.0), (35_000, 8.0), (91_000, 5.0)]),
        7.0
    );
    // Zero tolerance: exact matches only.
    let f = last(&org, 0, &[(0, 1.0), (60_000, 2.0)]);
    assert_eq!(f[1], 1.0);
    let f = last(&org, 0, &[(0, 1.0), (60_001, 2.0)]);
    assert!(f[1].is_nan());
}

#[test]
fn deltas_follow_the_lag_rule() {
    let org = org_with(
        &[SignalKind::Continuous],
        FeaturesConfig {
            lags_s: vec![60],
            deltas_s: vec![60, 120],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    // [current, lag 60, delta 60, delta 120]
    let f = last(&org, 10_000, &[(0, 1.0), (60_000, 3.5)]);
    assert_eq!(f[1..3], [1.0, 2.5], "delta = current - lag value");
    assert!(f[3].is_nan(), "no row within 120 s + tolerance");
    let f = last(&org, 10_000, &[(0, 1.0), (59_999, 2.0)]);
    assert!(f[2].is_nan(), "ts > t - L is no lag row");
    let f = last(&org, 10_000, &[(0, 1.0), (70_001, 2.0)]);
    assert!(f[2].is_nan(), "ts < t - L - tol is no lag row");
    let f = last(&org, 10_000, &[(0, 1.0), (60_000, f64::NAN)]);
    assert!(f[2].is_nan(), "missing current value");
    let f = last(&org, 10_000, &[(0, f64::NAN), (60_000, 2.0)]);
    assert!(f[2].is_nan(), "missing lag value");
    let f = last(&org, 10_000, &[(0, 4.0), (60_000, 1.0), (120_000, 2.0)]);
    assert_eq!((f[2], f[3]), (1.0, -2.0));
}

fn derived(
    name: &str,
    kind: DerivedKind,
    of: &[&str],
    window_s: Option<u64>,
) -> DerivedSignalConfig {
    DerivedSignalConfig {
        name: name.into(),
        kind,
        of: of.iter().map(|s| s.to_string()).collect(),
        window_s,
        expr: None,
    }
}

fn expression(name: &str, expr: &str) -> DerivedSignalConfig {
    DerivedSignalConfig {
        name: name.into(),
        kind: DerivedKind::Expression,
        of: Vec::new(),
        window_s: None,
        expr: Some(expr.into()),
    }
}

/// Expressions over two operands `{a}` and `{b}`, each with its direct evaluation:
/// the same operations in the same order, so the compiled expression must agree
/// to the bit. Between them they use every operator and function.
type Direct = fn(f64, f64) -> f64;
const EXPRESSIONS: [(&str, Direct); 5] = [
    ("({a} - {b}) / sqrt(abs({b}) + 1)", |a, b| {
        (a - b) / (b.abs() + 1.0).sqrt()
    }),
    // A pump law: NaN where `b` is 0. (`black_box`: the compiler would make a
    // constant `powf(2.0)` a multiplication, which may round differently.)
    ("{a} / {b}^2", |a, b| a / b.powf(std::hint::black_box(2.0))),
    ("-{a} * 2.5 + max({a}, {b})", |a, b| -a * 2.5 + a.max(b)),
    ("ln(abs({a}) + 1) - exp(min({b}, 0) / 100)", |a, b| {
        (a.abs() + 1.0).ln() - (b.min(0.0) / 100.0).exp()
    }),
    (
        "({a} * 0.5 - -{b}) / (log10(abs({a}) + 10) * {b})",
        |a, b| (a * 0.5 - -b) / ((a.abs() + 10.0).log10() * b),
    ),
];

/// `EXPRESSIONS[i]` over the values named `a` and `b`.
fn expression_src(i: usize, a: &str, b: &str) -> String {
    EXPRESSIONS[i].0.replace("{a}", a).replace("{b}", b)
}

/// The direct evaluation of `src` (one of [`EXPRESSIONS`] over two of `names`),
/// as `(f, a, b)` with operand indices into `names`.
fn direct(src: &str, names: &[&str]) -> (Direct, usize, usize) {
    for (i, (_, f)) in EXPRESSIONS.iter().enumerate() {
        for a in 0..names.len() {
            for b in 0..names.len() {
                if expression_src(i, names[a], names[b]) == src {
                    return (*f, a, b);
                }
            }
        }
    }
    panic!("`{src}` is not one of EXPRESSIONS");
}

/// The definition: NaN when an operand is, or when the result is not finite.
fn direct_value(f: Direct, a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    let v = f(a, b);
    if v.is_finite() { v } else { f64::NAN }
}

#[test]
fn derived_signals_are_features_like_declared_ones() {
    use SignalKind::*;
    let org = org_with(
        &[Continuous, Continuous, Boolean],
        FeaturesConfig {
            current: Some(vec![
                "d_diff".into(),
                "s2".into(),
                "d_ratio".into(),
                "d_dev".into(),
            ]),
            signals: Some(vec!["d_ratio".into(), "s0".into(), "d_dev".into()]),
            derived: vec![
                derived("d_diff", DerivedKind::Difference, &["s0", "s1"], None),
                derived("d_ratio", DerivedKind::Ratio, &["s0", "s1"], None),
                derived("d_dev", DerivedKind::Deviation, &["d_diff"], Some(600)),
            ],
            lags_s: vec![60],
            deltas_s: vec![60],
            windows_s: vec![120],
            stats: vec![Stat::Max],
            pooled: Vec::new(),
        },
    );
    let names = org.feature_names();
    assert_eq!(
        names,
        [
            "d_diff",
            "s2",
            "d_ratio",
            "d_dev",
            "d_ratio_lag_60s",
            "s0_lag_60s",
            "d_dev_lag_60s",
            "d_ratio_delta_60s",
            "s0_delta_60s",
            "d_dev_delta_60s",
            "d_ratio_rolling_120s_max",
            "s0_rolling_120s_max",
            "d_dev_rolling_120s_max",
        ]
    );
    let spec = Arc::new(FeatureSpec::from_org(&org, 0));
    assert_eq!(spec.names(), names);
    assert_eq!(spec.history_ms(), 720_000, "120 s window + 600 s deviation");
    assert_eq!(org.history_ms(0), 720_000);
    let mut m = MachineFeatures::new(spec);
    let mut out = Vec::new();
    m.push(0, &[6.0, 3.0, 1.0], &mut out);
    assert_eq!(
        out[..4],
        [3.0, 1.0, 2.0, 0.0],
        "a lone sample is its own mean"
    );
    out.clear();
    m.push(60_000, &[8.0, 0.0, 0.0], &mut out);
    assert_eq!(out[..2], [8.0, 0.0], "the difference, a declared value");
    assert!(out[2].is_nan(), "ratio by zero is NaN");
    assert_eq!(out[3], 2.5, "8 - mean(3, 8)");
    assert_eq!(out[4..7], [2.0, 6.0, 0.0], "lags");
    assert!(out[7].is_nan(), "delta of a NaN current value");
    assert_eq!(out[8..10], [2.0, 2.5], "deltas");
    assert_eq!(out[10..13], [2.0, 8.0, 2.5], "the window max skips NaN");
}

#[test]
fn deviation_is_value_minus_its_window_mean() {
    let org = org_with(
        &[SignalKind::Continuous],
        FeaturesConfig {
            derived: vec![derived("dev", DerivedKind::Deviation, &["s0"], Some(600))],
            lags_s: vec![],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    // [current s0, current dev]
    let f = last(&org, 0, &[(0, 1.0), (300_000, 3.0)]);
    assert_eq!(f[1], 1.0);
    let f = last(&org, 0, &[(0, 1.0), (600_000, 3.0)]);
    assert_eq!(f[1], 0.0, "the sample at t - W is out");
    let f = last(&org, 0, &[(0, 1.0), (300_000, f64::NAN)]);
    assert!(f[1].is_nan());
    let f = last(&org, 0, &[(0, 1.0), (1, f64::NAN), (300_000, 5.0)]);
    assert_eq!(f[1], 2.0, "NaN is not a sample");
    let f = last(&org, 0, &[(0, 1.0), (1, 2.0), (5_000_000, 5.0)]);
    assert_eq!(f[1], 0.0, "a gap empties the window but the current sample");
}

#[test]
fn median_deviation_is_value_minus_its_window_median() {
    let org = org_with(
        &[SignalKind::Continuous],
        FeaturesConfig {
            derived: vec![derived(
                "dev",
                DerivedKind::MedianDeviation,
                &["s0"],
                Some(600),
            )],
            lags_s: vec![],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    // [current s0, current dev]
    let at = |xs: &[f64]| -> Vec<(i64, f64)> {
        xs.iter()
            .enumerate()
            .map(|(i, &x)| (i as i64 * 30_000, x))
            .collect()
    };
    let f = last(&org, 0, &at(&[10.0, 10.0, 0.0, 10.0, 11.0]));
    assert_eq!(f[1], 1.0, "an idle sample does not drag the median");
    let f = last(&org, 0, &at(&[1.0, 4.0, 2.0, 8.0]));
    assert_eq!(f[1], 5.0, "8 - midpoint(2, 4) of an even count");
    let f = last(&org, 0, &at(&[1.0, f64::NAN, 3.0]));
    assert_eq!(f[1], 1.0, "NaN is not a sample");
    let f = last(&org, 0, &at(&[1.0, 2.0, f64::NAN]));
    assert!(f[1].is_nan(), "a missing value has no deviation");
    let f = last(&org, 0, &[(0, 100.0), (300_000, 1.0), (600_000, 3.0)]);
    assert_eq!(f[1], 1.0, "the sample at t - W is out: 3 - midpoint(1, 3)");
    let f = last(&org, 0, &[(0, 1.0), (1, 1.0), (2, 1.0), (600_001, 5.0)]);
    assert_eq!(
        f[1], 2.0,
        "equal values leave the window one by one: 5 - midpoint(1, 5)"
    );
}

#[test]
fn expression_is_evaluated_per_row() {
    let org = org_with(
        &[SignalKind::Continuous, SignalKind::Continuous],
        FeaturesConfig {
            derived: vec![
                derived("dev", DerivedKind::Deviation, &["s0"], Some(600)),
                expression("law", "s0 / s1^2"),
                expression("mix", "max(dev, 0) * 2 - law"),
            ],
            signals: Some(vec!["law".into()]),
            lags_s: vec![60],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    let spec = FeatureSpec::from_org(&org, 0);
    assert_eq!(
        spec.names(),
        ["s0", "s1", "dev", "law", "mix", "law_lag_60s"]
    );
    assert_eq!(
        spec.history_ms(),
        660_000,
        "60 s lag + `mix` reads the 600 s deviation"
    );
    let mut m = MachineFeatures::new(Arc::new(spec));
    let mut out = Vec::new();
    m.push(0, &[8.0, 2.0], &mut out);
    assert_eq!(out[..5], [8.0, 2.0, 0.0, 2.0, -2.0]);
    assert!(out[5].is_nan(), "no lag row yet");
    out.clear();
    m.push(60_000, &[12.0, 0.0], &mut out);
    assert_eq!(out[2], 2.0, "12 - mean(8, 12)");
    assert!(out[3].is_nan(), "division by zero is a missing value");
    assert!(out[4].is_nan(), "and so is what reads it");
    assert_eq!(out[5], 2.0, "the lag of an expression");
    out.clear();
    m.push(120_000, &[f64::NAN, 1.0], &mut out);
    assert!(
        out[2..5].iter().all(|x| x.is_nan()),
        "a missing operand: {out:?}"
    );
    out.clear();
    m.push(180_000, &[3.0, -1.0], &mut out);
    // dev = 3 - mean(8, 12, 3) < 0, so max(dev, 0) = 0
    assert_eq!(out[3..5], [3.0, -3.0]);
}

/// An unvalidated config whose expression does not parse, or names an unknown
/// signal, gives NaN rather than a panic.
#[test]
fn unparsable_expression_gives_nan() {
    let org = org_with(
        &[SignalKind::Continuous],
        FeaturesConfig {
            derived: vec![expression("bad", "s0 +"), expression("unknown", "s9 * 2")],
            lags_s: vec![],
            windows_s: vec![],
            ..FeaturesConfig::default()
        },
    );
    let f = last(&org, 0, &[(0, 1.0)]);
    assert_eq!(f[0], 1.0);
    assert!(f[1].is_nan() && f[2].is_nan(), "{f:?}");
}

#[test]
fn constant_window_has_zero_std() {
    let org = one_signal(SignalKind::Continuous, vec![60], vec![60, 180, 600]);
    let mut m = MachineFeatures::new(Arc::new(FeatureSpec::from_org(&org, 60_000)));
    let mut out = Vec::new();
    for i in 0..1_000i64 {
        out.clear();
        // A constant level that changes now and then, with gaps that shrink windows.
        let x = [900.1, 0.3, -17.7][(i / 97) as usize % 3];
        let ts = i * 30_000 + (i / 50) * 1_000_000;
        m.push(ts, &[x], &mut out);
        // [current, lag, (mean, std, min, max) x 3]
        for w in 0..3 {
            let s = &out[2 + 4 * w..6 + 4 * w];
            if s[2] == s[3] && !s[1].is_nan() {
                assert_eq!(s[1], 0.0, "row {i} window {w}: {s:?}");
            }
        }
    }
}

/// Deterministic SplitMix64, so the long test needs no RNG crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly standard normal (Irwin–Hall).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Furnace-like rows: 900 ± noise with jumps, a large level with a tiny spread,
/// a quantised signal with constant runs, a boolean; NaNs, sub-second and long gaps.
fn furnace_rows(n: usize, seed: u64) -> Vec<(i64, Vec<f64>)> {
    let mut r = SplitMix(seed);
    let mut ts = 1_700_000_000_000i64;
    let mut level = 900.0;
    let mut on = 0.0;
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let g = r.unit();
        ts += if g < 0.005 {
            1 + (r.next() % 999) as i64
        } else if g < 0.008 {
            700_000 + (r.next() % 1_300_000) as i64
        } else {
            30_000
        };
        if r.unit() < 0.002 {
            level += 400.0 * r.normal();
        }
        if r.unit() < 0.02 {
            on = 1.0 - on;
        }
        let mut v = vec![
            level + r.normal(),
            1.0e6 + 1.0e-3 * r.normal(),
            ((900.0 + 0.3 * r.normal()) * 10.0).round() / 10.0,
            on,
        ];
        for x in &mut v {
            if r.unit() < 0.01 {
                *x = f64::NAN;
            }
        }
        rows.push((ts, v));
    }
    rows
}

fn furnace_org() -> OrgConfig {
    use SignalKind::*;
    org_with(
        &[Continuous, Continuous, Continuous, Boolean],
        FeaturesConfig::default(),
    )
}

#[test]
fn long_run_does_not_drift() {
    let rows = furnace_rows(200_000, 42);
    let max_rel = check(&furnace_org(), 60_000, &rows, 37).unwrap();
    // Well under the 1e-12 contract; a running sum with add/remove shows ~1e-6.
    assert!(max_rel < 1e-13, "max relative error {max_rel:e}");
    eprintln!("long run: max relative error of mean/std {max_rel:e}");
}

#[test]
fn long_run_with_derived_and_deltas_does_not_drift() {
    let mut org = furnace_org();
    org.features.derived = vec![
        derived("d0", DerivedKind::Difference, &["s0", "s2"], None),
        derived("d1", DerivedKind::Ratio, &["s1", "s0"], None),
        derived("d2", DerivedKind::Deviation, &["s0"], Some(3600)),
        derived("d3", DerivedKind::Deviation, &["d0"], Some(600)),
        // Chained on a deviation, so its rounding is checked against the operand's
        // (a median of exact values is exact, its windows' means may cancel to ~0).
        derived("d4", DerivedKind::MedianDeviation, &["d3"], Some(600)),
    ];
    org.features.deltas_s = vec![60, 300];
    let rows = furnace_rows(100_000, 7);
    let max_rel = check(&org, 60_000, &rows, 41).unwrap();
    assert!(max_rel < 1e-13, "max relative error {max_rel:e}");
}

#[test]
fn memory_stays_bounded() {
    let org = furnace_org();
    let spec = Arc::new(FeatureSpec::from_org(&org, 60_000));
    let mut m = MachineFeatures::new(spec.clone());
    let mut out = Vec::new();
    // Regular 30 s sampling: the window (t - 600 s, t] holds 20 samples and the lag
    // history [t - 360 s, t] 13 rows.
    let mut ts = 0;
    let mut heap_after_warmup = 0;
    for i in 0..300_000 {
        ts += 30_000;
        out.clear();
        m.push(
            ts,
            &[900.0 + (i % 7) as f64, 1.0, f64::NAN, (i % 2) as f64],
            &mut out,
        );
        assert!(m.retained_rows() <= 20, "row {i}: {}", m.retained_rows());
        if i == 1_000 {
            heap_after_warmup = m.heap_bytes();
        }
    }
    assert_eq!(m.heap_bytes(), heap_after_warmup, "no growth after warm-up");
    // A burst of 1 ms rows is bounded by time, and trimmed once time moves on.
    for _ in 0..5_000 {
        ts += 1;
        out.clear();
        m.push(ts, &[1.0, 2.0, 3.0, 1.0], &mut out);
    }
    assert!(m.retained_rows() <= 5_000 + 20);
    assert!(
        m.heap_bytes() > 4 * heap_after_warmup,
        "the burst did need memory"
    );
    ts += spec.history_ms() + 1;
    out.clear();
    m.push(ts, &[1.0, 2.0, 3.0, 1.0], &mut out);
    assert_eq!(m.retained_rows(), 1);
    // Back to regular sampling, the burst's buffers are given back.
    for i in 0..1_000 {
        ts += 30_000;
        out.clear();
        m.push(ts, &[900.0 + (i % 7) as f64, 1.0, 2.0, 0.0], &mut out);
    }
    assert!(
        m.heap_bytes() <= 2 * heap_after_warmup,
        "{} bytes after the burst, {heap_after_warmup} before",
        m.heap_bytes()
    );
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(f64::NAN),
        3 => 890.0..910.0f64,
        2 => Just(900.0),
        1 => Just(0.0),
        1 => Just(900.5),
        1 => -1.0e3..1.0e3f64,
        1 => 0.0..1.0e-3f64,
    ]
}

fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => 1..1_000i64,
        1 => Just(1_000i64),
        4 => Just(30_000i64),
        3 => (1..=700i64).prop_map(|s| s * 1_000),
        1 => 1..2_000_000i64,
    ]
}

#[derive(Debug, Clone)]
struct Case {
    org: OrgConfig,
    tol_ms: u64,
    rows: Vec<(i64, Vec<f64>)>,
}

/// Derived signals from raw picks `(kind, a, b, window)`: operands are taken modulo
/// the signals available to the pick (declared continuous ones, plus earlier
/// derived ones except for a ratio or an expression, whose error would not be
/// bounded: they read only values computed exactly, of which they are one);
/// picks with no operand are dropped.
fn derived_from(
    kinds: &[SignalKind],
    picks: Vec<(u8, usize, usize, u64)>,
) -> Vec<DerivedSignalConfig> {
    let mut exact: Vec<String> = (0..kinds.len())
        .filter(|&i| kinds[i] == SignalKind::Continuous)
        .map(|i| format!("s{i}"))
        .collect();
    let mut any = exact.clone();
    let mut out = Vec::new();
    for (kind, a, b, w) in picks {
        let (kind, pool) = match kind {
            0 => (DerivedKind::Difference, &any),
            1 => (DerivedKind::Ratio, &exact),
            2 => (DerivedKind::Deviation, &any),
            3 => (DerivedKind::MedianDeviation, &any),
            _ => (DerivedKind::Expression, &exact),
        };
        if kind == DerivedKind::Expression && !pool.is_empty() {
            let x = &pool[a % pool.len()];
            let y = &pool[b % pool.len()];
            let name = format!("d{}", out.len());
            let src = expression_src((a + 2 * b) % EXPRESSIONS.len(), x, y);
            exact.push(name.clone());
            any.push(name.clone());
            out.push(expression(&name, &src));
            continue;
        }
        if pool.is_empty() || (kind.operands() == 2 && pool.len() < 2) {
            continue;
        }
        let a = a % pool.len();
        let b = (a + 1 + b % (pool.len() - 1).max(1)) % pool.len();
        let name = format!("d{}", out.len());
        let d = match kind {
            DerivedKind::Deviation | DerivedKind::MedianDeviation => {
                derived(&name, kind, &[&pool[a]], Some(w))
            }
            _ => derived(&name, kind, &[&pool[a], &pool[b]], None),
        };
        if kind == DerivedKind::Difference && exact.contains(&d.of[0]) && exact.contains(&d.of[1]) {
            exact.push(name.clone());
        }
        any.push(name);
        out.push(d);
    }
    out
}

fn case() -> impl Strategy<Value = Case> {
    (1..=4usize)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(any::<bool>(), n),
                prop::collection::vec(
                    (
                        0..6u8,
                        0..8usize,
                        0..8usize,
                        prop::sample::select(vec![1u64, 60, 600, 3600]),
                    ),
                    0..=3,
                ),
                prop::option::of(
                    prop::sample::subsequence((0..n + 3).collect::<Vec<_>>(), 0..=n + 3)
                        .prop_shuffle(),
                ),
                prop::option::of(
                    prop::sample::subsequence((0..n + 3).collect::<Vec<_>>(), 0..=n + 3)
                        .prop_shuffle(),
                ),
                prop::sample::subsequence(vec![1u64, 2, 5, 30, 60, 120, 300], 0..=3),
                prop::sample::subsequence(vec![1u64, 2, 30, 60, 300], 0..=2),
                prop::sample::subsequence(vec![1u64, 3, 10, 60, 180, 600], 0..=3),
                prop::sample::subsequence(vec![Stat::Mean, Stat::Std, Stat::Min, Stat::Max], 0..=4)
                    .prop_shuffle(),
                prop_oneof![Just(0u64), 1..2_000u64, Just(60_000u64), 0..200_000u64],
                prop::collection::vec((gap(), prop::collection::vec(value(), n)), 1..250),
                prop::sample::subsequence(
                    vec![PoolStat::Max, PoolStat::Min, PoolStat::MaxAbs],
                    0..=3,
                )
                .prop_shuffle(),
            )
        })
        .prop_map(
            |(
                bools,
                picks,
                current,
                subset,
                lags_s,
                deltas_s,
                windows_s,
                stats,
                tol_ms,
                steps,
                pool_stats,
            )| {
                let kinds: Vec<SignalKind> = bools
                    .iter()
                    .map(|&b| {
                        if b {
                            SignalKind::Boolean
                        } else {
                            SignalKind::Continuous
                        }
                    })
                    .collect();
                let n = kinds.len();
                let derived = derived_from(&kinds, picks);
                let nd = derived.len();
                let names = |list: Option<Vec<usize>>| {
                    list.map(|l| {
                        l.into_iter()
                            .filter(|&i| i < n + nd)
                            .map(|i| {
                                if i < n {
                                    format!("s{i}")
                                } else {
                                    format!("d{}", i - n)
                                }
                            })
                            .collect()
                    })
                };
                let mut org = org_with(
                    &kinds,
                    FeaturesConfig {
                        current: names(current),
                        signals: names(subset),
                        derived,
                        lags_s,
                        deltas_s,
                        windows_s,
                        stats,
                        pooled: Vec::new(),
                    },
                );
                // Every continuous feature signal in one pool, and the first two,
                // reversed, in another.
                let pool: Vec<String> = org
                    .feature_signals()
                    .iter()
                    .filter(|s| s.kind == SignalKind::Continuous)
                    .map(|s| s.name.to_string())
                    .collect();
                if pool.len() >= 2 && !pool_stats.is_empty() {
                    let pair = vec![pool[1].clone(), pool[0].clone()];
                    org.features.pooled = vec![
                        PooledConfig {
                            name: "pool_all".into(),
                            of: pool,
                            stats: pool_stats,
                        },
                        PooledConfig {
                            name: "pool_pair".into(),
                            of: pair,
                            stats: vec![PoolStat::MaxAbs],
                        },
                    ];
                }
                let mut ts = 0i64;
                let rows = steps
                    .into_iter()
                    .map(|(g, mut v)| {
                        ts += g;
                        for (x, k) in v.iter_mut().zip(&kinds) {
                            if *k == SignalKind::Boolean && !x.is_nan() {
                                *x = if *x > 900.0 { 1.0 } else { 0.0 };
                            }
                        }
                        (ts, v)
                    })
                    .collect();
                Case { org, tol_ms, rows }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_reference(c in case()) {
        if let Err(e) = check(&c.org, c.tol_ms, &c.rows, 1) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Distance and time to limit against the reference of [`expand`]: the distance
/// exactly, the time from a two-pass least-squares fit over the same window's
/// finite samples (within rounding; a line nearly flat may fall either side of
/// "heading away", so such rows are skipped).
#[test]
fn limit_features_equal_the_reference() {
    let mut runner = proptest::test_runner::TestRunner::default();
    let rows_strategy = (
        prop::collection::vec((1i64..90_000, -3.0f64..3.0, 0u8..20), 1..300),
        -0.2f64..0.4,
        60u64..3_600,
        prop::option::of(-20.0f64..20.0),
    );
    runner
        .run(&rows_strategy, |(steps, drift, window_s, low)| {
            let mut org = org_with(
                &[SignalKind::Continuous],
                FeaturesConfig {
                    current: Some(vec!["s0".into(), "dist".into(), "ttl".into()]),
                    derived: vec![
                        derived("dist", DerivedKind::ToLimit, &["s0"], None),
                        derived("ttl", DerivedKind::TimeToLimit, &["s0"], Some(window_s)),
                    ],
                    lags_s: vec![],
                    windows_s: vec![],
                    ..FeaturesConfig::default()
                },
            );
            org.rules.clear();
            org.failure_signals.clear();
            org.signals[0].unit = Some("K".into());
            org.signals[0].limits = Some(SignalLimits {
                high: Some(60.0),
                low,
                component: org.prediction.component_mapping["1"].clone(),
            });
            org.validate("orgs.t").expect("valid");
            let mut rows = Vec::new();
            let mut ts = 1_700_000_000_000i64;
            for (i, (dt, noise, gap)) in steps.into_iter().enumerate() {
                ts += dt;
                // One sample in twenty missing.
                let v = if gap == 0 {
                    f64::NAN
                } else {
                    30.0 + drift * i as f64 + noise
                };
                rows.push((ts, vec![v]));
            }
            let (want, _) = expand(&org, &rows);
            let spec = Arc::new(FeatureSpec::from_org(&org, 60_000));
            let mut m = MachineFeatures::new(spec);
            let mut out = Vec::new();
            for (j, (t, v)) in rows.iter().enumerate() {
                out.clear();
                m.push(*t, v, &mut out);
                let (d, w) = (out[1], want[j][1]);
                prop_assert!(d == w || (d.is_nan() && w.is_nan()), "distance {d} vs {w}");
                let (g, w) = (out[2], want[j][2]);
                let ok = (g.is_nan() && w.is_nan())
                    || (g - w).abs() <= 1e-6 * (1.0 + w.abs())
                    // Near the cap or a nearly flat line, rounding may decide.
                    || (g >= TIME_TO_LIMIT_CAP_MIN * 0.999 && w >= TIME_TO_LIMIT_CAP_MIN * 0.999)
                    || (g.min(w) > 100.0 && !g.is_nan() && !w.is_nan());
                prop_assert!(ok, "time to limit {g} vs {w} at row {j}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn limit_signals_must_have_limits() {
    let org = org_with(
        &[SignalKind::Continuous],
        FeaturesConfig {
            derived: vec![derived("dist", DerivedKind::ToLimit, &["s0"], None)],
            ..FeaturesConfig::default()
        },
    );
    let mut org = org;
    org.rules.clear();
    org.failure_signals.clear();
    org.signals[0].unit = Some("K".into());
    let e = org.validate("orgs.t").unwrap_err().to_string();
    assert!(
        e.contains("orgs.t.features.derived[0].of[0]") && e.contains("with `limits`"),
        "{e}"
    );
}
