//! The simulator as a dataflow [`Source`]: each org is one partition (its index),
//! rows are released as the paced event-time clock passes them, and failures are
//! reported as they begin. Stops (ending every partition) when `stop` is set.

use super::config::{OutputFormat, SimConfig};
use super::error::SimError;
use super::schema::OrgSchema;
use super::source::OrgStream;
use prognos_dataflows::records::{FailureEvent, RawPayload, RawRow, SourcePosition};
use prognos_dataflows::source::{Source, SourceEvent, SourceStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Called when a simulated failure begins (event time).
pub type FailureHook = Box<dyn FnMut(&FailureEvent)>;

struct Org {
    partition: u32,
    stream: OrgStream,
    events: Vec<FailureEvent>,
    announced: usize,
    ended: bool,
}

/// A paced, live simulator source over some orgs.
pub struct SimulatorSource {
    orgs: Vec<Org>,
    start_ms: i64,
    speed: f64,
    wall0: Option<Instant>,
    stop: Arc<AtomicBool>,
    event_time: Arc<AtomicI64>,
    on_failure: FailureHook,
    announced: bool,
    line: Vec<u8>,
}

impl SimulatorSource {
    /// Simulate the orgs of `schemas` whose index is in `partitions`, at `speed`
    /// times real time from the first poll.
    pub fn new(
        cfg: &SimConfig,
        schemas: &[OrgSchema],
        partitions: &[u32],
        speed: f64,
        stop: Arc<AtomicBool>,
        event_time: Arc<AtomicI64>,
        on_failure: FailureHook,
    ) -> Result<SimulatorSource, SimError> {
        let mut orgs = Vec::new();
        for &p in partitions {
            let schema = &schemas[p as usize];
            let stream = OrgStream::new(cfg, p as usize, schema)?;
            let mut events: Vec<FailureEvent> = stream
                .failure_events()
                .iter()
                .map(|f| f.to_event(schema))
                .collect();
            events.sort_by_key(|e| (e.start, e.machine_id.clone()));
            orgs.push(Org {
                partition: p,
                stream,
                events,
                announced: 0,
                ended: false,
            });
        }
        Ok(SimulatorSource {
            orgs,
            start_ms: cfg.start_ms,
            speed,
            wall0: None,
            stop,
            event_time,
            on_failure,
            announced: false,
            line: Vec::with_capacity(512),
        })
    }
}

impl Source for SimulatorSource {
    fn poll(&mut self, out: &mut Vec<SourceEvent>, max_rows: usize) -> SourceStatus {
        if !self.announced {
            self.announced = true;
            for o in &self.orgs {
                out.push(SourceEvent::Partition(o.partition));
            }
        }
        let wall0 = *self.wall0.get_or_insert_with(Instant::now);
        let stopping = self.stop.load(Ordering::Acquire);
        let due = self.start_ms + (wall0.elapsed().as_secs_f64() * 1000.0 * self.speed) as i64;
        self.event_time.fetch_max(due, Ordering::Relaxed);
        let mut rows = 0;
        for o in &mut self.orgs {
            if o.ended {
                continue;
            }
            while !stopping && rows < max_rows && o.stream.peek_ts().is_some_and(|t| t <= due) {
                self.line.clear();
                o.stream.next_into(&mut self.line, OutputFormat::Jsonl);
                let offset = o.stream.rows() - 1;
                let text = String::from_utf8_lossy(self.line.trim_ascii_end()).into_owned();
                out.push(SourceEvent::Row(RawRow {
                    pos: SourcePosition {
                        partition: o.partition,
                        offset,
                    },
                    organization_id: Some(o.stream.schema().org_id.clone()),
                    payload: RawPayload::Json { text },
                }));
                rows += 1;
            }
            while o.announced < o.events.len() && o.events[o.announced].start <= due {
                (self.on_failure)(&o.events[o.announced]);
                o.announced += 1;
            }
            if stopping || o.stream.peek_ts().is_none() {
                o.ended = true;
                out.push(SourceEvent::PartitionEnd(o.partition));
            }
        }
        if self.orgs.iter().all(|o| o.ended) {
            SourceStatus::Finished
        } else if rows >= max_rows {
            SourceStatus::Ready
        } else {
            SourceStatus::Wait(Duration::from_millis(50))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_rows_as_event_time_passes_and_stops_on_request() {
        let cfg = SimConfig {
            machines_per_org: 2,
            duration_ms: 3_600_000,
            ..SimConfig::default()
        };
        let schemas = OrgSchema::builtin(2);
        let stop = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(AtomicI64::new(0));
        // 36000x: the whole hour in 0.1 s of wall time.
        let mut src = SimulatorSource::new(
            &cfg,
            &schemas,
            &[1],
            36_000.0,
            stop.clone(),
            clock.clone(),
            Box::new(|_| {}),
        )
        .unwrap();
        let mut out = Vec::new();
        let mut rows = 0;
        let t0 = Instant::now();
        loop {
            out.clear();
            let status = src.poll(&mut out, 1000);
            for e in &out {
                if let SourceEvent::Row(r) = e {
                    assert_eq!(r.pos.partition, 1);
                    assert_eq!(r.pos.offset, rows);
                    assert_eq!(r.organization_id.as_deref(), Some("borealis-forge"));
                    rows += 1;
                }
            }
            if status == SourceStatus::Finished {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "paced source never finished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(rows, 120 * 2, "an hour at 30 s for two machines");
        assert!(clock.load(Ordering::Relaxed) >= cfg.start_ms + 3_600_000 - 30_000);

        let mut src = SimulatorSource::new(
            &cfg,
            &schemas,
            &[0],
            1.0,
            stop.clone(),
            clock,
            Box::new(|_| {}),
        )
        .unwrap();
        stop.store(true, Ordering::Release);
        out.clear();
        assert_eq!(src.poll(&mut out, 1000), SourceStatus::Finished);
        assert_eq!(
            out,
            vec![SourceEvent::Partition(0), SourceEvent::PartitionEnd(0)]
        );
    }
}
