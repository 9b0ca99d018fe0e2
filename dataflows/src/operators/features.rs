//! Features: canonical rows in, one [`FeatureRow`] per row out, in event time.
//!
//! Rows are exchanged by hash(org, machine), so one worker owns each machine's
//! state. A machine's rows wait until the input frontier passes their ts, then
//! are processed in `(ts, partition, offset)` order; of several rows with the same
//! (machine, ts) the lowest `(partition, offset)` wins and the rest are counted as
//! duplicates. Output is emitted at timely time = the row's ts, so downstream a
//! frontier beyond `t` means every feature row with ts `t` has been emitted.
//!
//! The feature computation itself is [`MachineFeatures`] (ARCHITECTURE.md,
//! "Features"); this operator only orders, de-duplicates and routes.

use crate::features::{FeatureSpec, MachineFeatures};
use crate::records::{CanonicalRow, FeatureRow};
use crate::stats::{BatchSample, Stage, Stats, Tally, outcome};
use crate::util::MachineIndex;
use std::collections::HashMap;
use std::sync::Arc;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

/// The routing hash of a machine: stable across processes and runs (xxh3).
pub fn machine_hash(org: &str, machine: &str) -> u64 {
    use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};
    xxh3_64_with_seed(machine.as_bytes(), xxh3_64(org.as_bytes()))
}

struct Machine {
    /// The org, for counting this machine's rows without a lookup per row.
    org: String,
    pending: Vec<CanonicalRow>,
    state: MachineFeatures,
    last_ts: Option<i64>,
    dirty: bool,
}

/// Compute features for `rows`; `specs` holds every enabled org's compiled spec.
///
/// Feature rows are emitted at a timely time at or below their ts (the frontier
/// when they were computed), one message per activation: a frontier beyond `t`
/// downstream still means every row with `ts < t` has arrived.
pub fn features<'s>(
    rows: Stream<'s, u64, Vec<CanonicalRow>>,
    name: &str,
    specs: Arc<HashMap<String, Arc<FeatureSpec>>>,
    stats: Arc<Stats>,
) -> Stream<'s, u64, Vec<FeatureRow>> {
    let pact = Exchange::new(|r: &CanonicalRow| machine_hash(&r.organization_id, &r.machine_id));
    rows.unary_frontier(pact, name, move |cap, _info| {
        let mut cap = Some(cap);
        let mut machines: Vec<Machine> = Vec::new();
        let mut index = MachineIndex::default();
        let mut dirty: Vec<usize> = Vec::new();
        let mut tally = Tally::default();
        let mut timed: Vec<BatchSample> = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|_cap, data| {
                for row in data.drain(..) {
                    let i = match index.get(&row.organization_id, &row.machine_id) {
                        Some(i) => i,
                        None => {
                            let Some(spec) = specs.get(&row.organization_id) else {
                                // The mapper only admits configured orgs; a spec is missing
                                // only if configs diverge, and then the row must not vanish
                                // silently.
                                tally.add(&row.organization_id, "no_feature_spec");
                                continue;
                            };
                            let (i, _) = index.get_or_insert(&row.organization_id, &row.machine_id);
                            debug_assert_eq!(i, machines.len());
                            machines.push(Machine {
                                org: row.organization_id.clone(),
                                pending: Vec::new(),
                                state: MachineFeatures::new(spec.clone()),
                                last_ts: None,
                                dirty: false,
                            });
                            i
                        }
                    };
                    let m = &mut machines[i];
                    m.pending.push(row);
                    if !m.dirty {
                        m.dirty = true;
                        dirty.push(i);
                    }
                }
            });
            let Some(c) = cap.as_mut() else { return };
            // Rows with ts below the frontier are complete; all of them when the input is done.
            let limit: Option<u64> = frontier.frontier().first().copied();
            let t0 = std::time::Instant::now();
            let mut emitted = 0usize;
            {
                let mut session = output.session(&*c);
                dirty.retain(|&i| {
                    let m = &mut machines[i];
                    m.pending.sort_unstable_by_key(|r| (r.ts, r.pos));
                    let k = match limit {
                        None => m.pending.len(),
                        Some(f) => m.pending.partition_point(|r| (r.ts as u64) < f),
                    };
                    let (mut featured, mut duplicates) = (0u64, 0u64);
                    for row in m.pending.drain(..k) {
                        if m.last_ts.is_some_and(|t| row.ts <= t) {
                            duplicates += 1;
                            continue;
                        }
                        m.last_ts = Some(row.ts);
                        let mut features = Vec::with_capacity(m.state.spec().len());
                        m.state.push(row.ts, &row.values, &mut features);
                        featured += 1;
                        // Declared values as they came, then the derived ones (the
                        // mapper leaves room for them, so this does not reallocate).
                        let mut values = row.values;
                        values
                            .extend_from_slice(m.state.values().get(values.len()..).unwrap_or(&[]));
                        session.give(FeatureRow {
                            organization_id: row.organization_id,
                            machine_id: row.machine_id,
                            ts: row.ts,
                            pos: row.pos,
                            features,
                            values,
                        });
                    }
                    emitted += featured as usize;
                    tally.add_n(&m.org, outcome::DUPLICATE, duplicates);
                    tally.add_n(&m.org, outcome::FEATURED, featured);
                    m.dirty = !m.pending.is_empty();
                    m.dirty
                });
            }
            tally.flush(&stats);
            if emitted > 0 {
                timed.push(BatchSample {
                    stage: Stage::Features,
                    org: None,
                    rows: emitted,
                    seconds: t0.elapsed().as_secs_f64(),
                });
                stats.add_batches(&mut timed);
            }
            match limit {
                Some(f) if f > *c.time() => c.downgrade(&f),
                Some(_) => {}
                None => cap = None,
            }
        }
    })
}
