//! Ordered sink: gathers a stream on one worker and hands completed records to a
//! callback in `(ts, key)` order. A record is complete once the input frontier
//! passes its event time (records travel at a timely time at or below their ts).
//! Whatever the worker count or arrival order, the callback sees the same
//! records in the same order, so files written from it are byte-identical.

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;

/// Deliver `stream`'s records on worker 0 ordered by `ts(d)` then `cmp`, in
/// batches of completed records, to `write`. `write` is called with an empty
/// slice and `done = true` once the stream is complete.
pub fn ordered_sink<'s, D, TF, CF, W>(
    stream: Stream<'s, u64, Vec<D>>,
    name: &str,
    ts: TF,
    cmp: CF,
    mut write: W,
) where
    D: timely::ExchangeData,
    TF: Fn(&D) -> u64 + 'static,
    CF: Fn(&D, &D) -> std::cmp::Ordering + 'static,
    W: FnMut(&[D], bool) + 'static,
{
    let mut pending: Vec<D> = Vec::new();
    let mut ready: Vec<D> = Vec::new();
    let mut finished = false;
    stream.sink(Exchange::new(|_: &D| 0), name, move |(input, frontier)| {
        input.for_each(|_cap, data| pending.append(data));
        let limit = frontier.frontier().first().copied();
        if !pending.is_empty() {
            match limit {
                None => ready.append(&mut pending),
                Some(f) => {
                    let mut i = 0;
                    while i < pending.len() {
                        if ts(&pending[i]) < f {
                            ready.push(pending.swap_remove(i));
                        } else {
                            i += 1;
                        }
                    }
                }
            }
            if !ready.is_empty() {
                ready.sort_by(|a, b| ts(a).cmp(&ts(b)).then_with(|| cmp(a, b)));
                write(&ready, false);
                ready.clear();
            }
        }
        if limit.is_none() && !finished {
            finished = true;
            write(&[], true);
        }
    });
}
