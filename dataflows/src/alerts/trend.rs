//! The trend behind `forecast` rules (ARCHITECTURE.md, "Detection beyond the
//! model"): the least-squares line through one machine's samples of a signal in
//! an event-time window, kept incrementally (running sums over the samples in
//! the window, recomputed exactly from them whenever as many samples have left
//! as remain, so rounding never accumulates), and extrapolated to the signal's
//! limits.

use std::collections::VecDeque;

/// A fitted line: the level at the newest sample and the slope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// The line's value at the newest sample's time.
    pub level: f64,
    /// Change per minute.
    pub slope_per_min: f64,
}

/// The samples of one machine's signal in the window, with running sums.
#[derive(Debug, Clone, Default)]
pub struct Trend {
    points: VecDeque<(i64, f64)>,
    /// Times and values are summed relative to this sample (minutes, units), so
    /// the sums stay small and exact enough.
    anchor: (i64, f64),
    sums: Sums,
    /// Samples evicted since the sums were last recomputed.
    evicted: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    t: f64,
    v: f64,
    tt: f64,
    tv: f64,
}

impl Trend {
    fn rel(&self, ts: i64, v: f64) -> (f64, f64) {
        ((ts - self.anchor.0) as f64 / 60_000.0, v - self.anchor.1)
    }

    fn add(&mut self, ts: i64, v: f64, sign: f64) {
        let (t, v) = self.rel(ts, v);
        self.sums.t += sign * t;
        self.sums.v += sign * v;
        self.sums.tt += sign * t * t;
        self.sums.tv += sign * t * v;
    }

    fn recompute(&mut self) {
        self.anchor = self.points.front().copied().unwrap_or_default();
        self.sums = Sums::default();
        self.evicted = 0;
        for i in 0..self.points.len() {
            let (ts, v) = self.points[i];
            self.add(ts, v, 1.0);
        }
    }

    /// Add the machine's next finite sample (`ts` ascending) and drop those
    /// older than `ts - window_ms`.
    pub fn push(&mut self, ts: i64, v: f64, window_ms: i64) {
        if self.points.is_empty() {
            self.anchor = (ts, v);
        }
        self.points.push_back((ts, v));
        self.add(ts, v, 1.0);
        let from = ts.saturating_sub(window_ms);
        while let Some(&(t0, v0)) = self.points.front() {
            if t0 >= from {
                break;
            }
            self.points.pop_front();
            self.add(t0, v0, -1.0);
            self.evicted += 1;
        }
        if self.evicted >= self.points.len() {
            self.recompute();
        }
    }

    /// The samples in the window.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Approximate heap bytes (the boxed state and its samples' capacity).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Trend>() + self.points.capacity() * std::mem::size_of::<(i64, f64)>()
    }

    /// Whether the window holds no sample.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The line through the window's samples, when there are at least
    /// `min_points` of them spanning at least `min_span_ms`.
    pub fn fit(&self, min_points: usize, min_span_ms: i64) -> Option<Fit> {
        let (first, last) = (self.points.front()?, self.points.back()?);
        if self.points.len() < min_points.max(2) || last.0 - first.0 < min_span_ms.max(1) {
            return None;
        }
        let n = self.points.len() as f64;
        let (mt, mv) = (self.sums.t / n, self.sums.v / n);
        let var_t = self.sums.tt / n - mt * mt;
        if var_t.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        let slope = (self.sums.tv / n - mt * mv) / var_t;
        let (t_last, _) = self.rel(last.0, last.1);
        Some(Fit {
            level: self.anchor.1 + mv + slope * (t_last - mt),
            slope_per_min: slope,
        })
    }
}

/// Minutes until the line reaches `high` (rising) or `low` (falling): 0 when its
/// level is already beyond one, None when it moves away from both (or is flat).
pub fn minutes_to_limit(fit: Fit, high: Option<f64>, low: Option<f64>) -> Option<f64> {
    let up = high.and_then(|h| {
        if fit.level >= h {
            Some(0.0)
        } else if fit.slope_per_min > 0.0 {
            Some((h - fit.level) / fit.slope_per_min)
        } else {
            None
        }
    });
    let down = low.and_then(|l| {
        if fit.level <= l {
            Some(0.0)
        } else if fit.slope_per_min < 0.0 {
            Some((l - fit.level) / fit.slope_per_min)
        } else {
            None
        }
    });
    match (up, down) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Two-pass least squares over the samples in `[ts - window, ts]` (`ts` the last
/// sample's): the reference the incremental fit and the features are checked
/// against.
#[cfg(test)]
pub(crate) fn brute(samples: &[(i64, f64)], window_ms: i64) -> (usize, Option<Fit>) {
    let last = samples.last().unwrap().0;
    // Times relative to the last sample (exact in i64), then minutes: absolute
    // epoch minutes would lose the millisecond steps to rounding.
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= last - window_ms)
        .map(|&(t, v)| ((t - last) as f64 / 60_000.0, v))
        .collect();
    let n = pts.len() as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let stt: f64 = pts.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let stv: f64 = pts.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    if stt <= 0.0 {
        return (pts.len(), None);
    }
    let slope = stv / stt;
    let t_last = 0.0;
    (
        pts.len(),
        Some(Fit {
            level: mv + slope * (t_last - mt),
            slope_per_min: slope,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-6 * (1.0 + scale)
    }

    proptest! {
        /// After every sample the incremental fit equals the brute-force one over
        /// the same window, however long the stream runs.
        #[test]
        fn the_running_fit_equals_least_squares_over_the_window(
            steps in prop::collection::vec((1i64..120_000, -50.0f64..50.0, 0.0f64..0.5), 1..400),
            window_ms in 60_000i64..3_600_000,
            start in 0i64..2_000_000_000_000,
            level in -1e4f64..1e4,
        ) {
            let mut trend = Trend::default();
            let mut all = Vec::new();
            let mut ts = start;
            for (i, (dt, noise, drift)) in steps.into_iter().enumerate() {
                ts += dt;
                let v = level + drift * i as f64 + noise;
                all.push((ts, v));
                trend.push(ts, v, window_ms);
                let (n, want) = brute(&all, window_ms);
                prop_assert_eq!(trend.len(), n);
                let got = trend.fit(2, 1);
                match (got, want) {
                    (Some(g), Some(w)) => {
                        prop_assert!(close(g.slope_per_min, w.slope_per_min, w.slope_per_min.abs()),
                            "slope {} vs {}", g.slope_per_min, w.slope_per_min);
                        prop_assert!(close(g.level, w.level, w.level.abs() + 50.0),
                            "level {} vs {}", g.level, w.level);
                    }
                    (None, None) => {}
                    (g, w) => prop_assert!(n < 2, "fit {:?} vs {:?} on {} samples", g, w, n),
                }
            }
        }
    }

    #[test]
    fn a_rising_line_reaches_its_high_limit_when_extrapolated() {
        let mut t = Trend::default();
        for i in 0..=10 {
            // 2 units per minute from 100.
            t.push(i * 60_000, 100.0 + 2.0 * i as f64, 600_000);
        }
        let f = t.fit(5, 60_000).unwrap();
        assert!((f.slope_per_min - 2.0).abs() < 1e-9);
        assert!((f.level - 120.0).abs() < 1e-9);
        assert_eq!(minutes_to_limit(f, Some(140.0), None), Some(10.0));
        assert_eq!(
            minutes_to_limit(f, Some(110.0), None),
            Some(0.0),
            "already beyond"
        );
        assert_eq!(minutes_to_limit(f, None, Some(50.0)), None, "moving away");
        assert_eq!(minutes_to_limit(f, Some(130.0), Some(50.0)), Some(5.0));
        assert!(t.fit(20, 60_000).is_none(), "too few samples");
        assert!(t.fit(5, 3_600_000).is_none(), "too short a span");
    }
}
