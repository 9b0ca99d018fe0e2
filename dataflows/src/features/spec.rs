//! [`FeatureSpec`]: an org's feature definitions compiled once into indices and
//! milliseconds, so the per-row path does no name lookups.

use crate::config::{DerivedKind, Expression, OrgConfig, PoolStat, SignalKind, Stat};

/// A signal that gets lag, delta and window features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeatureSignal {
    /// Index into the row's values (declared signals in config order, then derived).
    pub(crate) signal: usize,
    /// Continuous signals get `stats` per window, booleans one rate.
    pub(crate) kind: SignalKind,
}

/// A derived signal: `kind` applied to earlier values of the row (declared signals
/// or earlier derived ones); `usize::MAX` marks an operand an unvalidated config
/// did not resolve (its value is NaN).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Derived {
    pub(crate) kind: DerivedKind,
    pub(crate) a: usize,
    pub(crate) b: usize,
    /// Deviation: the window of the mean; time to limit: of the trend.
    pub(crate) window_ms: i64,
    /// Distance and time to limit: the operand's declared limits.
    pub(crate) high: Option<f64>,
    pub(crate) low: Option<f64>,
    /// Expression: the compiled `expr` (`None` when it does not parse: NaN).
    pub(crate) expr: Option<CompiledExpr>,
}

/// An expression and, per operand in [`Expression::operands`] order, its index
/// among the row's values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledExpr {
    pub(crate) expr: Expression,
    pub(crate) operands: Vec<usize>,
}

/// One pooled feature: `stat` over the row's features at `members` (a range of
/// [`FeatureSpec::pool_members`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pooled {
    pub(crate) stat: PoolStat,
    pub(crate) members: std::ops::Range<usize>,
}

/// Compiled feature definitions of one org (cheap to share: wrap in an `Arc`).
///
/// Feature order is the one [`OrgConfig::feature_names`] fixes: current values, then
/// lags, deltas and windows, each per feature signal.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// Declared signals: the length of a row's `values`.
    pub(crate) n_signals: usize,
    /// Declared then derived signal names (indexed like a row's values).
    pub(crate) signal_names: Vec<String>,
    pub(crate) derived: Vec<Derived>,
    /// Values whose current value is a feature, in feature order.
    pub(crate) current: Vec<usize>,
    /// How far back a derived value depends on declared signals (ms), at most.
    derived_history_ms: i64,
    pub(crate) feature_signals: Vec<FeatureSignal>,
    /// Distinct look-backs of lags and deltas, ascending (one cursor each).
    pub(crate) spans_ms: Vec<i64>,
    pub(crate) lags_ms: Vec<i64>,
    /// Per lag, its index in `spans_ms`.
    pub(crate) lag_span: Vec<usize>,
    pub(crate) deltas_ms: Vec<i64>,
    /// Per delta, its index in `spans_ms`.
    pub(crate) delta_span: Vec<usize>,
    pub(crate) windows_ms: Vec<i64>,
    pub(crate) stats: Vec<Stat>,
    /// Per stat, its slot in `Moments::stats`' `[mean, std, min, max]`.
    pub(crate) stat_slots: Vec<usize>,
    pub(crate) lag_tolerance_ms: i64,
    /// Offsets of the `std` features within a row's features.
    pub(crate) std_offsets: Vec<usize>,
    /// Pooled features, in feature order, after every other feature.
    pub(crate) pooled: Vec<Pooled>,
    /// Offsets (within a row's features) of the pooled features' members.
    pub(crate) pool_members: Vec<usize>,
    pooled_names: Vec<String>,
    len: usize,
}

/// Seconds (config) to milliseconds (event time), saturating rather than wrapping
/// on absurd values.
fn s_to_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl FeatureSpec {
    /// Compile the features of `org`; `lag_tolerance_ms` is the runtime's
    /// `lag_tolerance_ms`.
    pub fn from_org(org: &OrgConfig, lag_tolerance_ms: u64) -> FeatureSpec {
        let values = org.value_signals();
        let index = |name: &str| values.iter().position(|s| s.name == name);
        // Same resolution as `OrgConfig::feature_signals` (unknown names skipped), so
        // the names always agree with `OrgConfig::feature_names`.
        let feature_signals: Vec<FeatureSignal> = org
            .feature_signals()
            .iter()
            .filter_map(|fs| {
                Some(FeatureSignal {
                    signal: index(fs.name)?,
                    kind: fs.kind,
                })
            })
            .collect();
        let current = org
            .current_signals()
            .iter()
            .filter_map(|s| index(s.name))
            .collect();
        let n_signals = org.signals.len();
        let derived = org
            .features
            .derived
            .iter()
            .enumerate()
            .map(|(j, d)| {
                // Only values computed before this one (validation guarantees it).
                let resolve = |n: &str| {
                    index(n)
                        .filter(|&v| v < n_signals + j)
                        .unwrap_or(usize::MAX)
                };
                let op = |i: usize| d.of.get(i).map_or(usize::MAX, |n| resolve(n));
                let expr = match (d.kind, &d.expr) {
                    (DerivedKind::Expression, Some(src)) => {
                        Expression::parse(src).ok().map(|expr| CompiledExpr {
                            operands: expr.operands().iter().map(|n| resolve(n)).collect(),
                            expr,
                        })
                    }
                    _ => None,
                };
                let limits =
                    d.of.first()
                        .and_then(|n| org.signal(n))
                        .and_then(|s| s.limits.as_ref());
                Derived {
                    kind: d.kind,
                    a: op(0),
                    b: op(1),
                    window_ms: s_to_ms(d.window_s.unwrap_or(0)),
                    high: limits.and_then(|l| l.high),
                    low: limits.and_then(|l| l.low),
                    expr,
                }
            })
            .collect();
        let f = &org.features;
        let lags_ms: Vec<i64> = f.lags_s.iter().map(|&l| s_to_ms(l)).collect();
        let deltas_ms: Vec<i64> = f.deltas_s.iter().map(|&l| s_to_ms(l)).collect();
        let mut spans_ms: Vec<i64> = lags_ms.iter().chain(&deltas_ms).copied().collect();
        spans_ms.sort_unstable();
        spans_ms.dedup();
        let span_of = |l: &i64| spans_ms.binary_search(l).expect("span listed");
        let mut spec = FeatureSpec {
            n_signals,
            signal_names: values.iter().map(|s| s.name.to_string()).collect(),
            derived,
            current,
            derived_history_ms: org
                .derived_history_ms()
                .into_iter()
                .max()
                .map_or(0, |ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            feature_signals,
            lag_span: lags_ms.iter().map(span_of).collect(),
            delta_span: deltas_ms.iter().map(span_of).collect(),
            spans_ms: spans_ms.clone(),
            lags_ms,
            deltas_ms,
            windows_ms: f.windows_s.iter().map(|&w| s_to_ms(w)).collect(),
            stats: f.stats.clone(),
            stat_slots: f
                .stats
                .iter()
                .map(|st| match st {
                    Stat::Mean => 0,
                    Stat::Std => 1,
                    Stat::Min => 2,
                    Stat::Max => 3,
                })
                .collect(),
            lag_tolerance_ms: i64::try_from(lag_tolerance_ms).unwrap_or(i64::MAX),
            std_offsets: Vec::new(),
            pooled: Vec::new(),
            pool_members: Vec::new(),
            pooled_names: org.pooled_feature_names(),
            len: 0,
        };
        let nfs = spec.feature_signals.len();
        // Walk the window layout (after current values, lags and deltas) for std slots.
        let mut at = spec.current.len() + nfs * (spec.lags_ms.len() + spec.deltas_ms.len());
        let mut window_start = Vec::with_capacity(nfs);
        for fs in &spec.feature_signals {
            window_start.push(at);
            for _ in &spec.windows_ms {
                if fs.kind == SignalKind::Continuous {
                    for (k, st) in spec.stats.iter().enumerate() {
                        if *st == Stat::Std {
                            spec.std_offsets.push(at + k);
                        }
                    }
                }
                at += spec.window_width(fs.kind);
            }
        }
        spec.len = at + spec.compile_pools(org, &window_start);
        debug_assert_eq!(spec.pooled.len(), spec.pooled_names.len());
        spec
    }

    /// Fills `pooled` and `pool_members` in the order of
    /// [`OrgConfig::pooled_feature_names`]; returns how many features they add.
    fn compile_pools(&mut self, org: &OrgConfig, window_start: &[usize]) -> usize {
        let (nc, nl, nd) = (self.current.len(), self.lags_ms.len(), self.deltas_ms.len());
        let nfs = self.feature_signals.len();
        let ns = self.stats.len();
        for rp in org.resolved_pools() {
            // The member offsets of each pooled slot, in feature order.
            let mut slots: Vec<Vec<usize>> = Vec::new();
            if let Some(cur) = &rp.current {
                slots.push(cur.clone());
            }
            for l in 0..nl {
                slots.push(rp.members.iter().map(|&j| nc + j * nl + l).collect());
            }
            for d in 0..nd {
                slots.push(
                    rp.members
                        .iter()
                        .map(|&j| nc + nfs * nl + j * nd + d)
                        .collect(),
                );
            }
            for w in 0..self.windows_ms.len() {
                for k in 0..ns {
                    slots.push(
                        rp.members
                            .iter()
                            .map(|&j| window_start[j] + w * ns + k)
                            .collect(),
                    );
                }
            }
            for &stat in &rp.pool.stats {
                for slot in &slots {
                    let from = self.pool_members.len();
                    self.pool_members.extend(slot);
                    self.pooled.push(Pooled {
                        stat,
                        members: from..self.pool_members.len(),
                    });
                }
            }
        }
        self.pooled.len()
    }

    /// Declared plus derived signals: the values a row's features come from.
    pub(crate) fn n_values(&self) -> usize {
        self.signal_names.len()
    }

    /// Outputs per window of a signal of this kind.
    pub(crate) fn window_width(&self, kind: SignalKind) -> usize {
        match kind {
            SignalKind::Continuous => self.stats.len(),
            SignalKind::Boolean => 1,
        }
    }

    /// Number of features [`MachineFeatures::push`](super::MachineFeatures::push)
    /// appends per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no features at all (an org without signals).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feature names in output order; equal to [`OrgConfig::feature_names`].
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .current
            .iter()
            .map(|&i| self.signal_names[i].clone())
            .collect();
        // Milliseconds came from whole seconds, so `/ 1000` is exact.
        for fs in &self.feature_signals {
            let s = &self.signal_names[fs.signal];
            for l in &self.lags_ms {
                names.push(format!("{s}_lag_{}s", l / 1000));
            }
        }
        for fs in &self.feature_signals {
            let s = &self.signal_names[fs.signal];
            for l in &self.deltas_ms {
                names.push(format!("{s}_delta_{}s", l / 1000));
            }
        }
        for fs in &self.feature_signals {
            let s = &self.signal_names[fs.signal];
            for w in &self.windows_ms {
                let w = w / 1000;
                match fs.kind {
                    SignalKind::Continuous => {
                        for st in &self.stats {
                            names.push(format!("{s}_rolling_{w}s_{}", st.name()));
                        }
                    }
                    SignalKind::Boolean => names.push(format!("{s}_rolling_{w}s_rate")),
                }
            }
        }
        names.extend(self.pooled_names.iter().cloned());
        names
    }

    /// Longest lag or delta plus the lag tolerance.
    pub(crate) fn lag_horizon_ms(&self) -> Option<i64> {
        self.spans_ms
            .last()
            .map(|l| l.saturating_add(self.lag_tolerance_ms))
    }

    /// History (ms) a machine's features depend on: the longest window or the
    /// longest lag or delta plus tolerance, whichever is larger, plus the longest
    /// derived-signal history; equal to [`OrgConfig::history_ms`].
    pub fn history_ms(&self) -> i64 {
        let win = self.windows_ms.iter().max().copied().unwrap_or(0);
        self.lag_horizon_ms()
            .unwrap_or(0)
            .max(win)
            .saturating_add(self.derived_history_ms)
    }
}
