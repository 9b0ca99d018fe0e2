//! [`KafkaSource`]: one timely worker's share of a topic's partitions.

use super::{KafkaClient, KafkaConnectorError, OffsetTracker};
use prognos_dataflows::records::{RawPayload, RawRow, SourcePosition};
use prognos_dataflows::source::{Source, SourceEvent, SourceStatus, Waker};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consumer lag per partition (high watermark − next offset), for the metrics.
pub type Lag = Arc<Mutex<BTreeMap<u32, i64>>>;

/// What one worker's source reads.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    /// Brokers and client options.
    pub client: KafkaClient,
    /// The SCADA topic.
    pub topic: String,
    /// This worker's global index and the total number of workers: it owns the
    /// partitions `p` with `p % workers == index`.
    pub index: usize,
    /// Total timely workers over all processes.
    pub workers: usize,
    /// Where to start each partition (a checkpoint); absent partitions start at
    /// the beginning.
    pub start: BTreeMap<u32, i64>,
    /// End each partition when the reader reaches its end (a batch run over
    /// what the topic holds), instead of following it.
    pub stop_at_end: bool,
    /// How often to look for new partitions and refresh the lag.
    pub refresh: Duration,
}

/// The partitions of `0..n` that belong to worker `index` of `workers`
/// (`p % workers == index`) and are not in `owned` yet: what a refresh assigns
/// when a topic has grown to `n` partitions.
fn unowned_partitions(n: u32, index: usize, workers: usize, owned: &BTreeSet<u32>) -> Vec<u32> {
    (0..n)
        .filter(|p| *p as usize % workers.max(1) == index)
        .filter(|p| !owned.contains(p))
        .collect()
}

/// Reads its partitions with an explicitly assigned [`BaseConsumer`].
pub struct KafkaSource {
    cfg: KafkaSourceConfig,
    consumer: super::Reader,
    owned: BTreeSet<u32>,
    /// Partitions still open.
    open: BTreeSet<u32>,
    /// Next offset to read per partition (for lag and ends).
    next: BTreeMap<u32, i64>,
    pending: Vec<SourceEvent>,
    last_refresh: Option<Instant>,
    tracker: Arc<OffsetTracker>,
    rows: BTreeMap<u32, Vec<(i64, i64)>>,
    lag: Lag,
    errors: u64,
}

impl KafkaSource {
    /// Connect and assign this worker's partitions (waits up to `wait` for the
    /// topic's metadata, retrying while the broker is unreachable).
    pub fn new(
        cfg: KafkaSourceConfig,
        tracker: Arc<OffsetTracker>,
        lag: Lag,
        wait: Duration,
    ) -> Result<KafkaSource, KafkaConnectorError> {
        let consumer: super::Reader = cfg
            .client
            .config()
            .set("group.id", "prognos-workers")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "enable.partition.eof",
                if cfg.stop_at_end { "true" } else { "false" },
            )
            .set("auto.offset.reset", "earliest")
            // Latency: a fetch that finds nothing waits at most this long at the
            // broker before asking again (librdkafka's default is 500 ms).
            .set("fetch.wait.max.ms", "50")
            .create_with_context(super::ReaderContext)
            .map_err(KafkaConnectorError::kafka("create consumer"))?;
        let mut s = KafkaSource {
            cfg,
            consumer,
            owned: BTreeSet::new(),
            open: BTreeSet::new(),
            next: BTreeMap::new(),
            pending: Vec::new(),
            last_refresh: None,
            tracker,
            rows: BTreeMap::new(),
            lag,
            errors: 0,
        };
        let deadline = Instant::now() + wait;
        loop {
            match s.refresh() {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, topic = %s.cfg.topic, "waiting for the brokers");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(s)
    }

    fn partition_count(&self) -> Result<u32, KafkaConnectorError> {
        let md = self
            .consumer
            .fetch_metadata(Some(&self.cfg.topic), Duration::from_secs(5))
            .map_err(KafkaConnectorError::kafka(format!(
                "metadata of '{}'",
                self.cfg.topic
            )))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == self.cfg.topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as u32);
        if n == 0 {
            return Err(KafkaConnectorError::NoTopic(self.cfg.topic.clone()));
        }
        Ok(n)
    }

    /// Assign partitions that appeared since the last look; refresh the lag.
    fn refresh(&mut self) -> Result<(), KafkaConnectorError> {
        self.last_refresh = Some(Instant::now());
        let n = self.partition_count()?;
        let new = unowned_partitions(n, self.cfg.index, self.cfg.workers, &self.owned);
        if !new.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for &p in &new {
                let start = self.cfg.start.get(&p).copied();
                let offset = match start {
                    Some(o) => Offset::Offset(o),
                    None => Offset::Beginning,
                };
                tpl.add_partition_offset(&self.cfg.topic, p as i32, offset)
                    .map_err(KafkaConnectorError::kafka("partition list"))?;
                let from = start.unwrap_or(0);
                self.tracker.start(p, from);
                self.next.insert(p, from);
                self.owned.insert(p);
                self.pending.push(SourceEvent::Partition(p));
                self.open.insert(p);
                tracing::info!(topic = %self.cfg.topic, partition = p, from = ?start, "partition assigned");
            }
            self.consumer
                .incremental_assign(&tpl)
                .map_err(KafkaConnectorError::kafka("assign partitions"))?;
        }
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        for &p in &self.open {
            if let Some(high) =
                super::admin::cached_high_watermark(&self.consumer, &self.cfg.topic, p as i32)
            {
                let next = self.next.get(&p).copied().unwrap_or(0);
                lag.insert(p, (high - next).max(0));
            }
        }
        Ok(())
    }

    fn end_partition(&mut self, p: u32) {
        self.open.remove(&p);
        self.pending.push(SourceEvent::PartitionEnd(p));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topic, p as i32);
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            tracing::warn!(error = %e, partition = p, "cannot unassign an ended partition");
        }
        self.lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&p);
    }

    fn flush_tracked(&mut self) {
        for (p, rows) in self.rows.iter_mut() {
            if !rows.is_empty() {
                self.tracker.record(*p, rows);
                rows.clear();
            }
        }
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, out: &mut Vec<SourceEvent>, max_rows: usize) -> SourceStatus {
        self.flush_tracked();
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= self.cfg.refresh)
            && let Err(e) = self.refresh()
        {
            tracing::warn!(error = %e, "cannot refresh the partitions (will retry)");
        }
        out.append(&mut self.pending);
        if self.open.is_empty() {
            return if self.cfg.stop_at_end {
                SourceStatus::Finished
            } else {
                SourceStatus::Wait(self.cfg.refresh)
            };
        }
        let mut rows = 0;
        while rows < max_rows {
            let msg = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                    if self.open.contains(&(p as u32)) {
                        self.end_partition(p as u32);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    // Transport errors are retried by librdkafka itself; say so once in a while.
                    self.errors += 1;
                    if self.errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = self.errors, "kafka consumer error (retrying)");
                    }
                    break;
                }
            };
            let p = msg.partition() as u32;
            let offset = msg.offset();
            if !self.open.contains(&p) {
                continue;
            }
            self.next.insert(p, offset + 1);
            // Not UTF-8: an `invalid_utf8` dead letter, never a mangled row.
            let payload = RawPayload::from_bytes(msg.payload().unwrap_or_default(), |text| {
                RawPayload::Json { text }
            });
            let org = msg
                .key()
                .filter(|k| !k.is_empty())
                .map(|k| String::from_utf8_lossy(k).into_owned());
            out.push(SourceEvent::Row(RawRow {
                pos: SourcePosition {
                    partition: p,
                    offset: offset as u64,
                },
                organization_id: org,
                payload,
            }));
            rows += 1;
        }
        out.append(&mut self.pending);
        if rows == max_rows {
            SourceStatus::Ready
        } else if self.open.is_empty() && self.cfg.stop_at_end {
            SourceStatus::Finished
        } else {
            // The queue callback wakes the operator when messages arrive; this
            // wait only bounds how late a refresh can be.
            SourceStatus::Wait(self.cfg.refresh)
        }
    }

    fn set_waker(&mut self, waker: Waker) {
        self.consumer.set_nonempty_callback(move || waker());
    }

    fn mapped(&mut self, pos: SourcePosition, ts: Option<i64>) {
        // A row without an event time never needs reading again: `i64::MIN`
        // lets the tracker drop it at once while still moving the next offset.
        self.rows
            .entry(pos.partition)
            .or_default()
            .push((pos.offset as i64, ts.unwrap_or(i64::MIN)));
    }
}

#[cfg(test)]
mod tests {
    use super::unowned_partitions;
    use std::collections::BTreeSet;

    #[test]
    fn a_growing_topic_gives_each_new_partition_to_exactly_one_worker() {
        for workers in 1..=5usize {
            let mut owned: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); workers];
            // The topic grows 1 → 3 → 3 → 8 → 13 partitions between refreshes.
            let mut before = 0;
            for n in [1u32, 3, 3, 8, 13] {
                let mut seen = BTreeSet::new();
                for (i, o) in owned.iter_mut().enumerate() {
                    let new = unowned_partitions(n, i, workers, o);
                    for p in &new {
                        assert_eq!(*p as usize % workers, i, "{workers} workers, n = {n}");
                        assert!(o.insert(*p), "assigned twice: {p}");
                    }
                    seen.extend(new);
                }
                let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
                assert_eq!(all, (0..n).collect(), "every partition has an owner");
                assert_eq!(
                    seen,
                    (before..n).collect(),
                    "only the new ones are assigned"
                );
                before = n;
            }
        }
    }
}
