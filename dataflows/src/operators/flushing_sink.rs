//! Flushing sink: hands each batch to a writer as it arrives and returns an
//! (empty) stream whose frontier is the time below which every record has been
//! made durable by `flush`.
//!
//! The operator keeps one capability at the input frontier as it was at the last
//! successful flush. Records arrive at times at or above the input frontier, so
//! every record below the held time was written before that flush. A probe on
//! the returned stream sees the minimum over all workers: the dataflow's durable
//! output frontier, which a checkpoint may record (ARCHITECTURE.md, "Recovery").
//!
//! `flush` runs at most every `every` while data flows (writes batch up between
//! flushes), and at once when the input ends. When it fails (the destination is
//! away), the held time stays and the operator tries again after `every`.

use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;

/// See the module documentation. `write(time, batch)` may drain the batch.
pub fn flushing_sink<'s, D, W, F>(
    stream: Stream<'s, u64, Vec<D>>,
    name: &str,
    every: Duration,
    mut write: W,
    mut flush: F,
) -> Stream<'s, u64, Vec<()>>
where
    D: Clone + 'static,
    W: FnMut(u64, &mut Vec<D>) + 'static,
    F: FnMut() -> bool + 'static,
{
    let worker = stream.scope().worker();
    stream.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        name,
        move |cap, info| {
            let activator = worker.activator_for(info.address);
            let mut held = Some(cap);
            let mut dirty = false;
            let mut last = Instant::now();
            move |(input, frontier), _output| {
                input.for_each(|cap, data| {
                    write(cap.least().copied().unwrap_or(0), data);
                    dirty = true;
                });
                let Some(h) = held.as_mut() else { return };
                let target = frontier.frontier().first().copied();
                if target == Some(*h.time()) {
                    return;
                }
                if dirty {
                    let since = last.elapsed();
                    if target.is_some() && since < every {
                        activator.activate_after(every - since);
                        return;
                    }
                    if !flush() {
                        activator.activate_after(every);
                        return;
                    }
                    dirty = false;
                    last = Instant::now();
                }
                match target {
                    None => held = None,
                    Some(t) => h.downgrade(&t),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::{Input, Probe};

    /// The probe never passes a time whose records are not durable: records go to
    /// `written`, `flush` moves them to `durable` only when `up` allows, and at
    /// every step every record below the probe frontier must be durable.
    #[test]
    fn frontier_waits_for_a_successful_flush() {
        timely::execute_directly(|worker| {
            let written = Rc::new(RefCell::new(Vec::<u64>::new()));
            let durable = Rc::new(RefCell::new(Vec::<u64>::new()));
            let up = Rc::new(RefCell::new(false));
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<u64>>>::new();
            let (w, d, u) = (written.clone(), durable.clone(), up.clone());
            let probe = worker.dataflow::<u64, _, _>(|scope| {
                let s = scope.input_from(&mut input);
                let w2 = w.clone();
                flushing_sink(
                    s,
                    "Test",
                    Duration::ZERO,
                    move |_t, batch: &mut Vec<u64>| w2.borrow_mut().append(batch),
                    move || {
                        if !*u.borrow() {
                            return false;
                        }
                        d.borrow_mut().append(&mut w.borrow_mut());
                        true
                    },
                )
                .probe()
                .0
            });
            let check = |probe: &timely::dataflow::ProbeHandle<u64>| {
                let durable = durable.borrow();
                // Records are sent at their own time: 0..10 and 12.
                for t in (0..10u64).chain([12]) {
                    if !probe.less_equal(&t) {
                        assert!(
                            durable.contains(&t),
                            "time {t} passed before {t} was durable"
                        );
                    }
                }
            };
            for t in 0..10u64 {
                input.send(t);
                input.advance_to(t + 1);
                for _ in 0..5 {
                    worker.step();
                    check(&probe);
                }
            }
            // The destination was down: nothing durable, and the frontier held.
            assert!(durable.borrow().is_empty());
            assert!(probe.less_equal(&0));
            *up.borrow_mut() = true;
            input.advance_to(12);
            while probe.less_than(&12) {
                worker.step();
                check(&probe);
            }
            assert_eq!(*durable.borrow(), (0..10).collect::<Vec<_>>());
            input.send(12);
            drop(input);
            while !probe.done() {
                worker.step();
            }
            assert!(durable.borrow().contains(&12));
        });
    }
}
