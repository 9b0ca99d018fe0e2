//! Counters the dataflow keeps for the service's metrics: rows by org and outcome,
//! and per-batch samples (rows, seconds) of the features and inference operators
//! that the service moves into histograms. Operators add per batch (one lock per
//! activation), never per row.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Row outcomes.
pub mod outcome {
    /// Schema-mapped and on time.
    pub const MAPPED: &str = "mapped";
    /// Features computed.
    pub const FEATURED: &str = "featured";
    /// Same machine and ts as an earlier row; dropped (the lowest position wins).
    pub const DUPLICATE: &str = "duplicate";
}

/// Which operator timed a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// One activation of the features operator (every org it had ready rows of).
    Features,
    /// One `ort` run of one org's model.
    Inference,
}

/// One timed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSample {
    /// Which operator.
    pub stage: Stage,
    /// The org (inference batches are per org; feature activations are not).
    pub org: Option<String>,
    /// Rows in the batch.
    pub rows: usize,
    /// Wall-clock seconds the batch took.
    pub seconds: f64,
}

/// A circuit breaker's state, as the `prognos_model_breaker_state` gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BreakerState {
    /// Models score the org's rows.
    Closed = 0,
    /// The open period is over: the next batch is a probe.
    HalfOpen = 1,
    /// Rules only, after repeated inference errors.
    Open = 2,
}

/// Batch samples kept until the service takes them; beyond this, new samples are
/// dropped (and counted) so a process that never takes them stays bounded.
pub const MAX_PENDING_BATCHES: usize = 16_384;

/// Shared counters, keyed by (org, outcome). Dead letters count under their reason.
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<(String, String), u64>>,
    batches: Mutex<(Vec<BatchSample>, u64)>,
    breakers: Mutex<BTreeMap<(String, usize), BreakerState>>,
}

impl Stats {
    /// Add a batch of local counts.
    pub fn add_all(&self, local: &mut BTreeMap<(String, String), u64>) {
        if local.is_empty() {
            return;
        }
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in std::mem::take(local) {
            *c.entry(k).or_default() += v;
        }
    }

    /// The count of (org, outcome).
    pub fn get(&self, org: &str, outcome: &str) -> u64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&(org.to_string(), outcome.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Add timed batches (moved out of `local`).
    pub fn add_batches(&self, local: &mut Vec<BatchSample>) {
        if local.is_empty() {
            return;
        }
        let mut b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_PENDING_BATCHES.saturating_sub(b.0.len());
        let n = local.len();
        b.0.extend(local.drain(..).take(room));
        b.1 += n.saturating_sub(room) as u64;
    }

    /// The batches recorded since the last call, and how many were dropped
    /// (over [`MAX_PENDING_BATCHES`]) since the start.
    pub fn take_batches(&self) -> (Vec<BatchSample>, u64) {
        let mut b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut b.0), b.1)
    }

    /// Record the state of `worker`'s breakers, one per org it has seen.
    pub fn set_breakers<'a>(
        &self,
        worker: usize,
        states: impl IntoIterator<Item = (&'a str, BreakerState)>,
    ) {
        let mut b = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        for (org, state) in states {
            match b.get_mut(&(org.to_string(), worker)) {
                Some(s) => *s = state,
                None => {
                    b.insert((org.to_string(), worker), state);
                }
            }
        }
    }

    /// Each org's breaker state: the worst over the workers (open over half-open
    /// over closed), since any open worker sends part of the org's rows to rules.
    pub fn breaker_states(&self) -> BTreeMap<String, BreakerState> {
        let b = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, BreakerState> = BTreeMap::new();
        for ((org, _), s) in b.iter() {
            let e = out.entry(org.clone()).or_insert(*s);
            *e = (*e).max(*s);
        }
        out
    }

    /// Every count.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Batch-local counts. Consecutive rows mostly share an org, so a run of equal
/// keys costs one comparison per row and one allocation per run.
#[derive(Debug, Default)]
pub struct Tally {
    map: BTreeMap<(String, String), u64>,
    run: Option<(String, &'static str, u64)>,
}

impl Tally {
    /// Count one event.
    pub fn add(&mut self, org: &str, outcome: &'static str) {
        match &mut self.run {
            Some((o, out, n)) if o == org && *out == outcome => *n += 1,
            _ => {
                self.close_run();
                self.run = Some((org.to_string(), outcome, 1));
            }
        }
    }

    /// Count `n` events at once (a machine's run of rows); nothing when 0.
    pub fn add_n(&mut self, org: &str, outcome: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match &mut self.run {
            Some((o, out, k)) if o == org && *out == outcome => *k += n,
            _ => {
                self.close_run();
                self.run = Some((org.to_string(), outcome, n));
            }
        }
    }

    fn close_run(&mut self) {
        if let Some((o, out, n)) = self.run.take() {
            *self.map.entry((o, out.to_string())).or_default() += n;
        }
    }

    /// Move the counts into `stats`.
    pub fn flush(&mut self, stats: &Stats) {
        self.close_run();
        stats.add_all(&mut self.map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_runs_and_interleavings() {
        let stats = Stats::default();
        let mut t = Tally::default();
        for (org, out) in [("a", "x"), ("a", "x"), ("b", "x"), ("a", "x"), ("a", "y")] {
            t.add(org, out);
        }
        t.flush(&stats);
        t.add("a", "x");
        t.add_n("a", "x", 0);
        t.add_n("b", "x", 3);
        t.add_n("b", "x", 2);
        t.flush(&stats);
        assert_eq!(stats.get("a", "x"), 4);
        assert_eq!(stats.get("b", "x"), 6);
        assert_eq!(stats.get("a", "y"), 1);
        assert_eq!(stats.snapshot().len(), 3);
    }

    #[test]
    fn breaker_state_is_the_worst_over_workers() {
        let stats = Stats::default();
        stats.set_breakers(
            0,
            [("a", BreakerState::Closed), ("b", BreakerState::HalfOpen)],
        );
        stats.set_breakers(1, [("a", BreakerState::Open), ("b", BreakerState::Closed)]);
        let s = stats.breaker_states();
        assert_eq!(s["a"], BreakerState::Open);
        assert_eq!(s["b"], BreakerState::HalfOpen);
        stats.set_breakers(1, [("a", BreakerState::Closed)]);
        assert_eq!(stats.breaker_states()["a"], BreakerState::Closed);
    }

    #[test]
    fn batches_are_taken_once_and_bounded() {
        let stats = Stats::default();
        let sample = |rows| BatchSample {
            stage: Stage::Inference,
            org: Some("a".into()),
            rows,
            seconds: 0.001,
        };
        let mut local = vec![sample(1), sample(2)];
        stats.add_batches(&mut local);
        assert!(local.is_empty());
        let (got, dropped) = stats.take_batches();
        assert_eq!((got.len(), got[1].rows, dropped), (2, 2, 0));
        assert!(stats.take_batches().0.is_empty());
        let mut many: Vec<_> = (0..MAX_PENDING_BATCHES + 5).map(sample).collect();
        stats.add_batches(&mut many);
        let (got, dropped) = stats.take_batches();
        assert_eq!((got.len(), dropped), (MAX_PENDING_BATCHES, 5));
    }
}
