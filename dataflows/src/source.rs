//! The source interface the dataflow reads from. Connectors (files, the simulator,
//! Kafka) implement [`Source`]; the dataflow's ingest operator drives it, so the
//! dataflow crate itself does no I/O and tests feed it from memory.
//!
//! A *partition* is the unit whose order is preserved (a Kafka partition, a file,
//! a simulated org stream); partition ids are global across workers, and every row
//! carries its `(partition, offset)`.

use crate::records::{RawRow, SourcePosition};
use std::time::Duration;

/// What a source delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A partition this source instance now owns (before or with its first row).
    Partition(u32),
    /// A row.
    Row(RawRow),
    /// The partition will deliver nothing more (end of file).
    PartitionEnd(u32),
}

/// What a source says after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More is available right away: poll again soon.
    Ready,
    /// Nothing right now; poll again after at most this long.
    Wait(Duration),
    /// Every partition has ended.
    Finished,
}

/// A source of raw rows for one worker.
pub trait Source: 'static {
    /// Append at most `max_rows` rows (plus partition events) to `out`.
    fn poll(&mut self, out: &mut Vec<SourceEvent>, max_rows: usize) -> SourceStatus;

    /// Called once before the first poll with a function that schedules the
    /// operator again. A source whose data arrives on other threads (Kafka) calls
    /// it when data becomes available, so the operator need not poll while idle.
    fn set_waker(&mut self, waker: Waker) {
        let _ = waker;
    }

    /// The input has ended and event time stands at `end` (ms): return true to
    /// keep the dataflow's frontier there (the operator asks again shortly),
    /// false to release it. A source that must see every record due before
    /// `end` emitted before the frontier runs off to the end holds until its
    /// sinks report that far; the default releases at once.
    fn hold_end(&mut self, end: u64) -> bool {
        let _ = end;
        false
    }

    /// Told, for every row it delivered, the row's event time once mapped
    /// (`None` when the row could not be mapped). Sources that checkpoint keep
    /// it to know where to resume; the default ignores it.
    fn mapped(&mut self, pos: SourcePosition, ts: Option<i64>) {
        let _ = (pos, ts);
    }
}

/// Schedules the ingest operator again; callable from any thread.
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// An in-memory source: the given events, then finished. For tests and replays
/// of already-loaded data.
#[derive(Debug, Default)]
pub struct VecSource {
    events: std::collections::VecDeque<SourceEvent>,
}

impl VecSource {
    /// A source that delivers `events` in order.
    pub fn new(events: Vec<SourceEvent>) -> VecSource {
        VecSource {
            events: events.into(),
        }
    }
}

impl Source for VecSource {
    fn poll(&mut self, out: &mut Vec<SourceEvent>, max_rows: usize) -> SourceStatus {
        let mut rows = 0;
        while rows < max_rows {
            match self.events.pop_front() {
                Some(e) => {
                    rows += matches!(e, SourceEvent::Row(_)) as usize;
                    out.push(e);
                }
                None => return SourceStatus::Finished,
            }
        }
        if self.events.is_empty() {
            SourceStatus::Finished
        } else {
            SourceStatus::Ready
        }
    }
}
