//! What happens to a machine and when: failure/near-miss episodes (drawn up
//! front) and production cycles (drawn lazily, from the same plan stream).
//!
//! Everything here is a function of the machine's plan generator only, never of
//! the sampling interval or output format, so the same seed gives the same
//! timeline at 1 s and at 30 s sampling.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::schema::Component;

const MIN: i64 = 60_000;
const DAY_MS: f64 = 86_400_000.0;

/// Precursor lead time bounds (uniform), ms.
pub const LEAD_MS: (i64, i64) = (5 * MIN, 15 * MIN);
/// Repair time bounds (uniform), ms: how long the fault flag stays on.
pub const REPAIR_MS: (i64, i64) = (15 * MIN, 45 * MIN);
/// Fraction of the precursor a near miss reaches before recovering (uniform).
pub const NEAR_MISS_STOP: (f64, f64) = (0.3, 0.85);
/// Near-miss recovery duration bounds (uniform), ms.
pub const NEAR_MISS_RECOVER_MS: (i64, i64) = (2 * MIN, 6 * MIN);
/// Minimum healthy time between the end of one episode and the next onset.
pub const MIN_GAP_MS: i64 = 30 * MIN;
/// Relative frequency of each component, in [`Component::ALL`] order.
pub const COMPONENT_WEIGHTS: [f64; 4] = [0.35, 0.25, 0.20, 0.20];

/// One precursor episode: it either fails (fault flag trips) or is a near miss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    /// Degrading component.
    pub component: Component,
    /// 0-based zone for heating / sensing episodes (0 otherwise).
    pub zone: usize,
    /// Precursor start, ms.
    pub onset_ms: i64,
    /// Precursor length to the trip, ms.
    pub lead_ms: i64,
    /// True: trips at `onset + lead`; false: near miss.
    pub fails: bool,
    /// Fault duration (failing episodes), ms.
    pub repair_ms: i64,
    /// Fraction of the precursor reached (near misses).
    pub stop_frac: f64,
    /// Recovery duration after stopping (near misses), ms.
    pub recover_ms: i64,
    /// Direction of bias / offset drifts (±1).
    pub sign: f64,
    /// Oscillation period for atmosphere episodes, ms.
    pub period_ms: f64,
}

impl Episode {
    /// When the fault flag rises (failing episodes).
    pub fn trip_ms(&self) -> i64 {
        self.onset_ms + self.lead_ms
    }

    /// When the fault flag falls (failing episodes).
    pub fn fault_end_ms(&self) -> i64 {
        self.trip_ms() + self.repair_ms
    }

    fn stop_ms(&self) -> i64 {
        self.onset_ms + (self.stop_frac * self.lead_ms as f64) as i64
    }

    /// When the machine is healthy again.
    pub fn end_ms(&self) -> i64 {
        if self.fails {
            self.fault_end_ms()
        } else {
            self.stop_ms() + self.recover_ms
        }
    }

    /// Degradation progress at `t`: 0 healthy, rising linearly to 1 at the trip,
    /// 1 while tripped; a near miss rises to `stop_frac` and falls back to 0.
    pub fn progress(&self, t: i64) -> f64 {
        if t < self.onset_ms || t >= self.end_ms() {
            return 0.0;
        }
        let ramp = (t - self.onset_ms) as f64 / self.lead_ms as f64;
        if self.fails {
            ramp.min(1.0)
        } else {
            let stop = self.stop_ms();
            if t < stop {
                ramp
            } else {
                self.stop_frac * (1.0 - (t - stop) as f64 / self.recover_ms as f64)
            }
        }
    }

    /// Whether the fault flag is on at `t`.
    pub fn tripped(&self, t: i64) -> bool {
        self.fails && t >= self.trip_ms() && t < self.fault_end_ms()
    }
}

fn uniform_ms(rng: &mut Xoshiro256PlusPlus, (lo, hi): (i64, i64)) -> i64 {
    rng.random_range(lo..=hi)
}

/// Draws the episode schedule of one machine over `[start_ms, end_ms)`.
///
/// Arrivals form one Poisson process of rate `r / (1 − q)` per day (r failing,
/// q near-miss ratio); each arrival fails with probability `1 − q`. An arrival
/// that falls inside the previous episode (or its healthy gap) is pushed to
/// just after it, so episodes never overlap and the count stays Poisson.
pub fn draw_episodes(
    rng: &mut Xoshiro256PlusPlus,
    start_ms: i64,
    end_ms: i64,
    failure_rate_per_day: f64,
    near_miss_ratio: f64,
    zones: usize,
) -> Vec<Episode> {
    let mut out = Vec::new();
    let total_rate = failure_rate_per_day / (1.0 - near_miss_ratio);
    if total_rate <= 0.0 {
        return out;
    }
    let mean_gap_ms = DAY_MS / total_rate;
    let mut arrival = start_ms as f64;
    let mut free_from = start_ms;
    loop {
        let u: f64 = rng.random();
        arrival += -(1.0 - u).ln() * mean_gap_ms;
        if arrival >= end_ms as f64 {
            break;
        }
        let onset_ms = (arrival as i64).max(free_from);
        if onset_ms >= end_ms {
            break;
        }
        let fails = rng.random::<f64>() >= near_miss_ratio;
        let pick: f64 = rng.random();
        let mut acc = 0.0;
        let mut component = Component::AtmosphereControl;
        for (c, w) in Component::ALL.iter().zip(COMPONENT_WEIGHTS) {
            acc += w;
            if pick < acc {
                component = *c;
                break;
            }
        }
        let ep = Episode {
            component,
            zone: rng.random_range(0..zones.max(1)),
            onset_ms,
            lead_ms: uniform_ms(rng, LEAD_MS),
            fails,
            repair_ms: uniform_ms(rng, REPAIR_MS),
            stop_frac: rng.random_range(NEAR_MISS_STOP.0..NEAR_MISS_STOP.1),
            recover_ms: uniform_ms(rng, NEAR_MISS_RECOVER_MS),
            sign: if rng.random::<bool>() { 1.0 } else { -1.0 },
            period_ms: rng.random_range(2.0 * MIN as f64..5.0 * MIN as f64),
        };
        free_from = ep.end_ms() + MIN_GAP_MS;
        out.push(ep);
    }
    out
}

/// One production cycle: load (door open), soak (cycle active), quench, idle.
#[derive(Clone, Debug, PartialEq)]
pub struct Cycle {
    /// Door opens and the cold load goes in; the recipe changes here.
    pub load_ms: i64,
    /// Door closes; the cycle is active from here.
    pub door_close_ms: i64,
    /// Load leaves for the quench; the cycle ends.
    pub quench_ms: i64,
    /// Next cycle's load time.
    pub next_load_ms: i64,
    /// Temperature setpoint, °C.
    pub setpoint: f64,
    /// Carbon potential setpoint, %C.
    pub carbon_setpoint: f64,
    /// Thermal mass of the load relative to the zone's loss coefficient.
    pub load_mass: f64,
    /// Time constant of the load's surface heating, ms.
    pub load_tau_ms: f64,
    /// Carbon potential dip caused by the door opening, %C.
    pub carbon_dip: f64,
    /// Quench oil temperature rise from this load, °C.
    pub quench_rise: f64,
}

/// Draws a recipe (setpoint and carbon setpoint).
pub fn draw_recipe(rng: &mut Xoshiro256PlusPlus) -> (f64, f64) {
    // Recipes are round numbers: 5 °C and 0.05 %C steps.
    let sp = 840.0 + 5.0 * rng.random_range(0..=18) as f64;
    let cp = 0.80 + 0.05 * rng.random_range(0..=6) as f64;
    (sp, cp)
}

/// Draws the cycle that starts at `load_ms`.
pub fn draw_cycle(rng: &mut Xoshiro256PlusPlus, load_ms: i64, prev: Option<&Cycle>) -> Cycle {
    // A shop runs the same recipe for a few loads in a row (30 % repeat).
    let (setpoint, carbon_setpoint) = match prev {
        Some(p) if rng.random::<f64>() < 0.3 => (p.setpoint, p.carbon_setpoint),
        _ => draw_recipe(rng),
    };
    let door_close_ms = load_ms + rng.random_range(MIN..=3 * MIN);
    let quench_ms = load_ms + rng.random_range(90 * MIN..=240 * MIN);
    let next_load_ms = quench_ms + rng.random_range(5 * MIN..=20 * MIN);
    Cycle {
        load_ms,
        door_close_ms,
        quench_ms,
        next_load_ms,
        setpoint,
        carbon_setpoint,
        load_mass: rng.random_range(0.8..2.2),
        load_tau_ms: rng.random_range(6.0 * MIN as f64..11.0 * MIN as f64),
        carbon_dip: rng.random_range(0.04..0.14),
        quench_rise: rng.random_range(8.0..20.0),
    }
}
