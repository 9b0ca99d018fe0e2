//! [`FeatureSpec`]: an org's feature definitions compiled once into indices and
//! milliseconds, so the per-row path does no name lookups.

use crate::config::{OrgConfig, SignalKind, Stat};

/// A signal that gets lag and window features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeatureSignal {
    /// Index into the row's values (config signal order).
    pub(crate) signal: usize,
    /// Continuous signals get `stats` per window, booleans one rate.
    pub(crate) kind: SignalKind,
}

/// Compiled feature definitions of one org (cheap to share: wrap in an `Arc`).
///
/// Feature order is the one [`OrgConfig::feature_names`] fixes: current values, then
/// lags per feature signal, then windows per feature signal.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    pub(crate) n_signals: usize,
    pub(crate) signal_names: Vec<String>,
    pub(crate) feature_signals: Vec<FeatureSignal>,
    pub(crate) lags_ms: Vec<i64>,
    pub(crate) windows_ms: Vec<i64>,
    pub(crate) stats: Vec<Stat>,
    /// Per stat, its slot in `Moments::stats`' `[mean, std, min, max]`.
    pub(crate) stat_slots: Vec<usize>,
    pub(crate) lag_tolerance_ms: i64,
    /// Offsets of the `std` features within a row's features.
    pub(crate) std_offsets: Vec<usize>,
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
        // Same resolution as `OrgConfig::feature_signals` (unknown names skipped), so
        // the names always agree with `OrgConfig::feature_names`.
        let feature_signals: Vec<FeatureSignal> = org
            .feature_signals()
            .iter()
            .filter_map(|fs| {
                let signal = org.signals.iter().position(|s| s.name == fs.name)?;
                Some(FeatureSignal {
                    signal,
                    kind: fs.kind,
                })
            })
            .collect();
        let f = &org.features;
        let mut spec = FeatureSpec {
            n_signals: org.signals.len(),
            signal_names: org.signals.iter().map(|s| s.name.clone()).collect(),
            feature_signals,
            lags_ms: f.lags_s.iter().map(|&l| s_to_ms(l)).collect(),
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
            len: 0,
        };
        spec.len = spec.n_signals
            + spec.feature_signals.len() * spec.lags_ms.len()
            + spec
                .feature_signals
                .iter()
                .map(|fs| spec.window_width(fs.kind) * spec.windows_ms.len())
                .sum::<usize>();
        // Walk the window layout (after current values and lags) for std slots.
        let mut at = spec.n_signals + spec.feature_signals.len() * spec.lags_ms.len();
        for fs in &spec.feature_signals {
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
        debug_assert_eq!(at, spec.len);
        spec
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
        let mut names = self.signal_names.clone();
        // Milliseconds came from whole seconds, so `/ 1000` is exact.
        for fs in &self.feature_signals {
            let s = &self.signal_names[fs.signal];
            for l in &self.lags_ms {
                names.push(format!("{s}_lag_{}s", l / 1000));
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
        names
    }

    /// Longest lag plus the lag tolerance.
    pub(crate) fn lag_horizon_ms(&self) -> Option<i64> {
        self.lags_ms
            .iter()
            .max()
            .map(|l| l.saturating_add(self.lag_tolerance_ms))
    }

    /// History one machine's state must cover (ms): the longest window or the
    /// longest lag plus tolerance, whichever is larger.
    pub fn history_ms(&self) -> i64 {
        let win = self.windows_ms.iter().max().copied().unwrap_or(0);
        self.lag_horizon_ms().unwrap_or(0).max(win)
    }
}
