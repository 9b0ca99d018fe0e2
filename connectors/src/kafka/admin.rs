//! Topic creation and reading whole topics: for `prognos topics`, tests and the
//! restart path that reads back what the alert sink already wrote.

use super::{KafkaClient, KafkaConnectorError};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Create `topic` with `partitions` partitions (and `cleanup.policy=compact` when
/// `compact`); an existing topic is fine. Retries while the broker is unreachable,
/// up to `wait`.
pub fn create_topic(
    client: &KafkaClient,
    topic: &str,
    partitions: i32,
    compact: bool,
    wait: Duration,
) -> Result<(), KafkaConnectorError> {
    let admin: AdminClient<DefaultClientContext> = client
        .config()
        .create()
        .map_err(KafkaConnectorError::kafka("create admin client"))?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    if compact {
        new = new.set("cleanup.policy", "compact");
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + wait;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaConnectorError::Kafka {
            what: format!("runtime: {e}"),
            source: rdkafka::error::KafkaError::Canceled,
        })?;
    loop {
        let res = rt.block_on(admin.create_topics([&new], &opts));
        let err = match res {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => return Ok(()),
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
                Some(Err((_, code))) => rdkafka::error::KafkaError::AdminOp(code),
                None => return Ok(()),
            },
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(KafkaConnectorError::Kafka {
                what: format!("create topic '{topic}'"),
                source: err,
            });
        }
        tracing::warn!(error = %err, topic, "cannot create the topic yet (retrying)");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A consumer with no group, for reading partitions from given offsets.
pub fn reader(client: &KafkaClient) -> Result<super::Reader, KafkaConnectorError> {
    client
        .config()
        .set("group.id", "prognos-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(super::ReaderContext)
        .map_err(KafkaConnectorError::kafka("create reader"))
}

/// Number of partitions of `topic`.
pub fn partitions(c: &super::Reader, topic: &str) -> Result<i32, KafkaConnectorError> {
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(KafkaConnectorError::kafka(format!("metadata of '{topic}'")))?;
    let n = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len() as i32);
    if n == 0 {
        return Err(KafkaConnectorError::NoTopic(topic.to_string()));
    }
    Ok(n)
}

/// The high watermark of a partition as the last fetch response reported it
/// (no request). Brokers whose `ListOffsets` answer is unreliable (the tansu test
/// broker's memory storage) still report the right one on fetches.
pub fn cached_high_watermark(c: &super::Reader, topic: &str, partition: i32) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the
    // function only reads librdkafka's cached state into the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            c.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Key (empty when absent).
    pub key: Vec<u8>,
    /// Value (empty when absent).
    pub payload: Vec<u8>,
}

/// Every record of `topic` from `from` (per partition; absent = beginning) up to
/// the end each partition has when the reader reaches it, in partition then
/// offset order.
pub fn read_all(
    client: &KafkaClient,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> Result<Vec<TopicRecord>, KafkaConnectorError> {
    let c: super::Reader = client
        .config()
        .set("group.id", "prognos-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(super::ReaderContext)
        .map_err(KafkaConnectorError::kafka("create reader"))?;
    let n = partitions(&c, topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        let start = from.get(&p).copied().unwrap_or(0);
        tpl.add_partition_offset(topic, p, Offset::Offset(start))
            .map_err(KafkaConnectorError::kafka("partition list"))?;
    }
    c.assign(&tpl)
        .map_err(KafkaConnectorError::kafka("assign"))?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut done: BTreeMap<i32, bool> = BTreeMap::new();
    while done.len() < n as usize {
        if Instant::now() >= deadline {
            return Err(KafkaConnectorError::Undelivered(out.len(), timeout));
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                done.insert(p, true);
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "read error (retrying)"),
            Some(Ok(m)) => out.push(TopicRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}
