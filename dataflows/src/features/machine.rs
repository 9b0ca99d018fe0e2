//! [`MachineFeatures`]: the incremental feature state of one machine.

use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;

use super::spec::FeatureSpec;
use super::window::{RollingMedian, RollingMoments, RollingRate, Samples, shrink_after_burst};
use crate::alerts::trend::{Trend, minutes_to_limit};
use crate::config::{DerivedKind, SignalKind, TIME_TO_LIMIT_CAP_MIN, distance_to_limit};

/// Marks "no row within tolerance" in the per-lag scratch.
const NO_ROW: usize = usize::MAX;

/// Window state of one feature signal.
#[derive(Debug, Clone)]
enum SignalWindows {
    Continuous {
        signal: usize,
        samples: Samples<f64>,
        windows: Vec<RollingMoments>,
    },
    Boolean {
        signal: usize,
        samples: Samples<bool>,
        windows: Vec<RollingRate>,
    },
}

/// The baseline a deviation-derived signal subtracts, over its operand's non-NaN
/// samples within its window.
#[derive(Debug, Clone)]
enum Deviation {
    Mean {
        samples: Samples<f64>,
        mean: RollingMoments,
    },
    Median(RollingMedian),
    /// Time to limit: the operand's least-squares trend over the window.
    Trend(Box<Trend>),
}

/// Samples a time-to-limit trend needs, as a `forecast` rule's default.
const TREND_MIN_POINTS: usize = 5;

/// The time-to-limit value of a row (see [`DerivedKind::TimeToLimit`]); NaN when
/// the operand is missing on it.
fn time_to_limit(
    trend: &mut Trend,
    ts: i64,
    a: f64,
    window_ms: i64,
    high: Option<f64>,
    low: Option<f64>,
) -> f64 {
    if !a.is_finite() {
        return f64::NAN;
    }
    trend.push(ts, a, window_ms);
    match trend.fit(TREND_MIN_POINTS, window_ms / 4) {
        None => f64::NAN,
        Some(fit) => minutes_to_limit(fit, high, low)
            .map_or(TIME_TO_LIMIT_CAP_MIN, |m| m.min(TIME_TO_LIMIT_CAP_MIN)),
    }
}

/// Incremental feature state of one machine: rows within the lag horizon, per
/// feature signal its non-NaN samples within the longest window, and per deviation
/// its operand's samples within its window.
#[derive(Debug, Clone)]
pub struct MachineFeatures {
    spec: Arc<FeatureSpec>,
    last_ts: Option<i64>,
    /// Scratch: the row's declared then derived values.
    vals: Vec<f64>,
    /// Per derived signal: its state when it is a deviation.
    deviations: Vec<Option<Deviation>>,
    /// Scratch: an expression's operand values.
    args: Vec<f64>,
    /// Absolute index of `row_ts[0]`.
    row_base: u64,
    row_ts: VecDeque<i64>,
    /// Feature-signal values of the retained rows, `feature_signals.len()` per row.
    row_vals: VecDeque<f64>,
    /// Per span (lag or delta): number of rows (absolute) with `ts <= t - L`.
    /// Monotone because `t` is.
    lag_cursor: Vec<u64>,
    /// Per span: the chosen row (offset into the retained rows) or [`NO_ROW`].
    lag_pick: Vec<usize>,
    windows: Vec<SignalWindows>,
}

impl MachineFeatures {
    /// Empty state for a machine of the org `spec` was compiled from.
    pub fn new(spec: Arc<FeatureSpec>) -> MachineFeatures {
        let windows = spec
            .feature_signals
            .iter()
            .filter_map(|fs| match fs.kind {
                // No stats: keep no samples rather than compute unused moments.
                SignalKind::Continuous => (!spec.windows_ms.is_empty() && !spec.stats.is_empty())
                    .then(|| SignalWindows::Continuous {
                        signal: fs.signal,
                        samples: Samples::new(),
                        windows: spec
                            .windows_ms
                            .iter()
                            .map(|&w| RollingMoments::new(w))
                            .collect(),
                    }),
                SignalKind::Boolean => {
                    (!spec.windows_ms.is_empty()).then(|| SignalWindows::Boolean {
                        signal: fs.signal,
                        samples: Samples::new(),
                        windows: spec
                            .windows_ms
                            .iter()
                            .map(|&w| RollingRate::new(w))
                            .collect(),
                    })
                }
            })
            .collect();
        let deviations = spec
            .derived
            .iter()
            .map(|d| match d.kind {
                DerivedKind::Deviation => Some(Deviation::Mean {
                    samples: Samples::new(),
                    mean: RollingMoments::new(d.window_ms),
                }),
                DerivedKind::MedianDeviation => {
                    Some(Deviation::Median(RollingMedian::new(d.window_ms)))
                }
                DerivedKind::TimeToLimit => Some(Deviation::Trend(Box::default())),
                DerivedKind::Difference
                | DerivedKind::Ratio
                | DerivedKind::ToLimit
                | DerivedKind::Expression => None,
            })
            .collect();
        let args = Vec::with_capacity(
            spec.derived
                .iter()
                .filter_map(|d| d.expr.as_ref().map(|e| e.operands.len()))
                .max()
                .unwrap_or(0),
        );
        MachineFeatures {
            last_ts: None,
            vals: Vec::with_capacity(spec.n_values()),
            deviations,
            args,
            row_base: 0,
            row_ts: VecDeque::new(),
            row_vals: VecDeque::new(),
            lag_cursor: vec![0; spec.spans_ms.len()],
            lag_pick: vec![NO_ROW; spec.spans_ms.len()],
            windows,
            spec,
        }
    }

    /// The spec this state computes.
    pub fn spec(&self) -> &Arc<FeatureSpec> {
        &self.spec
    }

    /// Process the machine's next row and append exactly `spec.len()` features to
    /// `out`.
    ///
    /// `ts` must be strictly greater than the previous call's (the caller sorts and
    /// removes duplicates; checked in debug builds only, release builds never panic
    /// on it). `values` holds the canonical signal values in config signal order
    /// (booleans 0.0/1.0, missing NaN); derived signals are computed here.
    pub fn push(&mut self, ts: i64, values: &[f64], out: &mut Vec<f64>) {
        debug_assert!(
            self.last_ts.is_none_or(|p| ts > p),
            "timestamps must strictly increase: {ts} after {:?}",
            self.last_ts
        );
        debug_assert_eq!(values.len(), self.spec.n_signals, "one value per signal");
        self.last_ts = Some(ts);
        let start = out.len();
        out.reserve(self.spec.len());
        let mut vals = std::mem::take(&mut self.vals);
        vals.clear();
        vals.extend_from_slice(&values[..self.spec.n_signals]);
        for (d, dev) in self.spec.derived.iter().zip(&mut self.deviations) {
            let a = vals.get(d.a).copied().unwrap_or(f64::NAN);
            // A deviation is NaN when `a` is missing (or the window empty, which
            // then it is).
            let v = match dev {
                Some(Deviation::Mean { samples, mean }) => {
                    if !a.is_nan() {
                        samples.push(ts, a);
                        mean.push(a);
                    }
                    mean.advance(samples, ts);
                    samples.trim_below(mean.lo());
                    a - mean.mean()
                }
                Some(Deviation::Median(median)) => {
                    if !a.is_nan() {
                        median.push(ts, a);
                    }
                    median.advance(ts);
                    a - median.median()
                }
                Some(Deviation::Trend(trend)) => {
                    time_to_limit(trend, ts, a, d.window_ms, d.high, d.low)
                }
                None if d.kind == DerivedKind::ToLimit => distance_to_limit(a, d.high, d.low),
                None => match &d.expr {
                    Some(e) => {
                        self.args.clear();
                        self.args.extend(
                            e.operands
                                .iter()
                                .map(|&i| vals.get(i).copied().unwrap_or(f64::NAN)),
                        );
                        e.expr.eval(&self.args)
                    }
                    None => d.kind.apply(a, vals.get(d.b).copied().unwrap_or(f64::NAN)),
                },
            };
            vals.push(v);
        }
        out.extend(self.spec.current.iter().map(|&i| vals[i]));
        if !self.spec.spans_ms.is_empty() {
            self.push_lags(ts, &vals, out);
        }
        self.push_windows(ts, &vals, out);
        self.vals = vals;
        // Windows wrote variances into the std slots; see `Moments::stats`.
        let row = &mut out[start..];
        let spec = &*self.spec;
        debug_assert_eq!(
            row.len() + spec.pooled.len(),
            spec.len(),
            "features appended in whole rows"
        );
        for &i in &spec.std_offsets {
            row[i] = row[i].sqrt();
        }
        // Pooled features last: they read the finished features above.
        for pool in &spec.pooled {
            let members = &spec.pool_members[pool.members.clone()];
            let v = pool.stat.apply(members.iter().map(|&i| out[start + i]));
            out.push(v);
        }
    }

    /// The last pushed row's declared then derived values (empty before a push).
    pub fn values(&self) -> &[f64] {
        &self.vals
    }

    /// Window features of every feature signal.
    fn push_windows(&mut self, ts: i64, vals: &[f64], out: &mut Vec<f64>) {
        let spec = &*self.spec;
        for sw in &mut self.windows {
            match sw {
                SignalWindows::Continuous {
                    signal,
                    samples,
                    windows,
                } => {
                    let x = vals[*signal];
                    if !x.is_nan() {
                        samples.push(ts, x);
                        for w in windows.iter_mut() {
                            w.push(x);
                        }
                    }
                    let mut keep_from = u64::MAX;
                    for w in windows.iter_mut() {
                        w.advance(samples, ts);
                        keep_from = keep_from.min(w.lo());
                        let all = w.moments().stats(w.anchor());
                        for &k in &spec.stat_slots {
                            out.push(all[k]);
                        }
                    }
                    samples.trim_below(keep_from);
                }
                SignalWindows::Boolean {
                    signal,
                    samples,
                    windows,
                } => {
                    let x = vals[*signal];
                    if !x.is_nan() {
                        let on = x != 0.0;
                        samples.push(ts, on);
                        for w in windows.iter_mut() {
                            w.push(on);
                        }
                    }
                    let mut keep_from = u64::MAX;
                    for w in windows.iter_mut() {
                        w.advance(samples, ts);
                        keep_from = keep_from.min(w.lo());
                        out.push(w.rate());
                    }
                    samples.trim_below(keep_from);
                }
            }
        }
    }

    /// Lag and delta features: `merge_asof(direction="backward", tolerance)` over
    /// this machine's rows, one monotone cursor per distinct span.
    fn push_lags(&mut self, ts: i64, vals: &[f64], out: &mut Vec<f64>) {
        let spec = &*self.spec;
        self.row_ts.push_back(ts);
        for fs in &spec.feature_signals {
            self.row_vals.push_back(vals[fs.signal]);
        }
        let end = self.row_base + self.row_ts.len() as u64;
        for (l, &lag) in spec.spans_ms.iter().enumerate() {
            let target = ts.saturating_sub(lag);
            // Rows below `row_base` were dropped because they are older than any
            // span's tolerance allows, so starting past them loses no answer.
            let mut c = self.lag_cursor[l].max(self.row_base);
            while c < end && self.row_ts[(c - self.row_base) as usize] <= target {
                c += 1;
            }
            self.lag_cursor[l] = c;
            self.lag_pick[l] = if c > self.row_base {
                let i = (c - 1 - self.row_base) as usize;
                if self.row_ts[i] >= target.saturating_sub(spec.lag_tolerance_ms) {
                    i
                } else {
                    NO_ROW
                }
            } else {
                NO_ROW
            };
        }
        let nfs = spec.feature_signals.len();
        let lagged = |f: usize, span: usize| match self.lag_pick[span] {
            NO_ROW => f64::NAN,
            i => self.row_vals[i * nfs + f],
        };
        for f in 0..nfs {
            for &span in &spec.lag_span {
                out.push(lagged(f, span));
            }
        }
        for (f, fs) in spec.feature_signals.iter().enumerate() {
            let x = vals[fs.signal];
            for &span in &spec.delta_span {
                out.push(x - lagged(f, span));
            }
        }
        // A row older than t - max(L) - tolerance can never be a lag answer again
        // (t only grows); the row at exactly that bound still can.
        let horizon = spec.lag_horizon_ms().unwrap_or(0);
        let oldest = ts.saturating_sub(horizon);
        while self.row_ts.front().is_some_and(|&r| r < oldest) {
            self.row_ts.pop_front();
            self.row_vals.drain(..nfs);
            self.row_base += 1;
        }
        shrink_after_burst(&mut self.row_ts);
        shrink_after_burst(&mut self.row_vals);
    }

    /// Rows currently retained: the larger of the lag history and the longest
    /// per-signal window or deviation sample queue.
    pub fn retained_rows(&self) -> usize {
        let samples = self
            .windows
            .iter()
            .map(|sw| match sw {
                SignalWindows::Continuous { samples, .. } => samples.len(),
                SignalWindows::Boolean { samples, .. } => samples.len(),
            })
            .chain(self.deviations.iter().flatten().map(|d| match d {
                Deviation::Mean { samples, .. } => samples.len(),
                Deviation::Median(median) => median.len(),
                Deviation::Trend(trend) => trend.len(),
            }))
            .max()
            .unwrap_or(0);
        self.row_ts.len().max(samples)
    }

    /// Approximate heap bytes of the state (allocated capacity, not the shared spec).
    pub fn heap_bytes(&self) -> usize {
        let mut b = self.row_ts.capacity() * size_of::<i64>()
            + self.row_vals.capacity() * size_of::<f64>()
            + self.vals.capacity() * size_of::<f64>()
            + self.deviations.capacity() * size_of::<Option<Deviation>>()
            + self.args.capacity() * size_of::<f64>()
            + self.lag_cursor.capacity() * size_of::<u64>()
            + self.lag_pick.capacity() * size_of::<usize>()
            + self.windows.capacity() * size_of::<SignalWindows>();
        for sw in &self.windows {
            b += match sw {
                SignalWindows::Continuous {
                    samples, windows, ..
                } => {
                    samples.heap_bytes()
                        + windows.capacity() * size_of::<RollingMoments>()
                        + windows
                            .iter()
                            .map(RollingMoments::heap_bytes)
                            .sum::<usize>()
                }
                SignalWindows::Boolean {
                    samples, windows, ..
                } => samples.heap_bytes() + windows.capacity() * size_of::<RollingRate>(),
            };
        }
        for dev in self.deviations.iter().flatten() {
            b += match dev {
                Deviation::Mean { samples, mean } => samples.heap_bytes() + mean.heap_bytes(),
                Deviation::Median(median) => median.heap_bytes(),
                Deviation::Trend(trend) => trend.heap_bytes(),
            };
        }
        b
    }
}
