//! Alerts: scored rows in, alert records out (notifications, closing
//! re-emissions with `suppressedCount`, RESOLVED records).
//!
//! Rows are exchanged by hash(org, machine) (a no-op after the features operator,
//! which routes the same way), wait until the input frontier passes their ts, and
//! are handed to their machine's [`MachineAlerts`] in `(ts, partition, offset)`
//! order. When the frontier advances, machines whose dedup windows or resolutions
//! fall due are advanced (a heap of deadlines, so idle machines cost nothing).
//!
//! Records of one key come out in the same order for any batching or worker count;
//! records of different machines interleave as the workers run, so a sink that
//! needs a reproducible file order sorts (replay does, by `(ts, id)`). Each record
//! travels at its due timely time ([`DedupSettings::due`]), so downstream
//! "frontier beyond t" means every record due before t has been emitted.
//!
//! [`DedupSettings::due`]: crate::alerts::dedup::DedupSettings::due

use crate::alerts::{AlertSettings, MachineAlerts};
use crate::operators::features::machine_hash;
use crate::operators::inference::ScoredRow;
use crate::records::Alert;
use crate::stats::{Stats, Tally};
use crate::util::MachineIndex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

struct Machine {
    pending: Vec<ScoredRow>,
    state: MachineAlerts,
    dirty: bool,
}

/// Alert records of `rows` under `settings`.
pub fn alerts<'s>(
    rows: Stream<'s, u64, Vec<ScoredRow>>,
    name: &str,
    settings: AlertSettings,
    stats: Arc<Stats>,
) -> Stream<'s, u64, Vec<Alert>> {
    let pact =
        Exchange::new(|r: &ScoredRow| machine_hash(&r.row.organization_id, &r.row.machine_id));
    rows.unary_frontier(pact, name, move |cap, _info| {
        let mut cap = Some(cap);
        let mut machines: Vec<Machine> = Vec::new();
        let mut index = MachineIndex::default();
        let mut dirty: Vec<usize> = Vec::new();
        let mut deadlines: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
        let mut out: Vec<Alert> = Vec::new();
        let mut tally = Tally::default();
        let mut settings = settings;
        let mut thresholds_seen = 0;
        move |(input, frontier), output| {
            input.for_each(|_cap, data| {
                for row in data.drain(..) {
                    let (org, machine) = (&row.row.organization_id, &row.row.machine_id);
                    let i = match index.get(org, machine) {
                        Some(i) => i,
                        None => {
                            let Some(config) = settings.orgs.get(org) else {
                                tally.add(org, "no_alert_config");
                                continue;
                            };
                            machines.push(Machine {
                                pending: Vec::new(),
                                state: MachineAlerts::new(org, machine, config.clone()),
                                dirty: false,
                            });
                            let (i, _) = index.get_or_insert(org, machine);
                            debug_assert_eq!(i, machines.len() - 1);
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
            let limit: Option<u64> = frontier.frontier().first().copied();
            let now = chrono::Utc::now().timestamp_millis();
            // Every row below this frontier was scored after the inference operators
            // published a frontier at or above it, so a change made since applies
            // only to rows beyond it: reading the log now is exact.
            if let Some(log) = settings
                .live
                .as_ref()
                .and_then(|l| l.thresholds_if_changed(&mut thresholds_seen))
            {
                settings.thresholds = log;
            }
            dirty.sort_unstable();
            dirty.retain(|&i| {
                let m = &mut machines[i];
                m.pending.sort_unstable_by_key(|r| (r.row.ts, r.row.pos));
                let k = match limit {
                    None => m.pending.len(),
                    Some(f) => m.pending.partition_point(|r| (r.row.ts as u64) < f),
                };
                for row in m.pending.drain(..k) {
                    m.state.row(&settings, &row, now, &mut out);
                }
                if let Some(d) = m.state.deadline(&settings) {
                    deadlines.push(Reverse((d, i)));
                }
                m.dirty = !m.pending.is_empty();
                m.dirty
            });
            match limit {
                Some(f) => {
                    let f = i64::try_from(f).unwrap_or(i64::MAX);
                    while let Some(&Reverse((d, i))) = deadlines.peek() {
                        if d > f {
                            break;
                        }
                        deadlines.pop();
                        // Stale entries (the machine moved on) cost one check.
                        let m = &mut machines[i];
                        if m.state.deadline(&settings).is_some_and(|cur| cur <= f) {
                            m.state.advance(&settings, f, now, &mut out);
                            if let Some(next) = m.state.deadline(&settings) {
                                deadlines.push(Reverse((next, i)));
                            }
                        }
                    }
                }
                None => {
                    for m in &mut machines {
                        m.state.finish(&settings, now, &mut out);
                    }
                }
            }
            if !out.is_empty() {
                for a in &out {
                    tally.add(&a.organization_id, alert_outcome(a));
                }
                // Each record at its due time (not the frontier it happened to
                // be found at): the same timely time in every run and batching.
                let at = |a: &Alert| (settings.dedup.due(a).max(0) as u64).max(*c.time());
                while let Some(first) = out.first() {
                    let t = at(first);
                    let n = out.iter().take_while(|a| at(a) == t).count();
                    output.session(&c.delayed(&t)).give_iterator(out.drain(..n));
                }
            }
            tally.flush(&stats);
            match limit {
                Some(f) if f > *c.time() => c.downgrade(&f),
                Some(_) => {}
                None => cap = None,
            }
        }
    })
}

/// The stats outcome an alert record counts under.
pub fn alert_outcome(a: &Alert) -> &'static str {
    use crate::records::{AlertStatus, AlertType};
    match (a.status, a.alert_type, a.suppressed_count > 0) {
        (AlertStatus::Resolved, _, _) => "alert_resolved",
        (_, _, true) => "alert_suppressed_summary",
        (_, AlertType::Predictive, _) => "alert_predictive",
        (_, AlertType::Critical, _) => "alert_critical",
        (_, AlertType::Warning, _) => "alert_warning",
    }
}
