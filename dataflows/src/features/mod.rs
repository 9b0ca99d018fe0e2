//! Per-machine incremental feature computation: pure functions of one machine's
//! rows, no timely and no I/O, so live scoring and training tables share one code
//! path. The dataflow keeps one [`MachineFeatures`] per machine and feeds it that
//! machine's rows in strictly increasing event time.
//!
//! Semantics (pandas', times in ms; `t` is the row's ts):
//! - **derived signals**, computed first, in config order, from the row's declared
//!   signals or earlier derived ones: `difference` `a - b`, `ratio` `a / b` (NaN when
//!   `b` is 0), `deviation` `a - mean(a)` with the mean over the machine's non-NaN
//!   samples of `a` with `ts in (t - window, t]` (NaN when `a` is NaN), and
//!   `median_deviation` `a - median(a)` over the same samples (the midpoint of the
//!   two middle values of an even count, `rolling(...).median()`), and
//!   `expression` its `expr` over the row's values and constants (NaN when it
//!   is not finite, [`config::expr`](crate::config::expr)); NaN operands give
//!   NaN. They are continuous signals from then on;
//! - **current value** of every signal in `current` (all declared, then all derived
//!   signals by default): the row's value as is (missing stays NaN);
//! - **lag `L`** of a feature signal: the latest row of the machine (any row, even
//!   one where this signal is NaN) with `ts <= t - L`; if its `ts >= t - L -
//!   lag_tolerance_ms` the feature is that row's value (maybe NaN), else NaN —
//!   `merge_asof(direction="backward", tolerance=...)`;
//! - **delta `L`**: the current value minus the lag-`L` value (NaN when either is);
//! - **rolling window `W`** over the machine's samples with `ts in (t - W, t]`
//!   (current row included; `rolling(f"{W}s", closed="right")`, `min_periods=1`),
//!   NaN ignored: `mean` (NaN without samples), `std` with ddof 1 (NaN under two
//!   samples), `min`, `max`; boolean signals get `rate`, the mean of their 0/1
//!   samples (any non-zero value counts as 1);
//! - order and names as [`OrgConfig::feature_names`](crate::config::OrgConfig::feature_names):
//!   `{signal}`, `{signal}_lag_{L}s`, `{signal}_delta_{L}s`, `{signal}_rolling_{W}s_{stat}`.
//!
//! Cost and numerics: lags and deltas keep the rows of the last `max(L) + tolerance`
//! and one monotone cursor per distinct span; windows and deviations use two-stacks
//! sliding-window aggregation of Welford moments (`window.rs`), which never
//! subtracts a sample, so mean and std
//! match an exact two-pass recomputation to ~1e-15 relative however long the run
//! and however the window shrinks after gaps; a constant window has std exactly 0.
//! Everything is amortised O(1) per row and (signal, window) but a median
//! deviation, which keeps its window's values sorted (O(n) moves per row for `n`
//! samples in its window, exact), and state is bounded by
//! the longest window, deviation window or lag span plus tolerance, and `push` allocates only while buffers
//! grow to that bound. Values are expected finite or NaN; infinities give
//! unspecified (but non-panicking) window statistics.

mod machine;
mod spec;
mod window;

pub use machine::MachineFeatures;
pub use spec::FeatureSpec;

#[cfg(test)]
mod tests;
