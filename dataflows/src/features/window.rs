//! Sliding-window building blocks: a time-ordered sample queue shared by the windows
//! of one signal, exact moments over a window (two-stacks aggregation), and exact
//! 0/1 counts over a window.
//!
//! Window membership is `ts in (t - W, t]`. Samples are addressed by absolute
//! sequence number (`u64`, never reused), so each window keeps a cursor into the
//! shared queue and the queue drops what no window still covers.

use std::collections::VecDeque;
use std::mem::size_of;

/// Give back memory a burst of rows left behind: keep at most 4x what is in use
/// (ignoring small buffers), so a machine's footprint follows its current sampling
/// rate rather than its peak. Reallocates only after a burst has passed.
#[inline]
pub(crate) fn shrink_after_burst<T>(v: &mut VecDeque<T>) {
    if v.capacity() > 64 && v.capacity() > 4 * v.len() {
        v.shrink_to(2 * v.len());
    }
}

/// Non-NaN samples of one signal, oldest first, addressed by absolute index.
#[derive(Debug, Clone)]
pub(crate) struct Samples<T> {
    /// Absolute index of `ts[0]`.
    base: u64,
    ts: VecDeque<i64>,
    v: VecDeque<T>,
}

impl<T: Copy> Samples<T> {
    pub(crate) fn new() -> Self {
        Samples {
            base: 0,
            ts: VecDeque::new(),
            v: VecDeque::new(),
        }
    }

    /// One past the absolute index of the newest sample.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        self.base + self.ts.len() as u64
    }

    #[inline]
    pub(crate) fn push(&mut self, ts: i64, v: T) {
        self.ts.push_back(ts);
        self.v.push_back(v);
    }

    #[inline]
    fn ts_at(&self, abs: u64) -> i64 {
        self.ts[(abs - self.base) as usize]
    }

    #[inline]
    fn v_at(&self, abs: u64) -> T {
        self.v[(abs - self.base) as usize]
    }

    /// Drop every sample below absolute index `abs` (no window covers them).
    #[inline]
    pub(crate) fn trim_below(&mut self, abs: u64) {
        while self.base < abs && !self.ts.is_empty() {
            self.ts.pop_front();
            self.v.pop_front();
            self.base += 1;
        }
        shrink_after_burst(&mut self.ts);
        shrink_after_burst(&mut self.v);
    }

    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.ts.capacity() * size_of::<i64>() + self.v.capacity() * size_of::<T>()
    }
}

/// Length of the reciprocal table: windows up to this many samples never divide.
const RECIP_LEN: usize = 1024;

/// `RECIP[i] = 1 / i`. The divider is the bottleneck of this module (a division
/// costs several multiplications and serialises Welford's mean chain), so counts
/// multiply by a tabled reciprocal instead: one extra rounding, ~1e-16 relative.
static RECIP: [f64; RECIP_LEN] = {
    let mut t = [f64::INFINITY; RECIP_LEN];
    let mut i = 1;
    while i < RECIP_LEN {
        t[i] = 1.0 / i as f64;
        i += 1;
    }
    t
};

/// `1 / n` for a count `n >= 1` (exact small integer in f64).
#[inline]
fn recip(n: f64) -> f64 {
    let i = n as usize;
    if i < RECIP_LEN { RECIP[i] } else { 1.0 / n }
}

/// Count, mean and M2 (sum of squared deviations) of anchored values `x - anchor`,
/// plus min and max of the raw values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    /// Number of samples (exact in f64; keeps int→float conversions off the hot path).
    pub(crate) n: f64,
    /// Mean of the anchored values.
    pub(crate) mean: f64,
    /// Sum of squared deviations from the mean.
    pub(crate) m2: f64,
    /// Minimum raw value (+inf when empty).
    pub(crate) min: f64,
    /// Maximum raw value (-inf when empty).
    pub(crate) max: f64,
}

impl Moments {
    pub(crate) const EMPTY: Moments = Moments {
        n: 0.0,
        mean: 0.0,
        m2: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// Welford update with anchored value `y` of raw value `x`. A run of equal
    /// values keeps `m2` at exactly 0 (the first update sets `mean = y` exactly).
    #[inline]
    fn add(&mut self, y: f64, x: f64) {
        self.n += 1.0;
        let d = y - self.mean;
        self.mean += d * recip(self.n);
        self.m2 += d * (y - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// `[mean, variance, min, max]` of the raw values (mean = `anchor` + anchored
    /// mean; variance with ddof 1), NaN where undefined. The caller takes the square
    /// roots of all windows in one pass: a square root has a long latency, and a
    /// tight loop of independent ones pipelines where interleaved ones stall.
    #[inline]
    pub(crate) fn stats(&self, anchor: f64) -> [f64; 4] {
        let some = self.n >= 1.0;
        let two = self.n >= 2.0;
        // Computed unconditionally (the divisor clamped) and selected below.
        let var = self.m2.max(0.0) * recip((self.n - 1.0).max(1.0));
        [
            if some { anchor + self.mean } else { f64::NAN },
            if two { var } else { f64::NAN },
            if some { self.min } else { f64::NAN },
            if some { self.max } else { f64::NAN },
        ]
    }

    /// Chan et al. merge of two disjoint sets (same anchor). Only additions of
    /// non-negative terms, so no cancellation and no drift.
    #[inline]
    fn merge(a: &Moments, b: &Moments) -> Moments {
        if b.n == 0.0 {
            return *a;
        }
        if a.n == 0.0 {
            return *b;
        }
        let n = a.n + b.n;
        let r = recip(n);
        let d = b.mean - a.mean;
        Moments {
            n,
            mean: a.mean + d * (b.n * r),
            m2: a.m2 + b.m2 + d * d * (a.n * b.n * r),
            min: a.min.min(b.min),
            max: a.max.max(b.max),
        }
    }
}

/// Exact moments of one signal over one time window, by two-stacks sliding-window
/// aggregation.
///
/// The window `[lo, end)` of the shared [`Samples`] is split at `mid`: the *front*
/// `[lo, mid)` stores for each element the moments of it and everything newer up to
/// `mid` (suffix aggregates), the *back* `[mid, end)` one running Welford aggregate.
/// Evicting the oldest sample is `lo += 1`; when the front runs empty the back is
/// rebuilt into suffix aggregates ("flip"). Every element is flipped at most once,
/// so the cost is amortised O(1), and no sample is ever subtracted, so there is no
/// drift however long the run.
///
/// All aggregates are of `x - anchor`, the anchor being the newest sample at the
/// last flip: it lies inside the data's range, which keeps Welford's error at a few
/// ulps even when the mean is large relative to the spread (900 °C ± 0.01).
#[derive(Debug, Clone)]
pub(crate) struct RollingMoments {
    width_ms: i64,
    lo: u64,
    mid: u64,
    /// Absolute index of `front[0]`.
    front_start: u64,
    front: Vec<Moments>,
    back: Moments,
    anchor: f64,
}

impl RollingMoments {
    pub(crate) fn new(width_ms: i64) -> Self {
        RollingMoments {
            width_ms,
            lo: 0,
            mid: 0,
            front_start: 0,
            front: Vec::new(),
            back: Moments::EMPTY,
            anchor: 0.0,
        }
    }

    /// Oldest sample still in the window (absolute index).
    #[inline]
    pub(crate) fn lo(&self) -> u64 {
        self.lo
    }

    /// Account for the sample `x` just pushed onto the shared queue.
    #[inline]
    pub(crate) fn push(&mut self, x: f64) {
        self.back.add(x - self.anchor, x);
    }

    /// Evict samples with `ts <= t - W` and flip when the front runs empty.
    #[inline]
    pub(crate) fn advance(&mut self, s: &Samples<f64>, t: i64) {
        let cutoff = t.saturating_sub(self.width_ms);
        let end = s.end();
        while self.lo < end && s.ts_at(self.lo) <= cutoff {
            self.lo += 1;
        }
        // `lo` may also have passed `mid` (a gap evicted part of the back): the back
        // aggregate cannot shed those samples, so rebuild from what is left.
        if self.lo >= self.mid && self.mid < end {
            self.flip(s);
        }
    }

    #[cold]
    fn flip(&mut self, s: &Samples<f64>) {
        let end = s.end();
        self.front.clear();
        self.back = Moments::EMPTY;
        self.front_start = self.lo;
        self.mid = end;
        if self.lo >= end {
            return;
        }
        let a = (self.lo - s.base) as usize;
        let b = (end - s.base) as usize;
        self.anchor = s.v_at(end - 1);
        if self.front.capacity() > 64 && self.front.capacity() > 4 * (b - a) {
            self.front.shrink_to(2 * (b - a)); // a burst has passed
        }
        self.front.resize(b - a, Moments::EMPTY);
        let mut acc = Moments::EMPTY;
        for (slot, &x) in self.front.iter_mut().rev().zip(s.v.range(a..b).rev()) {
            acc.add(x - self.anchor, x);
            *slot = acc;
        }
    }

    /// Moments of the current window (of `x - anchor`; see [`Self::anchor`]).
    #[inline]
    pub(crate) fn moments(&self) -> Moments {
        if self.lo < self.mid {
            let f = &self.front[(self.lo - self.front_start) as usize];
            Moments::merge(f, &self.back)
        } else {
            self.back
        }
    }

    /// Mean of the window's samples, NaN when it has none.
    #[inline]
    pub(crate) fn mean(&self) -> f64 {
        let m = self.moments();
        if m.n >= 1.0 {
            self.anchor + m.mean
        } else {
            f64::NAN
        }
    }

    /// The value the moments are anchored at: the window mean is `anchor + mean`.
    #[inline]
    pub(crate) fn anchor(&self) -> f64 {
        self.anchor
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.front.capacity() * size_of::<Moments>()
    }
}

/// Exact count of samples and of ones of a boolean signal over one time window;
/// integers, so adding and removing is exact.
#[derive(Debug, Clone)]
pub(crate) struct RollingRate {
    width_ms: i64,
    lo: u64,
    n: u64,
    ones: u64,
}

impl RollingRate {
    pub(crate) fn new(width_ms: i64) -> Self {
        RollingRate {
            width_ms,
            lo: 0,
            n: 0,
            ones: 0,
        }
    }

    /// Oldest sample still in the window (absolute index).
    #[inline]
    pub(crate) fn lo(&self) -> u64 {
        self.lo
    }

    /// Account for the sample `on` just pushed onto the shared queue.
    #[inline]
    pub(crate) fn push(&mut self, on: bool) {
        self.n += 1;
        self.ones += u64::from(on);
    }

    /// Evict samples with `ts <= t - W`.
    #[inline]
    pub(crate) fn advance(&mut self, s: &Samples<bool>, t: i64) {
        let cutoff = t.saturating_sub(self.width_ms);
        let end = s.end();
        while self.lo < end && s.ts_at(self.lo) <= cutoff {
            self.n -= 1;
            self.ones -= u64::from(s.v_at(self.lo));
            self.lo += 1;
        }
    }

    /// Mean of the 0/1 samples in the window, NaN when there is none.
    #[inline]
    pub(crate) fn rate(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.ones as f64 / self.n as f64
        }
    }
}

/// Exact median of the non-NaN values within `(t - W, t]`: the window's samples
/// in arrival order plus the same values kept sorted (binary-search insert and
/// remove, so `O(n)` moves per row for `n` samples in the window; a last-hour
/// window at 30 s sampling holds 120). The median is the middle value, or the
/// midpoint of the two middle values of an even count; NaN when the window is empty.
#[derive(Debug, Clone)]
pub(crate) struct RollingMedian {
    width_ms: i64,
    samples: VecDeque<(i64, f64)>,
    sorted: Vec<f64>,
}

impl RollingMedian {
    pub(crate) fn new(width_ms: i64) -> Self {
        RollingMedian {
            width_ms,
            samples: VecDeque::new(),
            sorted: Vec::new(),
        }
    }

    /// Position of the first sorted value not below `v` (total order: `-0.0 < 0.0`,
    /// so removing a value removes that exact value).
    #[inline]
    fn rank(&self, v: f64) -> usize {
        self.sorted.partition_point(|x| x.total_cmp(&v).is_lt())
    }

    /// Add a sample (`v` non-NaN; timestamps non-decreasing).
    #[inline]
    pub(crate) fn push(&mut self, ts: i64, v: f64) {
        debug_assert!(!v.is_nan(), "NaN is not a sample");
        self.samples.push_back((ts, v));
        let i = self.rank(v);
        self.sorted.insert(i, v);
    }

    /// Slide the window to end at `t`: drop the samples with `ts <= t - W`.
    #[inline]
    pub(crate) fn advance(&mut self, t: i64) {
        let lo = t.saturating_sub(self.width_ms);
        while let Some(&(ts, v)) = self.samples.front() {
            if ts > lo {
                break;
            }
            self.samples.pop_front();
            let i = self.rank(v);
            self.sorted.remove(i);
        }
        shrink_after_burst(&mut self.samples);
        if self.sorted.capacity() > 64 && self.sorted.capacity() > 4 * self.sorted.len() {
            self.sorted.shrink_to(2 * self.sorted.len());
        }
    }

    pub(crate) fn median(&self) -> f64 {
        let n = self.sorted.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => self.sorted[n / 2],
            _ => self.sorted[n / 2 - 1].midpoint(self.sorted[n / 2]),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.samples.capacity() * size_of::<(i64, f64)>()
            + self.sorted.capacity() * size_of::<f64>()
    }
}
