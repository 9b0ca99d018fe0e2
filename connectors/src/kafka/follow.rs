//! [`TopicFollower`]: every partition of a topic, followed from given offsets and
//! decoded (JSON) into records of one type.
//!
//! Partitions are assigned explicitly (no group rebalancing, nothing committed:
//! the caller keeps the offsets, [`TopicFollower::next_offsets`]); partitions that
//! appear later are picked up at the next refresh. A record that does not decode
//! is logged with its topic, partition, offset and reason, counted
//! ([`Polled::unreadable`], [`TopicFollower::unreadable_total`]) and not
//! delivered; its offset still moves on, so a restart does not read it again.

use super::{KafkaClient, KafkaConnectorError, Reader, ReaderContext, admin};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// What a [`TopicFollower`] reads.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// Brokers and client options.
    pub client: KafkaClient,
    /// The topic.
    pub topic: String,
    /// What the topic holds, for log lines (`alerts` logs "reading alerts",
    /// "an unreadable record on the alerts topic was skipped").
    pub name: String,
    /// The consumer's `group.id`; no offsets are committed under it.
    pub group_id: String,
    /// Where each partition starts; absent partitions start at offset 0.
    pub start: BTreeMap<i32, i64>,
    /// How often to look for new partitions.
    pub refresh: Duration,
    /// The most records (readable or not) one [`TopicFollower::poll`] takes.
    pub max_batch: usize,
}

/// What one [`TopicFollower::poll`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// Records decoded and appended to the output.
    pub records: usize,
    /// Records that did not decode (each logged), skipped.
    pub unreadable: usize,
}

impl Polled {
    /// Nothing was read: no offset moved.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.unreadable == 0
    }
}

/// Follows every partition of one topic with an explicitly assigned consumer.
pub struct TopicFollower<T> {
    cfg: FollowConfig,
    consumer: Reader,
    owned: BTreeSet<i32>,
    next: BTreeMap<i32, i64>,
    last_refresh: Option<Instant>,
    unreadable: u64,
    decoded: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> TopicFollower<T> {
    /// A consumer for `cfg.topic`; partitions are assigned by the first poll.
    pub fn new(cfg: FollowConfig) -> Result<TopicFollower<T>, KafkaConnectorError> {
        let consumer: Reader = cfg
            .client
            .config()
            .set("group.id", &cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(ReaderContext)
            .map_err(KafkaConnectorError::kafka("create consumer"))?;
        Ok(TopicFollower {
            cfg,
            consumer,
            owned: BTreeSet::new(),
            next: BTreeMap::new(),
            last_refresh: None,
            unreadable: 0,
            decoded: PhantomData,
        })
    }

    /// Wait up to `wait` for a record, then take what is already there (up to
    /// `max_batch`): the readable ones decoded onto `out`, in offset order per
    /// partition. Read errors are logged and retried by the next poll; an error
    /// is returned only when new partitions cannot be assigned.
    pub fn poll(
        &mut self,
        wait: Duration,
        out: &mut Vec<T>,
    ) -> Result<Polled, KafkaConnectorError> {
        if self
            .last_refresh
            .is_none_or(|t| t.elapsed() >= self.cfg.refresh)
        {
            self.refresh()?;
        }
        let mut polled = Polled::default();
        let mut wait = wait;
        while polled.records + polled.unreadable < self.cfg.max_batch.max(1) {
            match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    let name = &self.cfg.name;
                    tracing::warn!(error = %e, topic = %self.cfg.topic, "{name} topic read error (retrying)");
                    break;
                }
                Some(Ok(m)) => {
                    match decode::<T>(&self.cfg, &m) {
                        Some(r) => {
                            out.push(r);
                            polled.records += 1;
                        }
                        None => {
                            self.unreadable += 1;
                            polled.unreadable += 1;
                        }
                    }
                    self.next.insert(m.partition(), m.offset() + 1);
                }
            }
            // Having waited once, take only what is already there.
            wait = Duration::ZERO;
        }
        Ok(polled)
    }

    /// Per partition, the offset after the last record read (readable or not):
    /// where a restart continues.
    pub fn next_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }

    /// Records skipped as unreadable since this follower started.
    pub fn unreadable_total(&self) -> u64 {
        self.unreadable
    }

    /// Assign the partitions that appeared since the last look, from their start
    /// offsets. The topic's metadata not being readable is logged and retried.
    fn refresh(&mut self) -> Result<(), KafkaConnectorError> {
        self.last_refresh = Some(Instant::now());
        let (topic, name) = (self.cfg.topic.as_str(), self.cfg.name.as_str());
        let n = match admin::partitions(&self.consumer, topic) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the {name} topic's partitions (retrying)");
                return Ok(());
            }
        };
        let new: Vec<i32> = (0..n).filter(|p| !self.owned.contains(p)).collect();
        let mut tpl = TopicPartitionList::new();
        for p in new {
            let from = self.cfg.start.get(&p).copied().unwrap_or(0);
            tpl.add_partition_offset(topic, p, Offset::Offset(from))
                .map_err(KafkaConnectorError::kafka("partition list"))?;
            self.owned.insert(p);
            tracing::info!(topic, partition = p, from, "reading {name}");
        }
        if tpl.count() > 0 {
            self.consumer
                .incremental_assign(&tpl)
                .map_err(KafkaConnectorError::kafka("assign partitions"))?;
        }
        Ok(())
    }
}

/// The record `m` holds, or `None` after logging why it is unreadable.
fn decode<T: DeserializeOwned>(cfg: &FollowConfig, m: &BorrowedMessage<'_>) -> Option<T> {
    match serde_json::from_slice::<T>(m.payload().unwrap_or_default()) {
        Ok(r) => Some(r),
        Err(e) => {
            let name = &cfg.name;
            tracing::error!(error = %e, topic = %cfg.topic, partition = m.partition(),
                offset = m.offset(), "an unreadable record on the {name} topic was skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FollowConfig, Polled, TopicFollower};
    use crate::kafka::test_broker::TestBroker;
    use crate::kafka::{KafkaClient, RecordProducer, admin};
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Reading {
        n: u32,
    }

    fn follower(client: &KafkaClient, start: BTreeMap<i32, i64>) -> TopicFollower<Reading> {
        TopicFollower::new(FollowConfig {
            client: client.clone(),
            topic: "readings".into(),
            name: "readings".into(),
            group_id: "follow-test".into(),
            start,
            refresh: Duration::from_millis(200),
            max_batch: 2,
        })
        .unwrap()
    }

    /// Poll until `want` records and unreadable ones together have been read.
    fn read(f: &mut TopicFollower<Reading>, want: usize) -> (Vec<u32>, Polled) {
        let (mut out, mut total) = (Vec::new(), Polled::default());
        let deadline = Instant::now() + Duration::from_secs(60);
        while total.records + total.unreadable < want {
            assert!(Instant::now() < deadline, "read {out:?}, {total:?}");
            let p = f.poll(Duration::from_millis(100), &mut out).unwrap();
            assert!(p.records + p.unreadable <= 2, "max_batch is kept: {p:?}");
            total.records += p.records;
            total.unreadable += p.unreadable;
        }
        (out.into_iter().map(|r| r.n).collect(), total)
    }

    /// Readable records arrive decoded and in order; a garbage one between them
    /// is counted, not delivered, and its offset is passed like any other.
    #[test]
    fn unreadable_records_are_counted_and_skipped_readable_ones_kept_in_order() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let broker = TestBroker::start(&root);
        let client = KafkaClient::new(broker.addr());
        admin::create_topic(&client, "readings", 1, false, Duration::from_secs(20)).unwrap();
        let producer = RecordProducer::new(&client, "readings").unwrap();
        let values: [&[u8]; 5] = [
            b"{\"n\":1}",
            b"{\"n\":2}",
            b"\xffnot json",
            b"{\"n\":3}",
            b"{\"n\":4}",
        ];
        for v in values {
            producer.send(b"k", v, 0);
        }
        producer.flush(Duration::from_secs(20)).unwrap();

        let mut f = follower(&client, BTreeMap::new());
        let (got, polled) = read(&mut f, 5);
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(
            polled,
            Polled {
                records: 4,
                unreadable: 1
            }
        );
        assert_eq!(f.unreadable_total(), 1);
        assert_eq!(f.next_offsets(), &BTreeMap::from([(0, 5)]));

        // A restart from stored offsets past the garbage record reads only the rest.
        let mut again = follower(&client, BTreeMap::from([(0, 3)]));
        let (got, polled) = read(&mut again, 2);
        assert_eq!(got, [3, 4]);
        assert_eq!(polled.unreadable, 0);
        assert_eq!(again.next_offsets(), &BTreeMap::from([(0, 5)]));
    }
}
