//! Why the model thinks so: the top features of a predictive alert.
//!
//! Each machine keeps an event-time exponentially weighted baseline (time constant
//! [`BASELINE_TAU_MS`]) of the model's most important features. A feature's
//! contribution on a row is `importance × min(|z|, Z_CAP)`, with `z` the row's
//! deviation from the baseline *before* the row, in baseline standard deviations
//! (floored at 0.1 % of the magnitude, so a flat signal does not divide by zero).
//! The [`TOP_FEATURES`] largest are reported, as shares summing to 1. The baseline
//! follows the machine's rows in event-time order, so it is deterministic; it is
//! reset when the scoring model version changes.

use crate::records::TopFeature;
use std::sync::Arc;

/// Time constant of the baseline (ms): the last half hour or so.
pub const BASELINE_TAU_MS: f64 = 30.0 * 60_000.0;
/// Features reported per alert.
pub const TOP_FEATURES: usize = 5;
/// Largest |z| counted, so one wild sensor cannot hide everything else.
pub const Z_CAP: f64 = 10.0;

#[derive(Debug, Clone, Copy, Default)]
struct Ewm {
    mean: f64,
    var: f64,
    seen: bool,
}

/// One machine's baseline of the important features of its current model version.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    version: Option<Arc<str>>,
    importance: Arc<Vec<(usize, f64)>>,
    stats: Vec<Ewm>,
    last_ts: Option<i64>,
    /// `z` of each important feature on the last row, before it was absorbed.
    z: Vec<f64>,
}

impl Baseline {
    /// Absorb a scored row (`version`'s `importance`: input index and weight).
    pub fn update(
        &mut self,
        version: &Arc<str>,
        importance: &Arc<Vec<(usize, f64)>>,
        ts: i64,
        features: &[f64],
    ) {
        if self.version.as_deref() != Some(version.as_ref()) {
            *self = Baseline {
                version: Some(version.clone()),
                importance: importance.clone(),
                stats: vec![Ewm::default(); importance.len()],
                last_ts: None,
                z: vec![0.0; importance.len()],
            };
        }
        let dt = self.last_ts.map_or(0.0, |t| (ts - t).max(0) as f64);
        let alpha = 1.0 - (-dt / BASELINE_TAU_MS).exp();
        self.last_ts = Some(ts);
        for (k, &(i, _)) in self.importance.iter().enumerate() {
            let x = features.get(i).copied().unwrap_or(f64::NAN);
            let s = &mut self.stats[k];
            if !x.is_finite() {
                self.z[k] = 0.0;
                continue;
            }
            if !s.seen {
                *s = Ewm {
                    mean: x,
                    var: 0.0,
                    seen: true,
                };
                self.z[k] = 0.0;
                continue;
            }
            let sd = s.var.sqrt().max(1e-3 * s.mean.abs()).max(1e-9);
            self.z[k] = ((x - s.mean) / sd).abs().min(Z_CAP);
            let d = x - s.mean;
            s.mean += alpha * d;
            s.var = (1.0 - alpha) * (s.var + alpha * d * d);
        }
    }

    /// Top features of the last absorbed row (`names`: the org's feature names,
    /// `features`: that row's values).
    pub fn top(&self, names: &[String], features: &[f64]) -> Vec<TopFeature> {
        let mut c: Vec<(f64, usize)> = self
            .importance
            .iter()
            .zip(&self.z)
            .map(|(&(i, w), &z)| (w * z, i))
            .filter(|(c, _)| *c > 0.0)
            .collect();
        c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        c.truncate(TOP_FEATURES);
        let total: f64 = c.iter().map(|(x, _)| x).sum();
        c.into_iter()
            .map(|(x, i)| TopFeature {
                name: names.get(i).cloned().unwrap_or_default(),
                value: features.get(i).copied().unwrap_or(f64::NAN),
                contribution: ((x / total) * 1e4).round() / 1e4,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_that_leaves_its_baseline_explains_the_alert() {
        let v: Arc<str> = Arc::from("v1");
        let imp = Arc::new(vec![(0, 0.5), (1, 0.3), (2, 0.2)]);
        let names: Vec<String> = ["oil", "zone", "carbon"].map(String::from).to_vec();
        let mut b = Baseline::default();
        for k in 0..60 {
            let noise = if k % 2 == 0 { 0.5 } else { -0.5 };
            b.update(&v, &imp, k * 30_000, &[60.0 + noise, 900.0 + noise, 0.9]);
        }
        // Zone jumps far from its baseline, oil stays put: zone explains it,
        // despite oil's larger importance.
        let row = [60.2, 960.0, 0.9];
        b.update(&v, &imp, 60 * 30_000, &row);
        let top = b.top(&names, &row);
        assert_eq!(top[0].name, "zone");
        assert_eq!(top[0].value, 960.0);
        assert!(top[0].contribution > 0.9, "{top:?}");
        let total: f64 = top.iter().map(|t| t.contribution).sum();
        assert!((total - 1.0).abs() < 1e-3, "shares sum to 1: {total}");
    }

    #[test]
    fn a_new_version_restarts_the_baseline() {
        let imp = Arc::new(vec![(0, 1.0)]);
        let mut b = Baseline::default();
        b.update(&Arc::from("v1"), &imp, 0, &[1.0]);
        b.update(&Arc::from("v1"), &imp, 30_000, &[1.0]);
        b.update(&Arc::from("v2"), &imp, 60_000, &[50.0]);
        // First row of v2 is its own baseline: nothing deviates.
        assert!(b.top(&["x".into()], &[50.0]).is_empty());
    }
}
