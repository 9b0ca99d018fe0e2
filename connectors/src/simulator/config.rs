//! Simulator settings and their validation.

use serde::{Deserialize, Serialize};

use super::error::SimError;
use super::render::{MAX_RFC3339_MS, MIN_RFC3339_MS};

/// Default sampling interval: one row per machine every 30 s.
pub const DEFAULT_INTERVAL_MS: i64 = 30_000;
/// Smallest sampling interval accepted (historians rarely sample faster than 1 Hz).
pub const MIN_INTERVAL_MS: i64 = 1_000;
/// Largest sampling interval accepted (one row per machine per hour).
pub const MAX_INTERVAL_MS: i64 = 3_600_000;
/// Default failing episodes per machine per day.
pub const DEFAULT_FAILURE_RATE_PER_MACHINE_DAY: f64 = 1.0;
/// Highest failure rate accepted; above it episodes (≥ ~50 min each plus a
/// 30 min healthy gap) could not fit in a day anyway.
pub const MAX_FAILURE_RATE_PER_MACHINE_DAY: f64 = 24.0;
/// Default fraction of precursor episodes that recover without failing.
pub const DEFAULT_NEAR_MISS_RATIO: f64 = 0.4;
/// Highest near-miss ratio accepted (the near-miss rate is `r·q/(1−q)`).
pub const MAX_NEAR_MISS_RATIO: f64 = 0.95;
/// Most machines per org accepted.
pub const MAX_MACHINES_PER_ORG: u32 = 10_000;
/// Default start: 2024-01-01T00:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_704_067_200_000;
/// Default duration: one day.
pub const DEFAULT_DURATION_MS: i64 = 86_400_000;

/// What to simulate: how many furnaces, over which time range, how often sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Furnaces per organization (≥ 1).
    pub machines_per_org: u32,
    /// Event time of the first row, ms since the epoch.
    pub start_ms: i64,
    /// Length of the simulated range, ms (> 0); rows have `ts < start_ms + duration_ms`.
    pub duration_ms: i64,
    /// Sampling interval, ms (≥ 1000).
    pub interval_ms: i64,
    /// Master seed; every machine derives its own generator from it.
    pub seed: u64,
    /// Failing episodes per machine per day (Poisson), finite and ≥ 0.
    pub failure_rate_per_machine_day: f64,
    /// Fraction of precursor episodes that recover without failing, in [0, 0.95].
    pub near_miss_ratio: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            machines_per_org: 4,
            start_ms: DEFAULT_START_MS,
            duration_ms: DEFAULT_DURATION_MS,
            interval_ms: DEFAULT_INTERVAL_MS,
            seed: 42,
            failure_rate_per_machine_day: DEFAULT_FAILURE_RATE_PER_MACHINE_DAY,
            near_miss_ratio: DEFAULT_NEAR_MISS_RATIO,
        }
    }
}

impl SimConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |key: &'static str, reason: String| Err(SimError::InvalidConfig { key, reason });
        if self.machines_per_org < 1 || self.machines_per_org > MAX_MACHINES_PER_ORG {
            return bad(
                "machines_per_org",
                format!(
                    "{} is not in 1..={MAX_MACHINES_PER_ORG}",
                    self.machines_per_org
                ),
            );
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return bad(
                "interval_ms",
                format!(
                    "{} is not in {MIN_INTERVAL_MS}..={MAX_INTERVAL_MS}",
                    self.interval_ms
                ),
            );
        }
        if self.duration_ms <= 0 {
            return bad("duration_ms", format!("{} is not > 0", self.duration_ms));
        }
        if !(MIN_RFC3339_MS..=MAX_RFC3339_MS).contains(&self.start_ms) {
            return bad(
                "start_ms",
                format!("{} is outside years 0000..=9999", self.start_ms),
            );
        }
        match self.start_ms.checked_add(self.duration_ms) {
            Some(end) if end <= MAX_RFC3339_MS => {}
            _ => {
                return bad(
                    "duration_ms",
                    format!("{} runs past year 9999", self.duration_ms),
                );
            }
        }
        let r = self.failure_rate_per_machine_day;
        if !r.is_finite() || !(0.0..=MAX_FAILURE_RATE_PER_MACHINE_DAY).contains(&r) {
            return bad(
                "failure_rate_per_machine_day",
                format!("{r} is not a finite number in 0..={MAX_FAILURE_RATE_PER_MACHINE_DAY}"),
            );
        }
        let q = self.near_miss_ratio;
        if !q.is_finite() || !(0.0..=MAX_NEAR_MISS_RATIO).contains(&q) {
            return bad(
                "near_miss_ratio",
                format!("{q} is not a finite number in 0..={MAX_NEAR_MISS_RATIO}"),
            );
        }
        Ok(())
    }

    /// Number of sample instants per machine.
    pub fn steps(&self) -> u64 {
        // Ceil: a sample at every start + k·interval strictly before the end.
        ((self.duration_ms + self.interval_ms - 1) / self.interval_ms) as u64
    }

    /// End of the simulated range (exclusive), ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.duration_ms
    }
}

/// Pacing of event time against the wall clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as possible.
    Max,
    /// One simulated second per wall-clock second.
    Realtime,
    /// `f` simulated seconds per wall-clock second (finite, > 0).
    Factor(f64),
}

impl Speed {
    /// Simulated ms per wall ms, or `None` for unpaced output.
    pub fn factor(&self) -> Result<Option<f64>, SimError> {
        match *self {
            Speed::Max => Ok(None),
            Speed::Realtime => Ok(Some(1.0)),
            Speed::Factor(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
            Speed::Factor(f) => Err(SimError::InvalidConfig {
                key: "speed",
                reason: format!("factor {f} is not a finite number > 0"),
            }),
        }
    }
}

/// Row encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated, header row first.
    Csv,
}

impl OutputFormat {
    /// File extension without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv => "csv",
        }
    }
}
