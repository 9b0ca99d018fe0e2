//! One furnace: zone thermal model under PI control, load and door
//! disturbances, quench oil, carbon potential, and the component degradations
//! of the current episode. See CONTEXT.md for the model and its constants.

use rand::Rng;
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::plan::{Cycle, Episode, draw_cycle, draw_episodes, draw_recipe};
use super::render::round_to;
use super::schema::{Component, Signal};

const MIN_MS: i64 = 60_000;
/// Ambient temperature, °C.
const T_AMBIENT: f64 = 20.0;
/// Zone loss-to-ambient time constant, s (insulated chamber).
const TAU_LOSS_S: f64 = 1800.0;
/// Zone-to-neighbour conductance relative to the loss to ambient.
const COUPLING: f64 = 2.0;
/// Extra loss to ambient while the door is open, relative to the normal loss.
const DOOR_LOSS: f64 = 1.5;
/// Heater headroom: steady temperature rise at 100 % output with no load, °C.
const HEADROOM: f64 = 1467.0;
/// PI proportional gain, % per °C.
const KP: f64 = 2.0;
/// PI integral time, s.
const TI_S: f64 = 120.0;
/// Longest physics sub-step, ms; keeps PI and coupling behaviour the same for
/// any sampling interval.
const MAX_SUBSTEP_MS: i64 = 10_000;
/// Load temperature when it goes in, °C.
const LOAD_COLD: f64 = 25.0;
/// Quench oil cooling water temperature, °C.
const T_COOLING_WATER: f64 = 30.0;
/// Quench oil relaxation time constant, s.
const TAU_OIL_S: f64 = 480.0;
/// Quench heat goes into the oil over this long, ms.
const QUENCH_INJECT_MS: i64 = 60_000;
/// Carbon potential deviation: OU mean-reversion time, s, and stationary std, %C.
const CP_TAU_S: f64 = 600.0;
const CP_SIGMA: f64 = 0.008;
/// Carbon probe / furnace atmosphere response time constant, s.
const CP_RESPONSE_S: f64 = 90.0;
/// Carbon dip after the door closes decays with this time constant, ms.
const CP_DIP_TAU_MS: f64 = 6.0 * MIN_MS as f64;
/// Benign thermocouple spikes (EMI), per zone per second (~2 a day).
const BENIGN_SPIKE_PER_S: f64 = 2.0 / 86_400.0;

/// One simulated furnace.
pub struct Machine {
    plan: Xoshiro256PlusPlus,
    noise: Xoshiro256PlusPlus,
    zones: usize,
    episodes: Vec<Episode>,
    ep: usize,
    cycle: Cycle,
    quenched: bool,
    load_active: bool,
    load_temp: f64,
    headroom: [f64; 3],
    noise_sigma: f64,
    oil_excess: f64,
    temp: [f64; 3],
    integ: [f64; 3],
    out: [f64; 3],
    meas_noise: [f64; 3],
    oil: f64,
    cp: f64,
    cp_dev: f64,
    t_ms: i64,
    started: bool,
    interval_ms: i64,
    sub_n: i64,
    sub_h_ms: i64,
    base_decay: f64,
    oil_decay: f64,
    cp_ou_decay: f64,
    cp_ou_sigma: f64,
    cp_resp_decay: f64,
    values: [f64; 16],
}

fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    rng.sample(StandardNormal)
}

impl Machine {
    /// Builds a machine from its generator: the episode schedule is drawn first,
    /// then per-machine parameters and the first recipe, all from `plan`; sample
    /// noise comes from a jumped copy so it never shifts the plan.
    pub fn new(
        rng: Xoshiro256PlusPlus,
        start_ms: i64,
        end_ms: i64,
        interval_ms: i64,
        failure_rate_per_day: f64,
        near_miss_ratio: f64,
        zones: usize,
    ) -> Machine {
        let mut plan = rng.clone();
        let mut noise = rng;
        noise.long_jump();
        let zones = zones.clamp(1, 3);
        let episodes = draw_episodes(
            &mut plan,
            start_ms,
            end_ms,
            failure_rate_per_day,
            near_miss_ratio,
            zones,
        );
        let mut headroom = [HEADROOM; 3];
        for h in &mut headroom {
            *h *= plan.random_range(0.93..1.07);
        }
        let noise_sigma = plan.random_range(0.5..1.5);
        let oil_excess = plan.random_range(30.0..40.0);
        let (setpoint, carbon_setpoint) = draw_recipe(&mut plan);
        let first_load = start_ms + plan.random_range(0..=45 * MIN_MS);
        // A pseudo-cycle that has already quenched: the furnace idles at the
        // recipe until the first real load.
        let cycle = Cycle {
            load_ms: start_ms - 1,
            door_close_ms: start_ms - 1,
            quench_ms: start_ms - 1,
            next_load_ms: first_load,
            setpoint,
            carbon_setpoint,
            load_mass: 0.0,
            load_tau_ms: 1.0,
            carbon_dip: 0.0,
            quench_rise: 0.0,
        };
        let mut integ = [0.0; 3];
        for z in 0..3 {
            integ[z] = (setpoint - T_AMBIENT) * 100.0 / headroom[z];
        }
        let sub_n = (interval_ms + MAX_SUBSTEP_MS - 1) / MAX_SUBSTEP_MS;
        let sub_h_ms = interval_ms / sub_n;
        let h_s = sub_h_ms as f64 / 1000.0;
        let dt_s = interval_ms as f64 / 1000.0;
        let coupling = if zones > 1 { COUPLING } else { 0.0 };
        let cp_ou_decay = (-dt_s / CP_TAU_S).exp();
        Machine {
            plan,
            noise,
            zones,
            episodes,
            ep: 0,
            cycle,
            quenched: true,
            load_active: false,
            load_temp: setpoint,
            headroom,
            noise_sigma,
            oil_excess,
            temp: [setpoint; 3],
            integ,
            out: integ,
            meas_noise: [0.0; 3],
            oil: T_COOLING_WATER + oil_excess,
            cp: carbon_setpoint,
            cp_dev: 0.0,
            t_ms: start_ms,
            started: false,
            interval_ms,
            sub_n,
            sub_h_ms,
            base_decay: (-(1.0 + coupling) * h_s / TAU_LOSS_S).exp(),
            oil_decay: (-h_s / TAU_OIL_S).exp(),
            cp_ou_decay,
            cp_ou_sigma: CP_SIGMA * (1.0 - cp_ou_decay * cp_ou_decay).sqrt(),
            cp_resp_decay: (-dt_s / CP_RESPONSE_S).exp(),
            values: [f64::NAN; 16],
        }
    }

    /// The machine's episode schedule.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// Canonical values of the last sample (rounded; NaN for absent zones).
    pub fn values(&self) -> &[f64; 16] {
        &self.values
    }

    fn episode_at(&mut self, t: i64) -> Option<Episode> {
        while self.ep < self.episodes.len() && self.episodes[self.ep].end_ms() <= t {
            self.ep += 1;
        }
        self.episodes
            .get(self.ep)
            .filter(|e| e.onset_ms <= t)
            .copied()
    }

    fn update_cycle(&mut self, t: i64) {
        while t >= self.cycle.next_load_ms {
            let c = draw_cycle(&mut self.plan, self.cycle.next_load_ms, Some(&self.cycle));
            self.cycle = c;
            self.quenched = false;
            self.load_active = true;
            self.load_temp = LOAD_COLD;
        }
        if !self.quenched && t >= self.cycle.quench_ms {
            self.quenched = true;
            self.load_active = false;
        }
    }

    /// Advances the physics to `ts` and samples every signal at `ts`.
    pub fn sample(&mut self, ts: i64) {
        if self.started {
            let steps = ((ts - self.t_ms) / self.interval_ms).max(1);
            for _ in 0..steps {
                self.advance_interval();
            }
            self.sample_slow_processes(steps);
        } else {
            self.started = true;
        }
        self.t_ms = ts;
        self.update_cycle(ts);
        self.read(ts);
    }

    fn advance_interval(&mut self) {
        let mut t = self.t_ms;
        let h_s = self.sub_h_ms as f64 / 1000.0;
        for j in 0..self.sub_n {
            // The last sub-step absorbs the remainder of a non-divisible interval.
            let h_ms = if j + 1 == self.sub_n {
                self.t_ms + self.interval_ms - t
            } else {
                self.sub_h_ms
            };
            let h = if h_ms == self.sub_h_ms {
                h_s
            } else {
                h_ms as f64 / 1000.0
            };
            self.substep(t, h_ms, h);
            t += h_ms;
        }
        self.t_ms = t;
    }

    fn substep(&mut self, t: i64, h_ms: i64, h: f64) {
        self.update_cycle(t);
        let ep = self.episode_at(t);
        let p = ep.map_or(0.0, |e| e.progress(t));
        let tripped = ep.is_some_and(|e| e.tripped(t));
        let sp = self.cycle.setpoint;
        let door = t >= self.cycle.load_ms && t < self.cycle.door_close_ms;
        let n = self.zones;
        let coupling = if n > 1 { COUPLING } else { 0.0 };
        let load_k = if self.load_active {
            self.cycle.load_mass
        } else {
            0.0
        };
        let door_k = if door { DOOR_LOSS } else { 0.0 };
        let ki = KP / TI_S;
        let prev = self.temp;
        let mut sum = 0.0;
        for z in 0..n {
            let (mut eff, mut bias, mut heater_off, mut hold) = (1.0, 0.0, false, false);
            if let Some(e) = ep.filter(|e| e.zone == z) {
                match e.component {
                    Component::HeatingSystem => {
                        // Element resistance rises / elements burn out: accelerating loss.
                        eff = 1.0 - 0.5 * p * p;
                        heater_off = tripped;
                    }
                    Component::TemperatureSensing => {
                        bias = e.sign * 25.0 * p * p;
                        // A controller that detects a bad TC freezes its output.
                        hold = tripped;
                    }
                    _ => {}
                }
            }
            let u = if heater_off {
                0.0
            } else if hold {
                self.out[z]
            } else {
                // The controller's input filter passes about half the sensor noise.
                let e = sp - (prev[z] + bias + 0.5 * self.meas_noise[z]);
                let raw = KP * e + self.integ[z];
                // Conditional integration: no wind-up while saturated.
                if (raw < 100.0 || e < 0.0) && (raw > 0.0 || e > 0.0) {
                    self.integ[z] = (self.integ[z] + ki * e * h).clamp(0.0, 100.0);
                }
                (KP * e + self.integ[z]).clamp(0.0, 100.0)
            };
            self.out[z] = u;
            let neighbours = match (z, n) {
                (_, 1) => prev[0],
                (0, _) => prev[1],
                (z, n) if z + 1 == n => prev[z - 1],
                (z, _) => 0.5 * (prev[z - 1] + prev[z + 1]),
            };
            // Exact solution of dT/dt = k·(target − T) with inputs held over h.
            let k_sum = 1.0 + coupling + load_k + door_k;
            let target = (T_AMBIENT
                + self.headroom[z] * eff * u / 100.0
                + coupling * neighbours
                + load_k * self.load_temp
                + door_k * T_AMBIENT)
                / k_sum;
            let decay = if load_k == 0.0 && door_k == 0.0 {
                self.base_decay
            } else {
                (-k_sum * h / TAU_LOSS_S).exp()
            };
            self.temp[z] = target + (prev[z] - target) * decay;
            sum += self.temp[z];
        }
        if self.load_active {
            let avg = sum / n as f64;
            let d = (-(h_ms as f64) / self.cycle.load_tau_ms).exp();
            self.load_temp = avg + (self.load_temp - avg) * d;
            // Once the load is through-heated it no longer matters; skip its exp.
            if avg - self.load_temp < 0.5 {
                self.load_active = false;
            }
        }
        // Quench oil: relaxes towards cooling-water + excess / cooler effectiveness.
        let mut eff_cool = 1.0;
        if ep.is_some_and(|e| e.component == Component::QuenchSystem) {
            eff_cool = 1.0 - 0.75 * p;
        }
        let oil_target = T_COOLING_WATER + self.oil_excess / eff_cool;
        self.oil = oil_target + (self.oil - oil_target) * self.oil_decay;
        let (q0, q1) = (
            self.cycle.quench_ms,
            self.cycle.quench_ms + QUENCH_INJECT_MS,
        );
        let overlap = (t + h_ms).min(q1) - t.max(q0);
        if overlap > 0 {
            self.oil += self.cycle.quench_rise * overlap as f64 / QUENCH_INJECT_MS as f64;
        }
    }

    /// Processes that only need sample resolution: carbon potential.
    fn sample_slow_processes(&mut self, steps: i64) {
        for _ in 0..steps {
            self.cp_dev =
                self.cp_dev * self.cp_ou_decay + self.cp_ou_sigma * normal(&mut self.noise);
        }
        let t = self.t_ms;
        let ep = self.episode_at(t);
        let mut target = self.cycle.carbon_setpoint + self.cp_dev;
        if t >= self.cycle.door_close_ms {
            target -= self.cycle.carbon_dip
                * (-((t - self.cycle.door_close_ms) as f64) / CP_DIP_TAU_MS).exp();
        } else if t >= self.cycle.load_ms {
            target -= self.cycle.carbon_dip;
        }
        if let Some(e) = ep.filter(|e| e.component == Component::AtmosphereControl) {
            let p = e.progress(t);
            let phase = std::f64::consts::TAU * (t - e.onset_ms) as f64 / e.period_ms;
            target += e.sign * 0.15 * p * p + 0.07 * p.powf(1.5) * phase.sin();
        }
        let d = self.cp_resp_decay.powi(steps as i32);
        self.cp = target + (self.cp - target) * d;
    }

    fn read(&mut self, ts: i64) {
        let ep = self.episode_at(ts);
        let p = ep.map_or(0.0, |e| e.progress(ts));
        let tripped = ep.is_some_and(|e| e.tripped(ts));
        let dt_s = self.interval_ms as f64 / 1000.0;
        let v = &mut self.values;
        for z in 0..3 {
            if z >= self.zones {
                v[Signal::Zone1Temp.index() + z] = f64::NAN;
                v[Signal::Zone1Output.index() + z] = f64::NAN;
                continue;
            }
            let base = self.noise_sigma * normal(&mut self.noise);
            self.meas_noise[z] = base;
            let mut reading = self.temp[z] + base;
            let mut spike_rate = BENIGN_SPIKE_PER_S;
            if let Some(e) =
                ep.filter(|e| e.zone == z && e.component == Component::TemperatureSensing)
            {
                reading += e.sign * 25.0 * p * p + 6.0 * p.powf(1.5) * normal(&mut self.noise);
                spike_rate += 0.02 * p * p;
                if tripped {
                    // Open / shorted junction: wild but finite readings.
                    reading += 40.0 * normal(&mut self.noise);
                    if self.noise.random::<f64>() < 0.3 {
                        reading += self.noise.random_range(-300.0..300.0);
                    }
                }
            }
            if self.noise.random::<f64>() < 1.0 - (-spike_rate * dt_s).exp() {
                let mag = self.noise.random_range(15.0..60.0);
                reading += if self.noise.random::<bool>() {
                    mag
                } else {
                    -mag
                };
            }
            v[Signal::Zone1Temp.index() + z] = round_to(reading.clamp(0.0, 1400.0), 1);
            v[Signal::Zone1Output.index() + z] = round_to(self.out[z], 1);
        }
        v[Signal::TempSetpoint.index()] = self.cycle.setpoint;
        let mut cp_noise = 0.003;
        if ep.is_some_and(|e| e.component == Component::AtmosphereControl) {
            cp_noise += 0.01 * p;
        }
        let cp = self.cp + cp_noise * normal(&mut self.noise);
        v[Signal::CarbonPotential.index()] = round_to(cp.clamp(0.05, 2.0), 3);
        v[Signal::CarbonSetpoint.index()] = round_to(self.cycle.carbon_setpoint, 3);
        let oil = self.oil + 0.3 * normal(&mut self.noise);
        v[Signal::QuenchOilTemp.index()] = round_to(oil, 1);
        let c = &self.cycle;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        v[Signal::DoorOpen.index()] = flag(ts >= c.load_ms && ts < c.door_close_ms);
        v[Signal::CycleActive.index()] = flag(ts >= c.door_close_ms && ts < c.quench_ms);
        for comp in Component::ALL {
            let on = tripped && ep.is_some_and(|e| e.component == comp);
            v[comp.fault_signal().index()] = flag(on);
        }
    }
}
