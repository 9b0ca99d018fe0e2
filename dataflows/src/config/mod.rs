//! The prognos configuration: one TOML document, one `[orgs.<id>]` table per
//! organization. Types here are wire types (serde, `deny_unknown_fields`, units in
//! field names); [`Config::validate`] checks what serde cannot and names the failing
//! key. Loading from a file and `PROGNOS_*` environment overrides live in the
//! `prognos` crate, which owns the process environment.

pub mod cron;
pub mod expr;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use cron::Cron;
pub use expr::{ExprError, Expression};

/// The whole configuration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Event-time and batching settings shared by every organization.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Alert dedup and lifecycle settings.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// The embedded simulator that `prognos run` feeds the pipeline with.
    #[serde(default)]
    pub simulator: SimulatorConfig,
    /// Where the history of mapped rows lives and when its segments close.
    #[serde(default)]
    pub history: HistoryConfig,
    /// The training job queue and scheduler (every org's runs).
    #[serde(default)]
    pub training: TrainerConfig,
    /// One entry per organization, keyed by organization id.
    pub orgs: BTreeMap<String, OrgConfig>,
}

const fn default_allowed_lateness_ms() -> u64 {
    5_000
}
const fn default_idle_timeout_ms() -> u64 {
    30_000
}
const fn default_lag_tolerance_ms() -> u64 {
    60_000
}
const fn default_max_batch_rows() -> usize {
    1_024
}
/// Default of `runtime.model_cache_models` (the seed's PREDICTION_CACHE_SIZE).
pub const DEFAULT_MODEL_CACHE_MODELS: usize = 256;
/// Default of `runtime.model_cache_mib`.
pub const DEFAULT_MODEL_CACHE_MIB: u64 = 1_024;
const fn default_model_cache_models() -> usize {
    DEFAULT_MODEL_CACHE_MODELS
}
const fn default_model_cache_mib() -> u64 {
    DEFAULT_MODEL_CACHE_MIB
}

/// Event-time and batching settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// A row is late when its ts is below its partition's max ts minus this.
    #[serde(default = "default_allowed_lateness_ms")]
    pub allowed_lateness_ms: u64,
    /// A partition silent this long (wall clock) stops holding the frontier back.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A lag `L` takes the latest sample in `[t - L - tolerance, t - L]`.
    #[serde(default = "default_lag_tolerance_ms")]
    pub lag_tolerance_ms: u64,
    /// Largest number of rows scored in one ONNX Runtime call.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// Most model versions loaded at once in one process (all its workers share
    /// them): the seed's PREDICTION_CACHE_SIZE.
    #[serde(default = "default_model_cache_models")]
    pub model_cache_models: usize,
    /// Most memory (MiB) the loaded versions of one process hold, as measured
    /// when each loads (ONNX Runtime's sessions, not the files' size).
    #[serde(default = "default_model_cache_mib")]
    pub model_cache_mib: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            allowed_lateness_ms: default_allowed_lateness_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            lag_tolerance_ms: default_lag_tolerance_ms(),
            max_batch_rows: default_max_batch_rows(),
            model_cache_models: default_model_cache_models(),
            model_cache_mib: default_model_cache_mib(),
        }
    }
}

const fn default_dedup_window_s() -> u64 {
    300
}
const fn default_max_per_window() -> u32 {
    3
}
const fn default_resolve_after_s() -> u64 {
    600
}

/// Alert dedup and lifecycle settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Length of the epoch-aligned event-time dedup windows.
    #[serde(default = "default_dedup_window_s")]
    pub dedup_window_s: u64,
    /// Notifications per key and window; later detections are counted only.
    #[serde(default = "default_max_per_window")]
    pub max_per_window: u32,
    /// A key with no detection for this long (event time) is resolved.
    #[serde(default = "default_resolve_after_s")]
    pub resolve_after_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dedup_window_s: default_dedup_window_s(),
            max_per_window: default_max_per_window(),
            resolve_after_s: default_resolve_after_s(),
        }
    }
}

const fn default_machines_per_org() -> u32 {
    4
}
const fn default_interval_ms() -> u64 {
    30_000
}
const fn default_speed() -> f64 {
    60.0
}
const fn default_seed() -> u64 {
    7
}
const fn default_failure_rate() -> f64 {
    1.0
}
const fn default_first_model_days() -> f64 {
    4.0
}

/// The embedded simulator (`prognos run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Furnaces simulated per configured organization.
    #[serde(default = "default_machines_per_org")]
    pub machines_per_org: u32,
    /// Sampling interval of every furnace.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Event time runs this many times faster than the wall clock.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Seed of the deterministic simulation.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Failures per machine per simulated day.
    #[serde(default = "default_failure_rate")]
    pub failure_rate_per_machine_day: f64,
    /// An org without a model trains its first one, in the background, on this
    /// many days of simulated history (its `machines_per_org` furnaces, another
    /// seed); 0 disables (rules only until `prognos train`).
    #[serde(default = "default_first_model_days")]
    pub first_model_days: f64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            machines_per_org: default_machines_per_org(),
            interval_ms: default_interval_ms(),
            speed: default_speed(),
            seed: default_seed(),
            failure_rate_per_machine_day: default_failure_rate(),
            first_model_days: default_first_model_days(),
        }
    }
}

const fn yes() -> bool {
    true
}

const fn default_segment_max_rows() -> u64 {
    200_000
}
const fn default_segment_max_age_s() -> u64 {
    600
}
const fn default_compact_min_segments() -> usize {
    8
}

/// The history store (ARCHITECTURE.md, "History and training").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Directory of the history (shared by a cluster's workers and controller);
    /// `<data-dir>/history` when absent.
    #[serde(default)]
    pub dir: Option<String>,
    /// The history in an object store instead (`s3://bucket/prefix`; endpoint and
    /// credentials from the `AWS_*` variables); wins over `dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// An open segment is closed (written as Parquet) at this many rows.
    #[serde(default = "default_segment_max_rows")]
    pub segment_max_rows: u64,
    /// An open segment is closed this long after it was opened (wall clock).
    #[serde(default = "default_segment_max_age_s")]
    pub segment_max_age_s: u64,
    /// A day with at least this many segments is merged into one file.
    #[serde(default = "default_compact_min_segments")]
    pub compact_min_segments: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            dir: None,
            url: None,
            segment_max_rows: default_segment_max_rows(),
            segment_max_age_s: default_segment_max_age_s(),
            compact_min_segments: default_compact_min_segments(),
        }
    }
}

const fn default_max_concurrent() -> u32 {
    1
}
const fn default_max_retries() -> u32 {
    3
}
const fn default_retry_backoff_s() -> u64 {
    60
}
const fn default_retry_backoff_max_s() -> u64 {
    3_600
}
const fn default_min_history_rows() -> u64 {
    1_000
}

/// The training job queue: every run of every org (API, schedule, CLI, first
/// model) goes through it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    /// Runs at once (the seed's TRAINING_MAX_CONCURRENT); the rest queue.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// A failed scheduled run is tried again this many times.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_retry_backoff_s")]
    pub retry_backoff_s: u64,
    /// Longest wait between retries.
    #[serde(default = "default_retry_backoff_max_s")]
    pub retry_backoff_max_s: u64,
    /// A run with fewer rows of history is skipped (not an error).
    #[serde(default = "default_min_history_rows")]
    pub min_history_rows: u64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            max_concurrent: default_max_concurrent(),
            max_retries: default_max_retries(),
            retry_backoff_s: default_retry_backoff_s(),
            retry_backoff_max_s: default_retry_backoff_max_s(),
            min_history_rows: default_min_history_rows(),
        }
    }
}

/// One organization: its raw schema, features, rules, prediction and training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfig {
    /// Human-readable name.
    pub name: String,
    /// Whether rows of this org are processed at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Raw column holding the machine id.
    pub machine_column: String,
    /// Raw column holding the event time (RFC 3339 string or epoch milliseconds).
    pub time_column: String,
    /// Canonical signals and the raw columns they come from, in feature order.
    pub signals: Vec<SignalConfig>,
    /// Which lag and rolling-window features are computed.
    #[serde(default)]
    pub features: FeaturesConfig,
    /// Level rules that raise CRITICAL and WARNING alerts.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Thresholds and component mapping of the predictive alerts.
    pub prediction: PredictionConfig,
    /// Fault flags whose rising edge starts a failure of a component (labels).
    #[serde(default)]
    pub failure_signals: Vec<FailureSignalConfig>,
    /// Retraining schedule and hyperparameters.
    #[serde(default)]
    pub training: TrainingConfig,
}

/// The kind of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A real-valued measurement.
    Continuous,
    /// An on/off state (true/false, 0/1, "on"/"off"); features see 0/1.
    Boolean,
}

/// One canonical signal of an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    /// Canonical name (`[a-z][a-z0-9_]*`), used in feature names.
    pub name: String,
    /// Raw column it is read from.
    pub column: String,
    /// Continuous or boolean.
    pub kind: SignalKind,
    /// Engineering unit of a continuous signal (e.g. `degC`, `pct`).
    #[serde(default)]
    pub unit: Option<String>,
    /// Operating limits of a continuous signal: what the plant's engineers know
    /// (trip points, datasheet maxima). `forecast` rules extrapolate to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<SignalLimits>,
}

/// A continuous signal's operating limits, in its unit, and the component a
/// crossing fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalLimits {
    /// The signal must stay below this.
    #[serde(default)]
    pub high: Option<f64>,
    /// The signal must stay above this.
    #[serde(default)]
    pub low: Option<f64>,
    /// The component a crossing fails (a value of `prediction.component_mapping`).
    pub component: String,
}

/// A signal features are computed for: a declared one or a derived one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSignal<'a> {
    /// Its name (a declared or derived signal).
    pub name: &'a str,
    /// Continuous or boolean (derived signals are continuous).
    pub kind: SignalKind,
}

/// A pool whose members resolved (see [`OrgConfig::resolved_pools`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPool<'a> {
    /// Its configuration.
    pub pool: &'a PooledConfig,
    /// Per member, its index among the feature signals.
    pub members: Vec<usize>,
    /// Per member, its index among the current-value signals, when all have one.
    pub current: Option<Vec<usize>>,
}

/// A rolling-window statistic of a continuous signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// Mean of the samples in the window.
    Mean,
    /// Sample standard deviation (ddof = 1).
    Std,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

impl Stat {
    /// The suffix used in feature names.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Mean => "mean",
            Stat::Std => "std",
            Stat::Min => "min",
            Stat::Max => "max",
        }
    }
}

fn default_lags_s() -> Vec<u64> {
    vec![60, 120, 300]
}
fn default_windows_s() -> Vec<u64> {
    vec![180, 300, 600]
}
fn default_stats() -> Vec<Stat> {
    vec![Stat::Mean, Stat::Std, Stat::Min, Stat::Max]
}

/// How a derived signal is computed from its operands `of` (or, for an
/// expression, from the signals its `expr` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DerivedKind {
    /// `a - b` of `of = [a, b]`, e.g. a zone temperature minus its setpoint.
    Difference,
    /// `a / b` of `of = [a, b]`, NaN when `b` is 0.
    Ratio,
    /// `a - mean(a)` of `of = [a]`, the mean over `(t - window_s, t]` (NaN ignored):
    /// the value relative to the machine's own recent level.
    Deviation,
    /// `a - median(a)` of `of = [a]`, the median over `(t - window_s, t]` (NaN
    /// ignored; the midpoint of the two middle values of an even count): like
    /// `deviation`, but a baseline that a few outlying samples in the window
    /// (an idle spell, a spike) do not drag.
    MedianDeviation,
    /// The distance from `a` to the nearer of its declared `limits`, in its unit:
    /// `high - a` and `a - low`, the smaller; negative beyond a limit. `a` must be
    /// a declared signal with limits.
    ToLimit,
    /// Minutes until the least-squares line through `a`'s samples of the last
    /// `window_s` (at least 5 spanning a quarter of the window, as a `forecast`
    /// rule fits it) reaches one of `a`'s limits: 0 when already beyond, at most
    /// [`TIME_TO_LIMIT_CAP_MIN`] (also when the line heads away or is flat), NaN
    /// while there are too few samples. `a` must be a declared signal with limits.
    TimeToLimit,
    /// The arithmetic `expr` over the row's signals and constants, e.g. a pump
    /// law `head / speed^2` or a ratio to a nameplate value `power / 75`:
    /// `+ - * / ^`, parentheses, unary minus, `abs sqrt ln exp log10` and
    /// two-argument `min max`. NaN when an operand is NaN or the result is not
    /// finite (a division by zero). Parsed once at start-up by `exmex`
    /// (maintained, MIT/Apache-2.0; it compiles an expression once and evaluates
    /// it on operand values bound by position, without allocating; `evalexpr` is
    /// AGPL and evaluates through a name-keyed context, `fasteval` and `meval` are
    /// unmaintained); see [`expr`].
    Expression,
}

/// The largest `time_to_limit` value (minutes): a day, "not soon".
pub const TIME_TO_LIMIT_CAP_MIN: f64 = 1440.0;

impl DerivedKind {
    /// How many operands `of` lists.
    pub fn operands(self) -> usize {
        match self {
            DerivedKind::Difference | DerivedKind::Ratio => 2,
            DerivedKind::Deviation
            | DerivedKind::MedianDeviation
            | DerivedKind::ToLimit
            | DerivedKind::TimeToLimit => 1,
            DerivedKind::Expression => 0,
        }
    }

    /// Whether the kind looks back over `window_s` (the deviations, the trend).
    pub fn windowed(self) -> bool {
        matches!(
            self,
            DerivedKind::Deviation | DerivedKind::MedianDeviation | DerivedKind::TimeToLimit
        )
    }

    /// Whether the kind reads its operand's declared `limits`.
    pub fn needs_limits(self) -> bool {
        matches!(self, DerivedKind::ToLimit | DerivedKind::TimeToLimit)
    }

    /// The per-row value of a two-operand kind (NaN when either operand is);
    /// the deviations are stateful and expressions compiled, both computed by the
    /// feature state.
    #[inline]
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            DerivedKind::Difference => a - b,
            DerivedKind::Ratio if b == 0.0 => f64::NAN,
            DerivedKind::Ratio => a / b,
            DerivedKind::Deviation
            | DerivedKind::MedianDeviation
            | DerivedKind::ToLimit
            | DerivedKind::TimeToLimit
            | DerivedKind::Expression => f64::NAN,
        }
    }
}

/// The distance from `a` to the nearer limit (see [`DerivedKind::ToLimit`]);
/// NaN when `a` is or there is no limit.
#[inline]
pub fn distance_to_limit(a: f64, high: Option<f64>, low: Option<f64>) -> f64 {
    let h = high.map_or(f64::NAN, |h| h - a);
    let l = low.map_or(f64::NAN, |l| a - l);
    // `min` returns the other operand when one is NaN.
    h.min(l)
}

/// A continuous signal computed per row from declared continuous signals or earlier
/// derived ones; it can have a current-value feature and, like a declared signal,
/// lags, deltas and windows. Trees cannot subtract, so "temperature minus setpoint"
/// or "oil temperature above its last hour's mean" is invisible to them unless it
/// is a feature, and raw levels that differ from machine to machine (calibration,
/// heater power, cooler size) let a model learn the machines it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedSignalConfig {
    /// Canonical name (`[a-z][a-z0-9_]*`), distinct from every declared signal.
    pub name: String,
    /// Difference, ratio, deviation, median deviation or expression.
    pub kind: DerivedKind,
    /// Operands: `[a, b]` (difference, ratio) or `[a]` (the deviations); declared
    /// continuous signals or derived signals listed earlier. Empty for an
    /// expression, whose operands are the names in `expr`.
    #[serde(default)]
    pub of: Vec<String>,
    /// The deviations only: the window of the mean or median, in seconds.
    #[serde(default)]
    pub window_s: Option<u64>,
    /// Expressions only: the arithmetic, e.g. `"(thrust_temp - oil_temp) /
    /// speed^2"`; its names follow the rule of `of`.
    #[serde(default)]
    pub expr: Option<String>,
}

impl DerivedSignalConfig {
    /// The names it is computed from: `of`, or the names `expr` reads (none when
    /// it does not parse; validation refuses that).
    pub fn operands(&self) -> Vec<String> {
        match (self.kind, &self.expr) {
            (DerivedKind::Expression, Some(src)) => Expression::parse(src)
                .map(|e| e.operands().to_vec())
                .unwrap_or_default(),
            (DerivedKind::Expression, None) => Vec::new(),
            _ => self.of.clone(),
        }
    }
}

/// Current-value, lag, delta and rolling-window features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Signals (declared or derived) whose current value is a feature, in feature
    /// order; all declared signals and then all derived ones when absent.
    #[serde(default)]
    pub current: Option<Vec<String>>,
    /// Signals (declared or derived) that get lag, delta and window features; all
    /// declared signals and then all derived ones when absent.
    #[serde(default)]
    pub signals: Option<Vec<String>>,
    /// Signals computed per row, in order (an operand must be listed before use).
    #[serde(default)]
    pub derived: Vec<DerivedSignalConfig>,
    /// Lags in seconds, ascending.
    #[serde(default = "default_lags_s")]
    pub lags_s: Vec<u64>,
    /// Delta spans in seconds, ascending: `{signal}_delta_{L}s` is the current value
    /// minus the lag-`L` value (same lag rule and tolerance; NaN when either is NaN).
    #[serde(default)]
    pub deltas_s: Vec<u64>,
    /// Rolling windows in seconds, ascending; each covers `(t - W, t]`.
    #[serde(default = "default_windows_s")]
    pub windows_s: Vec<u64>,
    /// Statistics of continuous signals per window (booleans get their rate).
    #[serde(default = "default_stats")]
    pub stats: Vec<Stat>,
    /// Pools of like signals (the zones of a furnace): features that do not care
    /// which of them moved.
    #[serde(default)]
    pub pooled: Vec<PooledConfig>,
}

/// A pool of like feature signals, e.g. one signal per furnace zone. For every
/// feature its members share (the current value when each of them has one, each
/// lag, delta and window statistic) it adds one feature per `stats` entry: the
/// largest, smallest or largest-magnitude value over the members, NaN ignored
/// (NaN when all are). Named `{name}_{stat}` plus the shared feature's suffix
/// (`zone_dev_max_rolling_300s_std`), appended after every other feature.
///
/// A failure of any one zone then shows in the same feature, so the model
/// learns it from every zone's failures at once instead of from a third of
/// them per zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PooledConfig {
    /// Canonical name (`[a-z][a-z0-9_]*`), the prefix of the pooled features.
    pub name: String,
    /// Members: at least two continuous signals listed in `signals`.
    pub of: Vec<String>,
    /// What to take over the members.
    pub stats: Vec<PoolStat>,
}

/// What a pool takes over its members' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolStat {
    /// Largest value.
    Max,
    /// Smallest value.
    Min,
    /// Largest absolute value.
    MaxAbs,
}

impl PoolStat {
    /// The part of feature names after the pool's name.
    pub fn name(self) -> &'static str {
        match self {
            PoolStat::Max => "max",
            PoolStat::Min => "min",
            PoolStat::MaxAbs => "max_abs",
        }
    }

    /// The pooled value of `xs`, NaN ignored; NaN when every value is.
    #[inline]
    pub fn apply(self, xs: impl IntoIterator<Item = f64>) -> f64 {
        let mut acc = f64::NAN;
        for x in xs {
            let x = if self == PoolStat::MaxAbs { x.abs() } else { x };
            // `f64::max`/`min` return the other operand when one is NaN.
            acc = match self {
                PoolStat::Max | PoolStat::MaxAbs => acc.max(x),
                PoolStat::Min => acc.min(x),
            };
        }
        acc
    }
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        FeaturesConfig {
            current: None,
            signals: None,
            derived: Vec::new(),
            lags_s: default_lags_s(),
            deltas_s: Vec::new(),
            windows_s: default_windows_s(),
            stats: default_stats(),
            pooled: Vec::new(),
        }
    }
}

/// Severity of a rule alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// Immediate issue.
    Critical,
    /// Threshold violation.
    Warning,
}

/// A level rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name within the org, shown on the alert.
    pub name: String,
    /// CRITICAL or WARNING.
    pub severity: Severity,
    /// Component the alert is raised against (a value of the component mapping).
    pub component: String,
    /// How long (event time) the condition must hold before it fires.
    #[serde(default)]
    pub for_s: u64,
    /// The condition.
    pub condition: Condition,
}

/// A rule condition over the org's canonical signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// `signal > above` or `signal < below` (at least one bound).
    Threshold {
        /// Continuous signal.
        signal: String,
        /// Fires above this value.
        #[serde(default)]
        above: Option<f64>,
        /// Fires below this value.
        #[serde(default)]
        below: Option<f64>,
    },
    /// `|signal - setpoint| > band`.
    Deviation {
        /// Continuous signal.
        signal: String,
        /// Continuous setpoint signal.
        setpoint: String,
        /// Allowed band, in the signal's unit.
        band: f64,
    },
    /// A boolean fault flag is on.
    FaultFlag {
        /// Boolean signal.
        signal: String,
    },
    /// `|Δsignal| / Δt` over the last `window_s` exceeds `max_per_min`.
    RateOfChange {
        /// Continuous signal.
        signal: String,
        /// Largest allowed change per minute, in the signal's unit.
        max_per_min: f64,
        /// Span the rate is measured over.
        window_s: u64,
    },
    /// Trend to limit: the least-squares line through the signal's samples of
    /// the last `window_s` (event time), extrapolated, crosses one of the
    /// signal's `limits` within `horizon_s` (by default the org's
    /// `prediction.horizon_minutes`: the lead it counts as in time). Fires as a PREDICTIVE alert with
    /// the predicted time to the crossing; needs no failure label.
    Forecast {
        /// Continuous signal with `limits`.
        signal: String,
        /// Span the trend is fitted over.
        window_s: u64,
        /// Alert when the crossing is predicted within this.
        #[serde(default)]
        horizon_s: Option<u64>,
        /// Fewest samples a fit needs (they must also span a quarter of the window).
        #[serde(default = "default_forecast_min_points")]
        min_points: usize,
    },
}

const fn default_forecast_min_points() -> usize {
    5
}

impl Condition {
    /// The signals this condition reads.
    pub fn signals(&self) -> Vec<&str> {
        match self {
            Condition::Threshold { signal, .. }
            | Condition::FaultFlag { signal }
            | Condition::RateOfChange { signal, .. }
            | Condition::Forecast { signal, .. } => vec![signal],
            Condition::Deviation {
                signal, setpoint, ..
            } => vec![signal, setpoint],
        }
    }
}

const fn default_failure_threshold() -> f64 {
    0.85
}
const fn default_confidence_threshold() -> f64 {
    0.7
}
const fn default_horizon_minutes() -> u32 {
    10
}
const fn default_ttf_minutes() -> u32 {
    8
}

/// Predictive-alert settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionConfig {
    /// Whether the org's model scores rows (rules run either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PREDICTIVE alert when the failure probability reaches this.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: f64,
    /// ... and has stayed at or above it on every scored row of the machine for
    /// this long, in event time (0: the first such row alerts). One row above the
    /// threshold between normal ones is usually noise; a failure building up
    /// keeps the probability high.
    #[serde(default)]
    pub for_s: u64,
    /// A probability at or above this alerts on its first row, without waiting
    /// `for_s`: the model is sure enough that a second row would only make the
    /// warning later (none when absent: every alert waits `for_s`). In
    /// `[failure_threshold, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immediate_threshold: Option<f64>,
    /// The predicted component is used when its probability reaches this.
    #[serde(default = "default_confidence_threshold")]
    pub confidence_threshold: f64,
    /// Component and time-to-failure models run at or above this probability;
    /// half the failure threshold when absent.
    #[serde(default)]
    pub stage2_gate: Option<f64>,
    /// A row is positive when a failure starts within this many minutes after it.
    #[serde(default = "default_horizon_minutes")]
    pub horizon_minutes: u32,
    /// Time to failure reported when the regressor did not run.
    #[serde(default = "default_ttf_minutes")]
    pub time_to_failure_minutes: u32,
    /// Component classes: `"0"` is the general component, `"1"`.. the rest.
    pub component_mapping: BTreeMap<String, String>,
    /// The false-alarm budget (false episodes per machine-day) the operating
    /// point is chosen for: training sweeps `failure_threshold` and `for_s` on
    /// its validation rows with the alert, dedup and episode rules of `prognos
    /// replay`, and a deployed version brings the point with the best event
    /// recall within the budget (unless `pin_threshold`). None: the configured
    /// threshold and `for_s` are used as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_false_alarms_per_day: Option<f64>,
    /// Keep `failure_threshold` and `for_s` as configured even with a budget (the
    /// sweep is still recorded with the version).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pin_threshold: bool,
    /// Deadline of one batch's model run (ms; the seed's PREDICTION_TIMEOUT_MS):
    /// a run that exceeds it is stopped, counts as an error for the circuit
    /// breaker, and its rows are judged by the rules alone.
    #[serde(default = "default_prediction_timeout_ms")]
    pub timeout_ms: u64,
}

const fn default_prediction_timeout_ms() -> u64 {
    5_000
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl PredictionConfig {
    /// The stage-2 gate in force.
    pub fn stage2_gate(&self) -> f64 {
        self.stage2_gate.unwrap_or(self.failure_threshold / 2.0)
    }

    /// The general component (class `"0"`).
    pub fn general_component(&self) -> &str {
        self.component_mapping
            .get("0")
            .map(String::as_str)
            .unwrap_or("General Equipment")
    }

    /// Components in class order (class 0 first).
    pub fn components(&self) -> Vec<&str> {
        let mut v: Vec<(u32, &str)> = self
            .component_mapping
            .iter()
            .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v.as_str())))
            .collect();
        v.sort();
        v.into_iter().map(|(_, c)| c).collect()
    }
}

/// A signal that labels failures of a component: a fault flag's rising edge
/// (`kind = "flag"`, the default), or a continuous signal beyond one of its
/// declared `limits` for at least `hold_s` (`kind = "limit"`; the failure
/// starts at the crossing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureSignalConfig {
    /// Boolean signal (flag) or continuous signal with limits (limit).
    pub signal: String,
    /// Component that failed (not the general component).
    pub component: String,
    /// How the signal marks a failure.
    #[serde(default)]
    pub kind: FailureSignalKind,
    /// Limit: how long the signal must stay beyond the limit to be a failure.
    #[serde(default = "default_limit_hold_s")]
    pub hold_s: u64,
}

/// How a failure signal marks a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureSignalKind {
    /// A fault flag's rising edge.
    #[default]
    Flag,
    /// A continuous signal beyond one of its limits, held for `hold_s`.
    Limit,
}

const fn default_limit_hold_s() -> u64 {
    60
}

fn default_schedule() -> Cron {
    "0 2 * * 0".parse().expect("valid default cron")
}
fn default_timezone() -> String {
    "UTC".to_string()
}
const fn default_data_days() -> u32 {
    365
}
const fn default_validation_split() -> f64 {
    0.2
}
const fn default_ensemble() -> u32 {
    1
}
/// Most failure models `training.ensemble` may average (`ml/prognos_ml/common.py`
/// refuses more too).
pub const MAX_ENSEMBLE: u32 = 8;

/// Retraining schedule and hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Whether the scheduler retrains this org.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Cron schedule (five fields, or six with seconds first) of retraining.
    #[serde(default = "default_schedule")]
    pub schedule: Cron,
    /// Time zone of the schedule (IANA name, e.g. `Europe/Berlin`; default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Days of history a run trains on.
    #[serde(default = "default_data_days")]
    pub data_days: u32,
    /// Fraction of the (time-ordered) history held out for validation.
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// How many failure models to train and average (1 = a single model). Each
    /// member has its own seed and draw of negatives; their mean probability is
    /// exported as one ONNX graph, so scoring costs one tree ensemble per member.
    #[serde(default = "default_ensemble")]
    pub ensemble: u32,
    /// Machine-grouped, time-respecting validation folds trained besides the
    /// holdout (`ml/TRAINING.md`); 0 or 1: none.
    #[serde(default = "default_validation_folds")]
    pub validation_folds: u32,
    /// Fewer validation failures than this and the gate calls no version better
    /// than the active one (the figures would be noise).
    #[serde(default = "default_min_validation_events")]
    pub min_validation_events: u32,
    /// LightGBM hyperparameters of the failure model.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
}

const fn default_validation_folds() -> u32 {
    3
}
const fn default_min_validation_events() -> u32 {
    5
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            enabled: true,
            schedule: default_schedule(),
            timezone: default_timezone(),
            data_days: default_data_days(),
            validation_split: default_validation_split(),
            ensemble: default_ensemble(),
            validation_folds: default_validation_folds(),
            min_validation_events: default_min_validation_events(),
            hyperparameters: Hyperparameters::default(),
        }
    }
}

/// LightGBM hyperparameters (the seed's names in snake_case); a key left out
/// keeps its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hyperparameters {
    /// Maximum leaves per tree.
    pub num_leaves: u32,
    /// Shrinkage rate.
    pub learning_rate: f64,
    /// Fraction of features sampled per tree.
    pub feature_fraction: f64,
    /// Fraction of rows sampled per bagging round.
    pub bagging_fraction: f64,
    /// Bagging every this many iterations (0 = off).
    pub bagging_freq: u32,
    /// Minimum rows per leaf.
    pub min_data_in_leaf: u32,
    /// Maximum tree depth (-1 = unlimited).
    pub max_depth: i32,
    /// Number of boosting rounds (trees).
    pub num_iterations: u32,
    /// Training objective; only `binary` for the failure model.
    pub objective: String,
    /// Validation metric: `auc` or `binary_logloss`.
    pub metric: String,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Hyperparameters {
            num_leaves: 31,
            learning_rate: 0.1,
            feature_fraction: 0.8,
            bagging_fraction: 0.8,
            bagging_freq: 5,
            min_data_in_leaf: 20,
            max_depth: 6,
            num_iterations: 100,
            objective: "binary".to_string(),
            metric: "auc".to_string(),
        }
    }
}

/// A configuration that parsed but does not make sense, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending key, e.g. `orgs.acme.prediction.failure_threshold`.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

impl Config {
    /// How far before a checkpoint's output frontier a restart must re-read rows
    /// so every operator's state is rebuilt (ARCHITECTURE.md, "Recovery"): the
    /// dedup window and the resolution delay, plus, for the org that needs most,
    /// its feature history, its longest rule `for_s` and rate window, its
    /// prediction `for_s`, and three time constants of the explanation baseline
    /// (which then weighs the missing past at under 5%).
    pub fn replay_margin_ms(&self) -> u64 {
        let alerts = (self.alerts.dedup_window_s + self.alerts.resolve_after_s) * 1000;
        let baseline = (3.0 * crate::alerts::explain::BASELINE_TAU_MS) as u64;
        let per_org = self
            .orgs
            .values()
            .map(|o| {
                let rules = o
                    .rules
                    .iter()
                    .map(|r| {
                        let window = match &r.condition {
                            Condition::RateOfChange { window_s, .. }
                            | Condition::Forecast { window_s, .. } => *window_s,
                            _ => 0,
                        };
                        (r.for_s + window) * 1000
                    })
                    .max()
                    .unwrap_or(0);
                o.history_ms(self.runtime.lag_tolerance_ms)
                    + rules
                    + o.prediction.for_s * 1000
                    + baseline
            })
            .max()
            .unwrap_or(0);
        alerts + per_org
    }

    /// Parse a TOML document (no environment overrides) and validate it.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            key: e
                .span()
                .map(|s| describe_span(text, s))
                .unwrap_or_else(|| "<document>".to_string()),
            reason: e.message().to_string(),
        })?;
        Config::from_table(table)
    }

    /// Build from a parsed TOML table (after any overrides) and validate it.
    pub fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                ConfigError {
                    key: if path == "." {
                        "<document>".to_string()
                    } else {
                        path
                    },
                    reason: e.into_inner().message().to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check everything serde could not; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let h = &self.history;
        check(
            (1..=10_000_000).contains(&h.segment_max_rows),
            "history.segment_max_rows",
            format!("must be in 1..=10000000, got {}", h.segment_max_rows),
        )?;
        check(
            (1..=86_400).contains(&h.segment_max_age_s),
            "history.segment_max_age_s",
            format!("must be in 1..=86400, got {}", h.segment_max_age_s),
        )?;
        check(
            (2..=10_000).contains(&h.compact_min_segments),
            "history.compact_min_segments",
            format!("must be in 2..=10000, got {}", h.compact_min_segments),
        )?;
        let t = &self.training;
        check(
            (1..=16).contains(&t.max_concurrent),
            "training.max_concurrent",
            format!("must be in 1..=16, got {}", t.max_concurrent),
        )?;
        check(
            t.max_retries <= 20,
            "training.max_retries",
            format!("must be at most 20, got {}", t.max_retries),
        )?;
        check(
            (1..=86_400).contains(&t.retry_backoff_s),
            "training.retry_backoff_s",
            format!("must be in 1..=86400, got {}", t.retry_backoff_s),
        )?;
        check(
            t.retry_backoff_max_s >= t.retry_backoff_s && t.retry_backoff_max_s <= 7 * 86_400,
            "training.retry_backoff_max_s",
            format!(
                "must be from retry_backoff_s ({}) to 604800, got {}",
                t.retry_backoff_s, t.retry_backoff_max_s
            ),
        )?;
        let rt = &self.runtime;
        check(
            rt.idle_timeout_ms > 0,
            "runtime.idle_timeout_ms",
            "must be > 0",
        )?;
        check(
            rt.lag_tolerance_ms > 0,
            "runtime.lag_tolerance_ms",
            "must be > 0",
        )?;
        check(
            (1..=65_536).contains(&rt.max_batch_rows),
            "runtime.max_batch_rows",
            format!("must be in 1..=65536, got {}", rt.max_batch_rows),
        )?;
        check(
            (1..=100_000).contains(&rt.model_cache_models),
            "runtime.model_cache_models",
            format!("must be in 1..=100000, got {}", rt.model_cache_models),
        )?;
        check(
            (1..=1_048_576).contains(&rt.model_cache_mib),
            "runtime.model_cache_mib",
            format!("must be in 1..=1048576, got {}", rt.model_cache_mib),
        )?;
        let al = &self.alerts;
        check(
            al.dedup_window_s > 0,
            "alerts.dedup_window_s",
            "must be > 0",
        )?;
        check(
            al.max_per_window > 0,
            "alerts.max_per_window",
            "must be >= 1",
        )?;
        check(
            al.resolve_after_s > 0,
            "alerts.resolve_after_s",
            "must be > 0",
        )?;
        let sim = &self.simulator;
        check(
            sim.machines_per_org >= 1,
            "simulator.machines_per_org",
            "must be >= 1",
        )?;
        check(
            sim.interval_ms >= 1_000,
            "simulator.interval_ms",
            format!("must be >= 1000, got {}", sim.interval_ms),
        )?;
        check(
            sim.speed.is_finite() && sim.speed > 0.0,
            "simulator.speed",
            format!("must be a positive factor, got {}", sim.speed),
        )?;
        check(
            sim.failure_rate_per_machine_day.is_finite() && sim.failure_rate_per_machine_day >= 0.0,
            "simulator.failure_rate_per_machine_day",
            "must be a finite number >= 0",
        )?;
        check(
            sim.first_model_days.is_finite() && (0.0..=90.0).contains(&sim.first_model_days),
            "simulator.first_model_days",
            format!("must be between 0 and 90, got {}", sim.first_model_days),
        )?;
        check(
            self.alerts.dedup_window_s >= 1,
            "alerts.dedup_window_s",
            "must be >= 1",
        )?;
        check(
            !self.orgs.is_empty(),
            "orgs",
            "at least one organization is required",
        )?;
        for (id, org) in &self.orgs {
            check(
                valid_org_id(id),
                &format!("orgs.{id}"),
                "an org id is 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
            )?;
            org.validate(&format!("orgs.{id}"))?;
        }
        Ok(())
    }
}

fn describe_span(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let snippet: String = text[start..span.end.min(text.len())]
        .chars()
        .take(60)
        .collect();
    format!("line {line}: {}", snippet.trim())
}

fn check(ok: bool, key: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            key: key.to_string(),
            reason: reason.into(),
        })
    }
}

/// `names` joined by ", ", or "none".
fn or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn valid_org_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// Names a signal may not take: the history's own columns.
pub const RESERVED_SIGNAL_NAMES: [&str; 4] = ["machine", "ts", "partition", "offset"];

/// Refuses a name that is not canonical (`[a-z][a-z0-9_]*`, at most 63 bytes).
fn check_canonical(name: &str, key: &str) -> Result<(), ConfigError> {
    check(
        valid_signal_name(name),
        key,
        format!("`{name}` is not a canonical name (a-z, 0-9, '_', starting with a letter)"),
    )
}

fn valid_signal_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn strictly_ascending(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

fn unit_interval(x: f64, lo_open: bool) -> bool {
    x.is_finite() && x <= 1.0 && if lo_open { x > 0.0 } else { x >= 0.0 }
}

impl OrgConfig {
    /// The signal called `name`, if any.
    pub fn signal(&self, name: &str) -> Option<&SignalConfig> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// Every value a row's features are computed from: the declared signals, then
    /// the derived ones (always continuous).
    pub fn value_signals(&self) -> Vec<FeatureSignal<'_>> {
        self.signals
            .iter()
            .map(|s| FeatureSignal {
                name: &s.name,
                kind: s.kind,
            })
            .chain(self.features.derived.iter().map(|d| FeatureSignal {
                name: &d.name,
                kind: SignalKind::Continuous,
            }))
            .collect()
    }

    /// `names` resolved against the value signals (unknown names skipped: validation
    /// refuses them); every value signal when `None`.
    fn resolve<'a>(&'a self, names: &Option<Vec<String>>) -> Vec<FeatureSignal<'a>> {
        let all = self.value_signals();
        match names {
            None => all,
            Some(names) => names
                .iter()
                .filter_map(|n| all.iter().find(|s| s.name == n.as_str()).copied())
                .collect(),
        }
    }

    /// Signals whose current value is a feature, in feature order.
    pub fn current_signals(&self) -> Vec<FeatureSignal<'_>> {
        self.resolve(&self.features.current)
    }

    /// Signals (declared or derived) that get lag, delta and window features, in
    /// feature order.
    pub fn feature_signals(&self) -> Vec<FeatureSignal<'_>> {
        self.resolve(&self.features.signals)
    }

    /// Feature names in the order the dataflow emits them and models consume them:
    /// current values, then lags, deltas and windows, each per feature signal.
    pub fn feature_names(&self) -> Vec<String> {
        let f = &self.features;
        let mut names: Vec<String> = self
            .current_signals()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        let fs = self.feature_signals();
        for s in &fs {
            for l in &f.lags_s {
                names.push(format!("{}_lag_{l}s", s.name));
            }
        }
        for s in &fs {
            for l in &f.deltas_s {
                names.push(format!("{}_delta_{l}s", s.name));
            }
        }
        for s in &fs {
            for w in &f.windows_s {
                match s.kind {
                    SignalKind::Continuous => {
                        for st in &f.stats {
                            names.push(format!("{}_rolling_{w}s_{}", s.name, st.name()));
                        }
                    }
                    SignalKind::Boolean => names.push(format!("{}_rolling_{w}s_rate", s.name)),
                }
            }
        }
        names.extend(self.pooled_feature_names());
        names
    }

    /// The pools whose members all resolve to continuous feature signals (the
    /// others are skipped: validation refuses them), with, per member, its index
    /// in [`feature_signals`](Self::feature_signals) and, when every member has a
    /// current-value feature, its index in [`current_signals`](Self::current_signals).
    pub fn resolved_pools(&self) -> Vec<ResolvedPool<'_>> {
        let fs = self.feature_signals();
        let cur = self.current_signals();
        self.features
            .pooled
            .iter()
            .filter_map(|pool| {
                let members = pool
                    .of
                    .iter()
                    .map(|m| {
                        fs.iter()
                            .position(|s| s.name == m.as_str() && s.kind == SignalKind::Continuous)
                    })
                    .collect::<Option<Vec<usize>>>()?;
                let current = pool
                    .of
                    .iter()
                    .map(|m| cur.iter().position(|s| s.name == m.as_str()))
                    .collect::<Option<Vec<usize>>>();
                Some(ResolvedPool {
                    pool,
                    members,
                    current,
                })
            })
            .collect()
    }

    /// Names of the pooled features, in feature order (after every other
    /// feature): per pool and statistic, the current value when pooled, then the
    /// lags, deltas and window statistics.
    pub fn pooled_feature_names(&self) -> Vec<String> {
        let f = &self.features;
        let mut names = Vec::new();
        for rp in self.resolved_pools() {
            for st in &rp.pool.stats {
                let base = format!("{}_{}", rp.pool.name, st.name());
                if rp.current.is_some() {
                    names.push(base.clone());
                }
                names.extend(f.lags_s.iter().map(|l| format!("{base}_lag_{l}s")));
                names.extend(f.deltas_s.iter().map(|l| format!("{base}_delta_{l}s")));
                for w in &f.windows_s {
                    names.extend(
                        f.stats
                            .iter()
                            .map(|x| format!("{base}_rolling_{w}s_{}", x.name())),
                    );
                }
            }
        }
        names
    }

    /// How far back (ms) a derived signal's value depends on the declared signals:
    /// its deviation window plus its operands' (0 for declared signals).
    pub fn derived_history_ms(&self) -> Vec<u64> {
        let f = &self.features;
        let mut need: Vec<u64> = Vec::with_capacity(f.derived.len());
        for d in &f.derived {
            let operands = d
                .operands()
                .iter()
                .filter_map(|n| f.derived.iter().position(|e| &e.name == n))
                .filter_map(|j| need.get(j).copied())
                .max()
                .unwrap_or(0);
            let own = if d.kind.windowed() {
                d.window_s.unwrap_or(0).saturating_mul(1000)
            } else {
                0
            };
            need.push(own.saturating_add(operands));
        }
        need
    }

    /// How much history (ms) a machine's features depend on: the longest lag or
    /// delta plus the tolerance or the longest window, whichever is larger, plus
    /// the longest derived-signal history (a lag of a deviation looks back through
    /// the deviation's window too).
    pub fn history_ms(&self, lag_tolerance_ms: u64) -> u64 {
        let f = &self.features;
        let lag = f
            .lags_s
            .iter()
            .chain(&f.deltas_s)
            .max()
            .map(|l| l * 1000 + lag_tolerance_ms)
            .unwrap_or(0);
        let win = f.windows_s.iter().max().copied().unwrap_or(0) * 1000;
        let derived = self.derived_history_ms().into_iter().max().unwrap_or(0);
        lag.max(win).saturating_add(derived)
    }

    pub(crate) fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check(
            !self.name.trim().is_empty(),
            &format!("{p}.name"),
            "must not be empty",
        )?;
        check(
            !self.machine_column.is_empty(),
            &format!("{p}.machine_column"),
            "must not be empty",
        )?;
        check(
            !self.time_column.is_empty(),
            &format!("{p}.time_column"),
            "must not be empty",
        )?;
        check(
            self.machine_column != self.time_column,
            &format!("{p}.time_column"),
            "must differ from machine_column",
        )?;
        check(
            !self.signals.is_empty(),
            &format!("{p}.signals"),
            "at least one signal is required",
        )?;
        let mut names = BTreeSet::new();
        let mut columns = BTreeSet::new();
        for (i, s) in self.signals.iter().enumerate() {
            let k = format!("{p}.signals[{i}]");
            check_canonical(&s.name, &format!("{k}.name"))?;
            check(
                !RESERVED_SIGNAL_NAMES.contains(&s.name.as_str()),
                &format!("{k}.name"),
                format!(
                    "`{}` is reserved (the history's own columns: {})",
                    s.name,
                    RESERVED_SIGNAL_NAMES.join(", ")
                ),
            )?;
            check(
                names.insert(s.name.as_str()),
                &format!("{k}.name"),
                format!("signal `{}` is declared twice", s.name),
            )?;
            check(
                !s.column.is_empty(),
                &format!("{k}.column"),
                "must not be empty",
            )?;
            check(
                s.column != self.machine_column && s.column != self.time_column,
                &format!("{k}.column"),
                format!("`{}` is the machine or time column", s.column),
            )?;
            check(
                columns.insert(s.column.as_str()),
                &format!("{k}.column"),
                format!("column `{}` is mapped twice", s.column),
            )?;
            if s.kind == SignalKind::Continuous {
                check(
                    s.unit.as_deref().is_some_and(|u| !u.trim().is_empty()),
                    &format!("{k}.unit"),
                    format!("continuous signal `{}` needs a unit", s.name),
                )?;
            }
            if let Some(l) = &s.limits {
                let k = format!("{k}.limits");
                check(
                    s.kind == SignalKind::Continuous,
                    &k,
                    format!(
                        "`{}` is boolean: only a continuous signal has limits",
                        s.name
                    ),
                )?;
                check(
                    l.high.is_some() || l.low.is_some(),
                    &k,
                    "limits need `high`, `low` or both",
                )?;
                check(
                    l.high.is_none_or(f64::is_finite) && l.low.is_none_or(f64::is_finite),
                    &k,
                    "limits must be finite",
                )?;
                if let (Some(lo), Some(hi)) = (l.low, l.high) {
                    check(
                        lo < hi,
                        &k,
                        format!("`low` ({lo}) must be below `high` ({hi})"),
                    )?;
                }
            }
        }
        self.validate_features(p)?;
        self.prediction.validate(&format!("{p}.prediction"))?;
        let components: BTreeSet<&str> = self
            .prediction
            .component_mapping
            .values()
            .map(String::as_str)
            .collect();
        let mut rule_names = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let k = format!("{p}.rules[{i}]");
            check(
                !r.name.trim().is_empty(),
                &format!("{k}.name"),
                "must not be empty",
            )?;
            check(
                rule_names.insert(r.name.as_str()),
                &format!("{k}.name"),
                format!("rule `{}` is declared twice", r.name),
            )?;
            check(
                components.contains(r.component.as_str()),
                &format!("{k}.component"),
                format!("`{}` is not in prediction.component_mapping", r.component),
            )?;
            self.validate_condition(&r.condition, &format!("{k}.condition"))?;
        }
        for (i, s) in self.signals.iter().enumerate() {
            if let Some(l) = &s.limits {
                check(
                    components.contains(l.component.as_str()),
                    &format!("{p}.signals[{i}].limits.component"),
                    format!("`{}` is not in prediction.component_mapping", l.component),
                )?;
            }
        }
        let mut flags = BTreeSet::new();
        for (i, f) in self.failure_signals.iter().enumerate() {
            let k = format!("{p}.failure_signals[{i}]");
            match f.kind {
                FailureSignalKind::Flag => {
                    self.expect_kind(&f.signal, SignalKind::Boolean, &format!("{k}.signal"))?
                }
                FailureSignalKind::Limit => {
                    self.expect_kind(&f.signal, SignalKind::Continuous, &format!("{k}.signal"))?;
                    check(
                        self.signal(&f.signal).is_some_and(|s| s.limits.is_some()),
                        &format!("{k}.signal"),
                        format!("`{}` has no `limits` to label crossings of", f.signal),
                    )?;
                }
            }
            check(
                flags.insert(f.signal.as_str()),
                &format!("{k}.signal"),
                format!("`{}` is listed twice", f.signal),
            )?;
            check(
                components.contains(f.component.as_str())
                    && f.component != self.prediction.general_component(),
                &format!("{k}.component"),
                format!(
                    "`{}` must be a non-general component of prediction.component_mapping",
                    f.component
                ),
            )?;
        }
        self.training.validate(&format!("{p}.training"))
    }

    fn validate_features(&self, p: &str) -> Result<(), ConfigError> {
        let f = &self.features;
        let mut derived = BTreeSet::new();
        for (i, d) in f.derived.iter().enumerate() {
            let k = format!("{p}.features.derived[{i}]");
            check_canonical(&d.name, &format!("{k}.name"))?;
            check(
                self.signal(&d.name).is_none(),
                &format!("{k}.name"),
                format!("`{}` is already a declared signal", d.name),
            )?;
            if d.kind == DerivedKind::Expression {
                self.validate_expression(d, &k, &derived)?;
            } else {
                self.validate_of(d, &k, &derived)?;
            }
            if d.kind.needs_limits() {
                let has = self
                    .signal(&d.of[0])
                    .and_then(|s| s.limits.as_ref())
                    .is_some_and(|l| l.high.is_some() || l.low.is_some());
                check(
                    has,
                    &format!("{k}.of[0]"),
                    format!(
                        "`{}` must be a declared signal with `limits` (high and/or low)",
                        d.of[0]
                    ),
                )?;
            }
            match (d.kind.windowed(), d.window_s) {
                (true, Some(w)) => check(w > 0, &format!("{k}.window_s"), "must be > 0")?,
                (true, None) => check(
                    false,
                    &format!("{k}.window_s"),
                    "a deviation needs the window of its baseline",
                )?,
                (_, Some(_)) => check(
                    false,
                    &format!("{k}.window_s"),
                    "only a deviation has a window",
                )?,
                (_, None) => {}
            }
            check(
                derived.insert(d.name.as_str()),
                &format!("{k}.name"),
                format!("derived signal `{}` is declared twice", d.name),
            )?;
        }
        for (list, key) in [(&f.current, "current"), (&f.signals, "signals")] {
            let Some(list) = list else { continue };
            let mut seen = BTreeSet::new();
            for (i, n) in list.iter().enumerate() {
                check(
                    self.signal(n).is_some() || derived.contains(n.as_str()),
                    &format!("{p}.features.{key}[{i}]"),
                    format!("`{n}` is not a declared or derived signal"),
                )?;
                check(
                    seen.insert(n),
                    &format!("{p}.features.{key}[{i}]"),
                    format!("`{n}` is listed twice"),
                )?;
            }
        }
        check(
            f.lags_s.iter().all(|&l| l > 0) && strictly_ascending(&f.lags_s),
            &format!("{p}.features.lags_s"),
            "lags must be > 0 and strictly ascending",
        )?;
        check(
            f.deltas_s.iter().all(|&l| l > 0) && strictly_ascending(&f.deltas_s),
            &format!("{p}.features.deltas_s"),
            "delta spans must be > 0 and strictly ascending",
        )?;
        check(
            f.windows_s.iter().all(|&w| w > 0) && strictly_ascending(&f.windows_s),
            &format!("{p}.features.windows_s"),
            "windows must be > 0 and strictly ascending",
        )?;
        let stats: BTreeSet<_> = f.stats.iter().collect();
        check(
            stats.len() == f.stats.len(),
            &format!("{p}.features.stats"),
            "a statistic is listed twice",
        )?;
        let feature_signals = self.feature_signals();
        let mut pools = BTreeSet::new();
        for (i, pool) in f.pooled.iter().enumerate() {
            let k = format!("{p}.features.pooled[{i}]");
            check_canonical(&pool.name, &format!("{k}.name"))?;
            check(
                pools.insert(pool.name.as_str()),
                &format!("{k}.name"),
                format!("pool `{}` is declared twice", pool.name),
            )?;
            check(
                pool.of.len() >= 2,
                &format!("{k}.of"),
                format!("a pool needs at least 2 signals, got {}", pool.of.len()),
            )?;
            let mut seen = BTreeSet::new();
            for (j, m) in pool.of.iter().enumerate() {
                let key = format!("{k}.of[{j}]");
                check(seen.insert(m), &key, format!("`{m}` is listed twice"))?;
                match feature_signals.iter().find(|s| s.name == m.as_str()) {
                    None => check(
                        false,
                        &key,
                        format!("`{m}` has no lag, delta or window features (add it to `signals`)"),
                    )?,
                    Some(s) => check(
                        s.kind == SignalKind::Continuous,
                        &key,
                        format!("`{m}` must be a continuous signal, it is boolean"),
                    )?,
                }
            }
            let stats: BTreeSet<_> = pool.stats.iter().collect();
            check(
                !pool.stats.is_empty() && stats.len() == pool.stats.len(),
                &format!("{k}.stats"),
                "list each of max, min, max_abs at most once, and at least one",
            )?;
        }
        // A derived name can spell a generated one (`a_lag_60s`): refuse the clash
        // rather than emit two columns with one name.
        let mut names = BTreeSet::new();
        for n in self.feature_names() {
            if !names.insert(n.clone()) {
                return check(
                    false,
                    &format!("{p}.features"),
                    format!("feature `{n}` would be generated twice"),
                );
            }
        }
        Ok(())
    }

    /// `of` of a difference, ratio or deviation: its length and its operands.
    fn validate_of(
        &self,
        d: &DerivedSignalConfig,
        k: &str,
        derived: &BTreeSet<&str>,
    ) -> Result<(), ConfigError> {
        check(
            d.expr.is_none(),
            &format!("{k}.expr"),
            "only an expression has `expr`",
        )?;
        let n = d.kind.operands();
        check(
            d.of.len() == n,
            &format!("{k}.of"),
            format!(
                "a {:?} needs exactly {n} signal{}, got {}",
                d.kind,
                if n == 1 { "" } else { "s" },
                d.of.len()
            )
            .to_lowercase(),
        )?;
        for (j, o) in d.of.iter().enumerate() {
            if !derived.contains(o.as_str()) {
                let key = format!("{k}.of[{j}]");
                if self.signal(o).is_none() {
                    return check(
                        false,
                        &key,
                        format!("`{o}` is not a declared signal or a derived one listed before"),
                    );
                }
                self.expect_kind(o, SignalKind::Continuous, &key)?;
            }
        }
        check(
            n < 2 || d.of[0] != d.of[1],
            &format!("{k}.of"),
            format!("both operands are `{}`", d.of[0]),
        )?;
        Ok(())
    }

    /// `expr` of an expression: it parses, reads at least one signal, and every
    /// name is a continuous declared signal or a derived one listed before.
    fn validate_expression(
        &self,
        d: &DerivedSignalConfig,
        k: &str,
        derived: &BTreeSet<&str>,
    ) -> Result<(), ConfigError> {
        check(
            d.of.is_empty(),
            &format!("{k}.of"),
            "an expression names its operands in `expr`",
        )?;
        let key = format!("{k}.expr");
        let Some(src) = &d.expr else {
            return check(false, &key, "an expression needs `expr`");
        };
        let e = Expression::parse(src).map_err(|e| ConfigError {
            key: key.clone(),
            reason: format!("`{src}`: {e}"),
        })?;
        check(
            !e.operands().is_empty(),
            &key,
            format!("`{src}` reads no signal: a constant is no feature"),
        )?;
        for o in e.operands() {
            if derived.contains(o.as_str()) {
                continue;
            }
            if self.signal(o).is_none() {
                let declared: Vec<&str> = self
                    .signals
                    .iter()
                    .filter(|s| s.kind == SignalKind::Continuous)
                    .map(|s| s.name.as_str())
                    .collect();
                let before: Vec<&str> = derived.iter().copied().collect();
                return check(
                    false,
                    &key,
                    format!(
                        "unknown signal `{o}` (declared: {}; derived before: {})",
                        or_none(&declared),
                        or_none(&before)
                    ),
                );
            }
            self.expect_kind(o, SignalKind::Continuous, &key)?;
        }
        Ok(())
    }

    fn expect_kind(&self, name: &str, kind: SignalKind, key: &str) -> Result<(), ConfigError> {
        match self.signal(name) {
            None => check(false, key, format!("`{name}` is not a declared signal")),
            Some(s) => check(
                s.kind == kind,
                key,
                format!("`{name}` must be a {kind:?} signal, it is {:?}", s.kind).to_lowercase(),
            ),
        }
    }

    fn validate_condition(&self, c: &Condition, k: &str) -> Result<(), ConfigError> {
        match c {
            Condition::Threshold {
                signal,
                above,
                below,
            } => {
                self.expect_kind(signal, SignalKind::Continuous, &format!("{k}.signal"))?;
                check(
                    above.is_some() || below.is_some(),
                    k,
                    "a threshold needs `above`, `below` or both",
                )?;
                check(
                    above.is_none_or(f64::is_finite) && below.is_none_or(f64::is_finite),
                    k,
                    "thresholds must be finite",
                )
            }
            Condition::Deviation {
                signal,
                setpoint,
                band,
            } => {
                self.expect_kind(signal, SignalKind::Continuous, &format!("{k}.signal"))?;
                self.expect_kind(setpoint, SignalKind::Continuous, &format!("{k}.setpoint"))?;
                check(
                    band.is_finite() && *band > 0.0,
                    &format!("{k}.band"),
                    "must be a finite number > 0",
                )
            }
            Condition::FaultFlag { signal } => {
                self.expect_kind(signal, SignalKind::Boolean, &format!("{k}.signal"))
            }
            Condition::RateOfChange {
                signal,
                max_per_min,
                window_s,
            } => {
                self.expect_kind(signal, SignalKind::Continuous, &format!("{k}.signal"))?;
                check(
                    max_per_min.is_finite() && *max_per_min > 0.0,
                    &format!("{k}.max_per_min"),
                    "must be a finite number > 0",
                )?;
                check(*window_s > 0, &format!("{k}.window_s"), "must be > 0")
            }
            Condition::Forecast {
                signal,
                window_s,
                horizon_s,
                min_points,
            } => {
                self.expect_kind(signal, SignalKind::Continuous, &format!("{k}.signal"))?;
                check(
                    self.signal(signal).is_some_and(|s| s.limits.is_some()),
                    &format!("{k}.signal"),
                    format!("`{signal}` has no `limits` to forecast a crossing of"),
                )?;
                check(*window_s > 0, &format!("{k}.window_s"), "must be > 0")?;
                check(
                    horizon_s.is_none_or(|h| h > 0),
                    &format!("{k}.horizon_s"),
                    "must be > 0",
                )?;
                check(
                    *min_points >= 3,
                    &format!("{k}.min_points"),
                    "must be at least 3",
                )
            }
        }
    }
}

impl PredictionConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check(
            (1..=600_000).contains(&self.timeout_ms),
            &format!("{p}.timeout_ms"),
            format!("must be in 1..=600000, got {}", self.timeout_ms),
        )?;
        check(
            unit_interval(self.failure_threshold, true),
            &format!("{p}.failure_threshold"),
            format!("must be in (0, 1], got {}", self.failure_threshold),
        )?;
        check(
            self.for_s <= 3600,
            &format!("{p}.for_s"),
            format!("must be at most 3600 (an hour), got {}", self.for_s),
        )?;
        check(
            unit_interval(self.confidence_threshold, false),
            &format!("{p}.confidence_threshold"),
            format!("must be in [0, 1], got {}", self.confidence_threshold),
        )?;
        if let Some(i) = self.immediate_threshold {
            check(
                i.is_finite() && (self.failure_threshold..=1.0).contains(&i),
                &format!("{p}.immediate_threshold"),
                format!(
                    "must be in [failure_threshold = {}, 1], got {i}",
                    self.failure_threshold
                ),
            )?;
        }
        if let Some(g) = self.stage2_gate {
            check(
                g.is_finite() && (0.0..=self.failure_threshold).contains(&g),
                &format!("{p}.stage2_gate"),
                format!(
                    "must be in [0, failure_threshold = {}], got {g}",
                    self.failure_threshold
                ),
            )?;
        }
        check(
            (1..=240).contains(&self.horizon_minutes),
            &format!("{p}.horizon_minutes"),
            format!("must be in 1..=240, got {}", self.horizon_minutes),
        )?;
        check(
            self.time_to_failure_minutes > 0,
            &format!("{p}.time_to_failure_minutes"),
            "must be > 0",
        )?;
        if let Some(b) = self.max_false_alarms_per_day {
            check(
                b.is_finite() && b > 0.0,
                &format!("{p}.max_false_alarms_per_day"),
                format!("must be a number > 0 (false episodes per machine-day), got {b}"),
            )?;
        }
        let k = format!("{p}.component_mapping");
        let n = self.component_mapping.len();
        check(
            n >= 2,
            &k,
            "needs the general component \"0\" and at least one component \"1\"",
        )?;
        for i in 0..n {
            check(
                self.component_mapping.contains_key(&i.to_string()),
                &k,
                format!(
                    "classes must be \"0\"..\"{}\" without gaps; \"{i}\" is missing",
                    n - 1
                ),
            )?;
        }
        let values: BTreeSet<&String> = self.component_mapping.values().collect();
        check(values.len() == n, &k, "a component is named twice")?;
        check(
            values.iter().all(|v| !v.trim().is_empty()),
            &k,
            "component names must not be empty",
        )
    }
}

impl TrainingConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check(
            cron::parse_timezone(&self.timezone).is_some(),
            &format!("{p}.timezone"),
            format!(
                "not an IANA time zone name (such as `UTC` or `Europe/Berlin`): `{}`",
                self.timezone
            ),
        )?;
        check(
            self.data_days >= 1,
            &format!("{p}.data_days"),
            "must be >= 1",
        )?;
        check(
            self.validation_split.is_finite()
                && self.validation_split > 0.0
                && self.validation_split <= 0.5,
            &format!("{p}.validation_split"),
            format!("must be in (0, 0.5], got {}", self.validation_split),
        )?;
        check(
            (1..=MAX_ENSEMBLE).contains(&self.ensemble),
            &format!("{p}.ensemble"),
            format!("must be in 1..={MAX_ENSEMBLE}, got {}", self.ensemble),
        )?;
        check(
            self.validation_folds <= 10,
            &format!("{p}.validation_folds"),
            format!("must be at most 10, got {}", self.validation_folds),
        )?;
        let h = &self.hyperparameters;
        let k = |f: &str| format!("{p}.hyperparameters.{f}");
        check(h.num_leaves >= 2, &k("num_leaves"), "must be >= 2")?;
        check(
            unit_interval(h.learning_rate, true),
            &k("learning_rate"),
            "must be in (0, 1]",
        )?;
        check(
            unit_interval(h.feature_fraction, true),
            &k("feature_fraction"),
            "must be in (0, 1]",
        )?;
        check(
            unit_interval(h.bagging_fraction, true),
            &k("bagging_fraction"),
            "must be in (0, 1]",
        )?;
        check(
            h.min_data_in_leaf >= 1,
            &k("min_data_in_leaf"),
            "must be >= 1",
        )?;
        check(
            h.max_depth == -1 || h.max_depth >= 1,
            &k("max_depth"),
            "must be -1 (unlimited) or >= 1",
        )?;
        check(h.num_iterations >= 1, &k("num_iterations"), "must be >= 1")?;
        check(
            h.objective == "binary",
            &k("objective"),
            format!("the failure model is binary; got `{}`", h.objective),
        )?;
        check(
            h.metric == "auc" || h.metric == "binary_logloss",
            &k("metric"),
            format!("must be `auc` or `binary_logloss`, got `{}`", h.metric),
        )
    }
}

#[cfg(test)]
mod tests;
