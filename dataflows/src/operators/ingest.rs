//! Ingest: the dataflow's source operator. It polls a [`Source`], maps each raw
//! row to canonical signals ([`SchemaMapper`]), judges lateness against the row's
//! own partition ([`PartitionClocks`]), and emits [`Ingested`] records.
//!
//! Timely time is event time in ms. The operator holds one capability at the
//! frontier of its partitions; every admitted row has `ts >= frontier`, so
//! downstream a row with `ts < input frontier` is complete. Dead letters travel
//! in the same stream (at the current frontier) and are split off with
//! [`split_ingested`].
//!
//! The operator reschedules itself: at once while the source has more, after the
//! source's wait otherwise, and at least every quarter idle timeout so idle
//! partitions are released on time.

use crate::config::RuntimeConfig;
use crate::event_time::PartitionClocks;
use crate::operators::schema_map::SchemaMapper;
use crate::records::{CanonicalRow, DeadLetter};
use crate::source::{Source, SourceEvent, SourceStatus};
use crate::stats::{Stats, Tally, outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};

/// A mapped row or a dead letter.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// On time and mapped.
    Row(CanonicalRow),
    /// Refused, with the reason.
    Dead(Box<DeadLetter>),
}

/// Rows polled per activation: bounds the latency other operators see.
const POLL_ROWS: usize = 4096;

/// Build the ingest operator over `src`.
pub fn ingest<'s>(
    scope: Scope<'s, u64>,
    name: &str,
    mut src: Box<dyn Source>,
    mapper: SchemaMapper,
    runtime: &RuntimeConfig,
    stats: Arc<Stats>,
) -> Stream<'s, u64, Vec<Ingested>> {
    let mut clocks = PartitionClocks::new(runtime.allowed_lateness_ms, runtime.idle_timeout_ms, 0);
    let idle_tick = Duration::from_millis((runtime.idle_timeout_ms / 4).max(1));
    let worker = scope.worker();
    source(scope, name, move |cap, info| {
        let activator = worker.activator_for(info.address.clone());
        let sync = worker.sync_activator_for(info.address.to_vec());
        src.set_waker(Arc::new(move || {
            // Fails only when the dataflow is gone: nothing left to wake.
            let _ = sync.activate();
        }));
        let mut cap = Some(cap);
        let started = Instant::now();
        let mut events = Vec::with_capacity(POLL_ROWS + 16);
        let mut tally = Tally::default();
        move |output| {
            let Some(c) = cap.as_mut() else { return };
            let now_ms = started.elapsed().as_millis() as u64;
            events.clear();
            let status = src.poll(&mut events, POLL_ROWS);
            {
                let mut session = output.session(c);
                for ev in events.drain(..) {
                    match ev {
                        SourceEvent::Partition(p) => clocks.register(p, now_ms),
                        SourceEvent::PartitionEnd(p) => clocks.finish(p),
                        SourceEvent::Row(mut raw) => {
                            let p = raw.pos.partition;
                            let mapped = mapper.map_mut(&mut raw);
                            src.mapped(raw.pos, mapped.as_ref().ok().map(|r| r.ts));
                            let out = match mapped {
                                Ok(row) => match clocks.admit(p, row.ts, now_ms) {
                                    Ok(()) => {
                                        tally.add(&row.organization_id, outcome::MAPPED);
                                        Ingested::Row(row)
                                    }
                                    Err((reason, detail)) => {
                                        tally.add(&row.organization_id, reason.as_str());
                                        Ingested::Dead(Box::new(DeadLetter {
                                            reason,
                                            partition: p,
                                            offset: raw.pos.offset,
                                            organization_id: Some(row.organization_id),
                                            payload: raw.payload.text().to_string(),
                                            detail,
                                        }))
                                    }
                                },
                                Err(dead) => {
                                    // Bad rows are still traffic: the partition is not idle.
                                    clocks.touch(p, now_ms);
                                    tally.add(
                                        dead.organization_id.as_deref().unwrap_or(""),
                                        dead.reason.as_str(),
                                    );
                                    Ingested::Dead(dead)
                                }
                            };
                            session.give(out);
                        }
                    }
                }
            }
            tally.flush(&stats);
            let frontier = clocks.frontier(now_ms);
            match (status, frontier) {
                (SourceStatus::Finished, _) | (_, None) => {
                    // Let event time reach the input's end frontier first if
                    // the source asks (Kafka batch runs), then release.
                    let end = clocks.end_frontier().max(0) as u64;
                    if end > *c.time() {
                        c.downgrade(&end);
                    }
                    if src.hold_end(*c.time()) {
                        activator.activate_after(Duration::from_millis(5));
                    } else {
                        cap = None;
                    }
                    return;
                }
                (_, Some(f)) => {
                    let f = f.max(0) as u64;
                    if f > *c.time() {
                        c.downgrade(&f);
                    }
                }
            }
            match status {
                SourceStatus::Ready => activator.activate(),
                SourceStatus::Wait(d) => activator.activate_after(d.min(idle_tick)),
                SourceStatus::Finished => {}
            }
        }
    })
}

/// Split ingested records into rows and dead letters.
pub fn split_ingested<'s>(
    stream: Stream<'s, u64, Vec<Ingested>>,
) -> (
    Stream<'s, u64, Vec<CanonicalRow>>,
    Stream<'s, u64, Vec<DeadLetter>>,
) {
    stream.ok_err(|x| match x {
        Ingested::Row(r) => Ok(r),
        Ingested::Dead(d) => Err(*d),
    })
}
