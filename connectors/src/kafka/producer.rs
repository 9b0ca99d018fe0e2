//! [`RecordProducer`]: keyed JSON records to one topic, delivered or retried.

use super::{KafkaClient, KafkaConnectorError};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Delivery counters of a [`RecordProducer`].
#[derive(Debug, Default)]
pub struct ProducerCounts {
    /// Records handed to the client.
    pub sent: AtomicU64,
    /// Records the brokers acknowledged.
    pub delivered: AtomicU64,
    /// Deliveries that failed and were sent again.
    pub retried: AtomicU64,
}

/// A record whose delivery failed, kept to be sent again.
struct Failed {
    partition: Option<i32>,
    key: Vec<u8>,
    payload: Vec<u8>,
    tag: u64,
}

#[derive(Default)]
struct Tracking {
    failed: Mutex<Vec<Failed>>,
    /// `(tag, partition, offset)` of acknowledged records not yet pruned.
    delivered: Mutex<Vec<(u64, i32, i64)>>,
    /// Per partition, the offset after the last acknowledged record.
    ends: Mutex<BTreeMap<i32, i64>>,
    counts: ProducerCounts,
}

/// The delivery context: keeps failed records (with their bytes) for a resend.
struct Context(Tracking);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<u64>) {
        match result {
            Ok(m) => {
                self.0.counts.delivered.fetch_add(1, Ordering::Relaxed);
                self.0
                    .delivered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((*tag, m.partition(), m.offset()));
                let mut ends = self.0.ends.lock().unwrap_or_else(|e| e.into_inner());
                let end = ends.entry(m.partition()).or_insert(0);
                *end = (*end).max(m.offset() + 1);
            }
            Err((e, m)) => {
                tracing::warn!(error = %e, topic = m.topic(), "delivery failed: sending again");
                self.0.counts.retried.fetch_add(1, Ordering::Relaxed);
                self.0
                    .failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Failed {
                        partition: Some(m.partition()).filter(|p| *p >= 0),
                        key: m.key().unwrap_or_default().to_vec(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        tag: *tag,
                    });
            }
        }
    }
}

/// Keyed records to one topic with the idempotent producer (`acks=all`, no
/// reordering or duplicates on the client's own retries). A delivery that still
/// fails (the broker was away past `message.timeout.ms`) is sent again, counted,
/// never dropped. Each record carries a tag (the dataflow time) so a checkpoint can
/// ask where the records at or after a time start ([`RecordProducer::offsets_from`]).
pub struct RecordProducer {
    producer: BaseProducer<Context>,
    topic: String,
}

impl RecordProducer {
    /// A producer for `topic`.
    pub fn new(client: &KafkaClient, topic: &str) -> Result<RecordProducer, KafkaConnectorError> {
        let producer = client
            .config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .set("compression.type", "none")
            .create_with_context(Context(Tracking::default()))
            .map_err(KafkaConnectorError::kafka("create producer"))?;
        Ok(RecordProducer {
            producer,
            topic: topic.to_string(),
        })
    }

    /// The topic written to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Delivery counters.
    pub fn counts(&self) -> &ProducerCounts {
        &self.producer.context().0.counts
    }

    /// Queue one record (partition by the key's hash); waits (serving
    /// deliveries) while the client's queue is full.
    pub fn send(&self, key: &[u8], payload: &[u8], tag: u64) {
        self.send_to(None, key, payload, tag)
    }

    /// Queue one record to a given partition (`None`: by the key's hash).
    pub fn send_to(&self, partition: Option<i32>, key: &[u8], payload: &[u8], tag: u64) {
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new(tag))
            .key(key)
            .payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.counts().sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(20));
                }
                Err((e, r)) => {
                    // Not retriable by waiting (e.g. a record above message.max.bytes):
                    // keep it for `service` to retry, counted, and say why.
                    tracing::error!(error = %e, topic = %self.topic, "cannot queue a record: will retry");
                    self.counts().retried.fetch_add(1, Ordering::Relaxed);
                    self.producer
                        .context()
                        .0
                        .failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Failed {
                            partition,
                            key: r.key.unwrap_or_default().to_vec(),
                            payload: r.payload.unwrap_or_default().to_vec(),
                            tag: *r.delivery_opaque,
                        });
                    return;
                }
            }
        }
    }

    /// Serve delivery reports and send failed records again.
    pub fn service(&self) {
        self.producer.poll(Duration::ZERO);
        let failed = std::mem::take(
            &mut *self
                .producer
                .context()
                .0
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for f in failed {
            self.send_to(f.partition, &f.key, &f.payload, f.tag);
        }
    }

    /// Records queued or failed and not yet delivered.
    pub fn undelivered(&self) -> usize {
        let failed = self
            .producer
            .context()
            .0
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        self.producer.in_flight_count().max(0) as usize + failed
    }

    /// Wait until every record sent so far is delivered (re-sending failures),
    /// or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaConnectorError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.service();
            // One reading for both the decision and the error: counting again
            // could report "0 undelivered" for a record delivered in between.
            let undelivered = self.undelivered();
            if undelivered == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(KafkaConnectorError::Undelivered(undelivered, timeout));
            }
            let _ = self.producer.flush(Duration::from_millis(100));
        }
    }

    /// Per partition this producer wrote to, where its records with tag ≥ `from`
    /// begin: the smallest offset of such a delivered record, else the offset
    /// after its last delivered record (later records land after it). Forgets
    /// delivered records with smaller tags. Call after [`flush`](Self::flush), so
    /// every record sent so far has its offset.
    pub fn offsets_from(&self, from: u64) -> BTreeMap<i32, i64> {
        let mut out = self
            .producer
            .context()
            .0
            .ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut d = self
            .producer
            .context()
            .0
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        d.retain(|&(tag, _, _)| tag >= from);
        for &(_, p, o) in d.iter() {
            let e = out.entry(p).or_insert(o);
            *e = (*e).min(o);
        }
        out
    }
}
