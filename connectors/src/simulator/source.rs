//! [`OrgStream`]: the rows of one org's machines in `(ts, machine)` order, and
//! the org's ground-truth failure events.

use prognos_dataflows::records::FailureEvent;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::config::{OutputFormat, SimConfig};
use super::error::SimError;
use super::physics::Machine;
use super::render::{push_csv_field, push_fixed, push_json_str, rfc3339_ms};
use super::schema::{BoolFormat, Component, OrgSchema, Signal, TimeFormat};

/// Ground truth: one failure of one machine's component. [`Failure::to_event`]
/// gives the ARCHITECTURE.md failure event in the org's component names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Org id.
    pub organization_id: String,
    /// Machine id.
    pub machine_id: String,
    /// Failed component.
    pub component: Component,
    /// First row with the fault flag on, ms since the epoch.
    pub start_ms: i64,
    /// First row with the flag off again, or the end of the range if the fault
    /// outlasts it, ms since the epoch.
    pub end_ms: i64,
}

impl Failure {
    /// The failure event record, naming the component as `schema`'s org does.
    pub fn to_event(&self, schema: &OrgSchema) -> FailureEvent {
        FailureEvent {
            organization_id: self.organization_id.clone(),
            machine_id: self.machine_id.clone(),
            component: schema.component_name(self.component).to_string(),
            start: self.start_ms,
            end: self.end_ms,
        }
    }
}

/// Where the row just produced sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowInfo {
    /// Event time, ms since the epoch.
    pub ts_ms: i64,
    /// 0-based machine index within the org.
    pub machine: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Num(u32),
}

struct Column {
    index: usize,
    kind: Kind,
    json_key: Vec<u8>,
}

/// The derived seed of machine `machine` of org `org_index`: xxh3 over the
/// little-endian bytes of (seed, org index, machine index).
pub fn machine_seed(seed: u64, org_index: usize, machine: usize) -> u64 {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b[8..16].copy_from_slice(&(org_index as u64).to_le_bytes());
    b[16..].copy_from_slice(&(machine as u64).to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}

/// Generator of one org's rows, all machines, in `(ts, machine)` order.
pub struct OrgStream {
    schema: OrgSchema,
    machines: Vec<Machine>,
    machine_ids: Vec<String>,
    columns: Vec<Column>,
    json_heads: Vec<Vec<u8>>,
    csv_heads: Vec<Vec<u8>>,
    events: Vec<Failure>,
    start_ms: i64,
    interval_ms: i64,
    steps: u64,
    step: u64,
    next_machine: usize,
    last: usize,
    time_cache_ts: i64,
    time_json: Vec<u8>,
    time_csv: Vec<u8>,
    rows: u64,
}

impl OrgStream {
    /// Builds the org's machines and their schedules; validates `cfg` and `schema`.
    pub fn new(cfg: &SimConfig, org_index: usize, schema: &OrgSchema) -> Result<Self, SimError> {
        cfg.validate()?;
        schema.validate()?;
        Ok(Self::build(cfg, org_index, schema, None))
    }

    /// As [`OrgStream::new`], with every JSONL row starting with `"org":"<org_id>"`
    /// (the merged stdout stream). Inputs must already be validated.
    pub(crate) fn build(
        cfg: &SimConfig,
        org_index: usize,
        schema: &OrgSchema,
        tag_field: Option<&str>,
    ) -> Self {
        let zones = schema.zone_count();
        let end_ms = cfg.end_ms();
        let n = cfg.machines_per_org as usize;
        let machines: Vec<Machine> = (0..n)
            .map(|m| {
                let rng = Xoshiro256PlusPlus::seed_from_u64(machine_seed(cfg.seed, org_index, m));
                Machine::new(
                    rng,
                    cfg.start_ms,
                    end_ms,
                    cfg.interval_ms,
                    cfg.failure_rate_per_machine_day,
                    cfg.near_miss_ratio,
                    zones,
                )
            })
            .collect();
        let machine_ids: Vec<String> = (0..n).map(|m| schema.machine_id(m)).collect();
        // Fault flags are sampled, so an event's edges are the first grid
        // instants at or after the continuous trip / repair times.
        let grid_ceil = |t: i64| {
            let k = (t - cfg.start_ms + cfg.interval_ms - 1).div_euclid(cfg.interval_ms);
            cfg.start_ms + k * cfg.interval_ms
        };
        let mut events = Vec::new();
        for (m, machine) in machines.iter().enumerate() {
            for e in machine.episodes().iter().filter(|e| e.fails) {
                let start = grid_ceil(e.trip_ms());
                let end = grid_ceil(e.fault_end_ms()).min(end_ms);
                if start < end_ms && start < end {
                    events.push(Failure {
                        organization_id: schema.org_id.clone(),
                        machine_id: machine_ids[m].clone(),
                        component: e.component,
                        start_ms: start,
                        end_ms: end,
                    });
                }
            }
        }
        events.sort_by(|a, b| {
            (a.start_ms, &a.machine_id, a.end_ms).cmp(&(b.start_ms, &b.machine_id, b.end_ms))
        });
        let columns = schema
            .columns
            .iter()
            .map(|(s, name)| {
                let mut json_key = b",\"".to_vec();
                push_json_str(&mut json_key, name);
                json_key.extend_from_slice(b"\":");
                Column {
                    index: s.index(),
                    kind: if s.is_boolean() {
                        Kind::Bool
                    } else {
                        Kind::Num(s.decimals())
                    },
                    json_key,
                }
            })
            .collect();
        let json_heads = machine_ids
            .iter()
            .map(|id| {
                let mut h = b"{".to_vec();
                if let Some(f) = tag_field {
                    h.push(b'"');
                    push_json_str(&mut h, f);
                    h.extend_from_slice(b"\":\"");
                    push_json_str(&mut h, &schema.org_id);
                    h.extend_from_slice(b"\",");
                }
                h.push(b'"');
                push_json_str(&mut h, &schema.machine_column);
                h.extend_from_slice(b"\":\"");
                push_json_str(&mut h, id);
                h.extend_from_slice(b"\",\"");
                push_json_str(&mut h, &schema.time_column);
                h.extend_from_slice(b"\":");
                h
            })
            .collect();
        let csv_heads = machine_ids
            .iter()
            .map(|id| {
                let mut h = Vec::new();
                push_csv_field(&mut h, id);
                h.push(b',');
                h
            })
            .collect();
        OrgStream {
            schema: schema.clone(),
            machines,
            machine_ids,
            columns,
            json_heads,
            csv_heads,
            events,
            start_ms: cfg.start_ms,
            interval_ms: cfg.interval_ms,
            steps: cfg.steps(),
            step: 0,
            next_machine: 0,
            last: 0,
            time_cache_ts: i64::MIN,
            time_json: Vec::with_capacity(32),
            time_csv: Vec::with_capacity(32),
            rows: 0,
        }
    }

    /// The org's schema.
    pub fn schema(&self) -> &OrgSchema {
        &self.schema
    }

    /// Episode schedule of machine `m` (tests check precursors against it).
    #[cfg(test)]
    pub(crate) fn episodes(&self, m: usize) -> &[super::plan::Episode] {
        self.machines[m].episodes()
    }

    /// Machine ids, by machine index.
    pub fn machine_ids(&self) -> &[String] {
        &self.machine_ids
    }

    /// Ground-truth failures whose fault flag rises inside the simulated range,
    /// sorted by (start, machine).
    pub fn failure_events(&self) -> &[Failure] {
        &self.events
    }

    /// Event time of the next row, or `None` when the stream is exhausted.
    pub fn peek_ts(&self) -> Option<i64> {
        (self.step < self.steps).then(|| self.start_ms + self.step as i64 * self.interval_ms)
    }

    /// Rows produced so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Total rows this stream will produce.
    pub fn rows_total(&self) -> u64 {
        self.steps * self.machines.len() as u64
    }

    /// Appends the CSV header (machine column, time column, signal columns).
    pub fn csv_header(&self, out: &mut Vec<u8>) {
        push_csv_field(out, &self.schema.machine_column);
        out.push(b',');
        push_csv_field(out, &self.schema.time_column);
        for (_, name) in &self.schema.columns {
            out.push(b',');
            push_csv_field(out, name);
        }
        out.push(b'\n');
    }

    /// Canonical values of the current row, indexed like [`Signal::ALL`]:
    /// rounded as rendered, booleans 0/1, NaN for zones the furnace lacks
    /// (use [`OrgStream::last_value`] for NaN on every signal the org does not emit).
    pub fn last_values(&self) -> &[f64; 16] {
        self.machines[self.last].values()
    }

    /// Value of `signal` in the current row as the org emits it (NaN if not emitted).
    pub fn last_value(&self, signal: Signal) -> f64 {
        if self.columns.iter().any(|c| c.index == signal.index()) {
            self.last_values()[signal.index()]
        } else {
            f64::NAN
        }
    }

    /// Advances to the next row without rendering it (for in-process sources
    /// reading [`OrgStream::last_values`]).
    pub fn next_row(&mut self) -> Option<RowInfo> {
        let ts = self.peek_ts()?;
        let m = self.next_machine;
        self.machines[m].sample(ts);
        self.last = m;
        self.next_machine += 1;
        if self.next_machine == self.machines.len() {
            self.next_machine = 0;
            self.step += 1;
        }
        self.rows += 1;
        Some(RowInfo {
            ts_ms: ts,
            machine: m,
        })
    }

    fn refresh_time(&mut self, ts: i64) {
        if ts == self.time_cache_ts {
            return;
        }
        self.time_cache_ts = ts;
        self.time_json.clear();
        self.time_csv.clear();
        match self.schema.time_format {
            TimeFormat::Rfc3339 => {
                let b = rfc3339_ms(ts);
                self.time_json.push(b'"');
                self.time_json.extend_from_slice(&b);
                self.time_json.push(b'"');
                self.time_csv.extend_from_slice(&b);
            }
            TimeFormat::EpochMs => {
                let mut ib = itoa::Buffer::new();
                let s = ib.format(ts).as_bytes();
                self.time_json.extend_from_slice(s);
                self.time_csv.extend_from_slice(s);
            }
        }
    }

    /// Produces the next row and appends it, rendered with a trailing `\n`.
    pub fn next_into(&mut self, out: &mut Vec<u8>, fmt: OutputFormat) -> Option<RowInfo> {
        let info = self.next_row()?;
        self.refresh_time(info.ts_ms);
        let values = self.machines[info.machine].values();
        let (t_bytes, f_bytes): (&[u8], &[u8]) = match self.schema.bool_format {
            BoolFormat::TrueFalse => (b"true", b"false"),
            BoolFormat::ZeroOne => (b"1", b"0"),
        };
        match fmt {
            OutputFormat::Jsonl => {
                out.extend_from_slice(&self.json_heads[info.machine]);
                out.extend_from_slice(&self.time_json);
                for c in &self.columns {
                    out.extend_from_slice(&c.json_key);
                    push_value(out, values[c.index], c.kind, t_bytes, f_bytes);
                }
                out.extend_from_slice(b"}\n");
            }
            OutputFormat::Csv => {
                out.extend_from_slice(&self.csv_heads[info.machine]);
                out.extend_from_slice(&self.time_csv);
                for c in &self.columns {
                    out.push(b',');
                    push_value(out, values[c.index], c.kind, t_bytes, f_bytes);
                }
                out.push(b'\n');
            }
        }
        Some(info)
    }
}

#[inline]
fn push_value(out: &mut Vec<u8>, v: f64, kind: Kind, t: &[u8], f: &[u8]) {
    match kind {
        Kind::Bool => out.extend_from_slice(if v != 0.0 { t } else { f }),
        Kind::Num(d) => push_fixed(out, v, d),
    }
}
