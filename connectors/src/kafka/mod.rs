//! Kafka connectors (rdkafka, bundled librdkafka).
//!
//! - [`KafkaSource`]: one timely worker's partitions of the SCADA topic, assigned
//!   explicitly (`p % total_workers == worker_index`, no consumer group), org from
//!   the message key, woken by librdkafka's queue callback, new partitions picked
//!   up, lag per partition published to a shared [`Lag`] table.
//! - [`RecordProducer`]: JSON records to a topic with the idempotent producer;
//!   failed deliveries are re-sent and counted, never dropped; `flush` waits.
//! - [`TopicFollower`]: every partition of a topic followed from stored offsets
//!   (explicit assignment, new partitions picked up), records decoded from JSON;
//!   an unreadable one is logged (topic, partition, offset, reason), counted and
//!   skipped, never dropped silently. The controller reads the alerts topic so.
//! - [`OffsetTracker`]: per partition, the smallest offset of any row with
//!   `ts ≥ T`, for checkpoints (ARCHITECTURE.md, "Recovery").
//! - [`admin`]: topic creation and reading topics back, for tools and tests.
//! - [`test_broker`]: a throwaway tansu broker for tests and benches.

pub mod admin;
mod follow;
mod offsets;
mod producer;
mod source;
pub mod test_broker;

pub use follow::{FollowConfig, Polled, TopicFollower};
pub use offsets::OffsetTracker;
pub use producer::{ProducerCounts, RecordProducer};
pub use source::{KafkaSource, KafkaSourceConfig, Lag};

use rdkafka::ClientConfig;

/// The partition of `partitions` that a machine's rows go to when a producer
/// spreads an org over several partitions: a stable hash of `org/machine`, so
/// one furnace's rows keep their order.
pub fn machine_partition(org: &str, machine: &str, partitions: i32) -> i32 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(org.as_bytes());
    h.update(b"/");
    h.update(machine.as_bytes());
    (h.digest() % partitions.max(1) as u64) as i32
}

/// How to reach the brokers: `bootstrap.servers` plus any librdkafka options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClient {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, ...).
    pub options: Vec<(String, String)>,
}

impl KafkaClient {
    /// Brokers only.
    pub fn new(brokers: impl Into<String>) -> KafkaClient {
        KafkaClient {
            brokers: brokers.into(),
            options: Vec::new(),
        }
    }

    /// A librdkafka client configuration with the brokers and options set.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // Retry connecting with backoff instead of giving up when the broker is
        // down at start or paused: librdkafka's defaults, stated.
        c.set("reconnect.backoff.ms", "100");
        c.set("reconnect.backoff.max.ms", "5000");
        for (k, v) in &self.options {
            c.set(k, v);
        }
        c
    }
}

/// Client context for readers: reaching the end of a partition is how a batch
/// read knows it is done, not an error to log; everything else is logged.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// A consumer with [`ReaderContext`].
pub type Reader = rdkafka::consumer::BaseConsumer<ReaderContext>;

/// Errors of the Kafka connectors.
#[derive(Debug, thiserror::Error)]
pub enum KafkaConnectorError {
    /// librdkafka refused or failed an operation.
    #[error("kafka: {what}: {source}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The topic does not exist (or has no partitions) after waiting.
    #[error("kafka: topic '{0}' not found on the brokers")]
    NoTopic(String),
    /// A flush did not finish in time (broker unreachable).
    #[error("kafka: {0} records still undelivered after waiting {1:?}")]
    Undelivered(usize, std::time::Duration),
}

impl KafkaConnectorError {
    pub(crate) fn kafka(
        what: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let what = what.into();
        move |source| KafkaConnectorError::Kafka { what, source }
    }
}

#[cfg(test)]
mod tests;
