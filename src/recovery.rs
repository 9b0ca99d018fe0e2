//! The worker's recovery protocol (ARCHITECTURE.md, "Recovery"): checkpoints,
//! the resume plan, and the set of alert records a restart must not write again.
//!
//! Every checkpoint interval a worker process records, in its own sled under
//! `<data-dir>/worker-<process>/checkpoints`, a [`Checkpoint`]: the durable
//! output frontier F (every record below it acknowledged by the brokers), per
//! SCADA partition the smallest offset of a row with `ts ≥ F − margin`, and per
//! alerts partition where the records at or after F begin. It keeps the last
//! [`HISTORY`] of them, and publishes F on the compacted checkpoints topic under
//! [`process_key`].
//!
//! A restart agrees on the cluster's frontier (the minimum of its own latest
//! checkpoint and every other process's published one, [`plan`]), resumes from
//! its newest checkpoint at or before it, reads the alerts topic from there into
//! a [`SkipSet`], replays the partitions, drops everything due below the
//! frontier and skips records already in the topic: nothing lost, nothing twice.

use prognos_connectors::kafka::admin::{self, TopicRecord};
use prognos_connectors::kafka::{KafkaClient, KafkaConnectorError, OffsetTracker, RecordProducer};
use prognos_dataflows::records::Alert;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Checkpoints kept per process: a restart may need one older than the latest
/// (the cluster resumes from the minimum over its processes).
pub const HISTORY: usize = 1024;

/// Errors of the recovery protocol.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The checkpoint folder cannot be created.
    #[error("cannot create {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint store cannot be opened (usually: held by another process).
    #[error(
        "cannot open {path} (is another worker with process index {process} using this data dir?)"
    )]
    Open {
        /// The process's folder.
        path: PathBuf,
        /// The process index.
        process: usize,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Reading or writing the checkpoint store failed.
    #[error("checkpoint store")]
    Store(#[from] sled::Error),
    /// A stored checkpoint is not a checkpoint (torn or garbled).
    #[error("the stored checkpoint `{key}` is unreadable")]
    Garbled {
        /// Its key in the store.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint cannot be encoded.
    #[error("cannot encode a checkpoint")]
    Encode(#[source] serde_json::Error),
    /// The brokers did not answer (flush, reading the checkpoints topic).
    #[error("checkpoint")]
    Kafka(#[from] KafkaConnectorError),
}

/// What a process records to resume from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Durable output frontier: every record below it is in the topics.
    pub frontier: u64,
    /// Per SCADA partition, the offset to resume from.
    pub offsets: BTreeMap<u32, i64>,
    /// Per alerts partition, where records at or after `frontier` may begin.
    pub alerts_from: BTreeMap<i32, i64>,
    /// Wall-clock time it was taken (ms), for the log.
    pub taken_at: i64,
}

/// Where a restarting process resumes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resume {
    /// Records due before this are already in the topics: the minimum over the
    /// cluster's processes of their latest checkpoint.
    pub frontier: u64,
    /// This process's newest checkpoint at or before `frontier` (replay offsets
    /// and where its records start on the alerts topic); `None`: from the beginning.
    pub checkpoint: Option<Checkpoint>,
}

/// The key a process publishes its latest frontier under on the checkpoints topic.
pub fn process_key(process: usize) -> String {
    format!("process-{process}")
}

/// The compacted topic the processes publish their frontiers on.
pub fn fronts_topic(alerts_topic: &str) -> String {
    format!("{alerts_topic}.checkpoints")
}

/// The checkpoints of one worker process for one input → output topic pair.
#[derive(Clone)]
pub struct CheckpointStore {
    db: sled::Db,
    tree: sled::Tree,
    key: String,
}

impl CheckpointStore {
    /// Open (creating) the store of process `process` under `data_dir`
    /// (`worker-<process>/checkpoints`), for reading `topic` into `alerts_topic`.
    pub fn open(
        data_dir: &Path,
        process: usize,
        topic: &str,
        alerts_topic: &str,
    ) -> Result<CheckpointStore, RecoveryError> {
        let dir = data_dir.join(format!("worker-{process}"));
        std::fs::create_dir_all(&dir).map_err(|source| RecoveryError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let db = sled::open(dir.join("checkpoints")).map_err(|source| RecoveryError::Open {
            path: dir.clone(),
            process,
            source,
        })?;
        let tree = db.open_tree("checkpoints")?;
        Ok(CheckpointStore {
            db,
            tree,
            key: format!("{topic}->{alerts_topic}"),
        })
    }

    /// Append a checkpoint to the history (key `<topics>/<frontier, 20 digits>`),
    /// dropping the oldest beyond [`HISTORY`], and flush.
    pub fn store(&self, c: &Checkpoint) -> Result<(), RecoveryError> {
        let value = serde_json::to_vec(c).map_err(RecoveryError::Encode)?;
        self.tree
            .insert(format!("{}/{:020}", self.key, c.frontier), value)?;
        let keys: Vec<sled::IVec> = self
            .tree
            .scan_prefix(format!("{}/", self.key))
            .keys()
            .collect::<Result<_, _>>()?;
        for k in keys.iter().take(keys.len().saturating_sub(HISTORY)) {
            self.tree.remove(k)?;
        }
        self.tree.flush()?;
        Ok(())
    }

    /// Every stored checkpoint by frontier. An unreadable one is an error naming
    /// its key: resuming from a guess could write records twice or lose them.
    pub fn history(&self) -> Result<BTreeMap<u64, Checkpoint>, RecoveryError> {
        let mut out = BTreeMap::new();
        for kv in self.tree.scan_prefix(format!("{}/", self.key)) {
            let (k, v) = kv?;
            let c: Checkpoint =
                serde_json::from_slice(&v).map_err(|source| RecoveryError::Garbled {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source,
                })?;
            out.insert(c.frontier, c);
        }
        Ok(out)
    }

    /// Flush the whole store (at the end of a run).
    pub fn flush(&self) -> Result<(), RecoveryError> {
        self.db.flush()?;
        Ok(())
    }

    #[cfg(test)]
    fn insert_raw(&self, frontier: u64, bytes: &[u8]) {
        self.tree
            .insert(format!("{}/{frontier:020}", self.key), bytes)
            .expect("insert");
    }
}

/// The latest frontier each process published on the checkpoints topic (the
/// last record per key wins; a value that is not a number is ignored).
pub fn published_frontiers(records: &[TopicRecord]) -> BTreeMap<String, u64> {
    let mut published = BTreeMap::new();
    for r in records {
        if let Some(f) = std::str::from_utf8(&r.payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            published.insert(String::from_utf8_lossy(&r.key).into_owned(), f);
        }
    }
    published
}

/// The resume plan of process `process` of `processes`, from its own
/// checkpoints and the frontiers the others published: the frontier is the
/// minimum of its own latest and every other process's (0 for one that never
/// published: it may have written anything), and the checkpoint its newest at
/// or before that frontier. Every process then replays from at or before
/// `frontier − margin` and drops only what is due before `frontier`: each
/// machine's state is rebuilt from enough rows whichever process reads its
/// partition. No checkpoint of its own: from the beginning.
pub fn plan(
    history: &BTreeMap<u64, Checkpoint>,
    published: &BTreeMap<String, u64>,
    process: usize,
    processes: usize,
) -> Resume {
    let Some(own_latest) = history.keys().next_back().copied() else {
        return Resume::default();
    };
    let mut frontier = own_latest;
    for p in (0..processes).filter(|p| *p != process) {
        frontier = frontier.min(published.get(&process_key(p)).copied().unwrap_or(0));
    }
    let checkpoint = history
        .range(..=frontier)
        .next_back()
        .map(|(_, c)| c.clone());
    Resume {
        frontier,
        checkpoint,
    }
}

/// [`plan`] with the frontiers read from the checkpoints topic now.
pub fn plan_resume(
    client: &KafkaClient,
    fronts_topic: &str,
    store: &CheckpointStore,
    process: usize,
    processes: usize,
    wait: Duration,
) -> Result<Resume, RecoveryError> {
    let history = store.history()?;
    if history.is_empty() {
        return Ok(Resume::default());
    }
    let records = admin::read_all(client, fronts_topic, &BTreeMap::new(), wait)?;
    Ok(plan(
        &history,
        &published_frontiers(&records),
        process,
        processes,
    ))
}

/// Record where to resume: flush the alerts producer, store the checkpoint and
/// publish its frontier. Skipped (and said) when the brokers cannot answer now;
/// the next interval tries again. `previous` holds the alerts partitions'
/// starting points of the checkpoint resumed from (partitions not written to
/// since keep them).
#[allow(clippy::too_many_arguments)]
pub fn checkpoint(
    tracker: &OffsetTracker,
    alerts: &RecordProducer,
    fronts: &RecordProducer,
    process: usize,
    previous: &BTreeMap<i32, i64>,
    frontier: u64,
    margin: u64,
    store: &CheckpointStore,
) {
    let result = (|| -> Result<Checkpoint, RecoveryError> {
        // Flush first: then every record sent so far has its offset, and records
        // at or after F not yet sent land after them.
        alerts.flush(Duration::from_secs(5))?;
        let c = Checkpoint {
            frontier,
            offsets: tracker.resume_offsets(frontier.saturating_sub(margin) as i64),
            alerts_from: merge_alerts_from(previous, alerts.offsets_from(frontier)),
            taken_at: chrono::Utc::now().timestamp_millis(),
        };
        store.store(&c)?;
        // Tell the other processes (a restart resumes from their minimum).
        fronts.send(
            process_key(process).as_bytes(),
            c.frontier.to_string().as_bytes(),
            0,
        );
        fronts.flush(Duration::from_secs(5))?;
        Ok(c)
    })();
    match result {
        Ok(c) => tracing::debug!(frontier = c.frontier, offsets = ?c.offsets, "checkpoint"),
        Err(e) => tracing::warn!(error = %e, "checkpoint skipped (will retry)"),
    }
}

/// Per alerts partition where records at or after the frontier begin: the
/// producer's answer where it wrote, the previous checkpoint's elsewhere.
fn merge_alerts_from(
    previous: &BTreeMap<i32, i64>,
    written: BTreeMap<i32, i64>,
) -> BTreeMap<i32, i64> {
    let mut out = previous.clone();
    out.extend(written);
    out
}

/// The identity of an alert record, independent of fields a replay may compute
/// slightly differently (explanations): id, status and suppressed count.
pub fn identity(a: &Alert) -> String {
    format!("{}|{:?}|{}", a.id, a.status, a.suppressed_count)
}

/// [`identity`] of an alert record as the topic holds it; `None` when it is
/// not an alert.
pub fn identity_of_json(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Alert>(bytes)
        .ok()
        .map(|a| identity(&a))
}

/// Alert records already on the alerts topic at or after where a process
/// resumes: each is skipped once when the replay produces it again.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SkipSet(HashSet<String>);

impl SkipSet {
    /// The set of the records read back from the alerts topic (records that are
    /// not alerts are not in it).
    pub fn from_records(records: &[TopicRecord]) -> SkipSet {
        SkipSet(
            records
                .iter()
                .filter_map(|r| identity_of_json(&r.payload))
                .collect(),
        )
    }

    /// Records in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty (nothing to skip).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `a` is already on the topic; it is then taken out of the set, so
    /// it is skipped once.
    pub fn take(&mut self, a: &Alert) -> bool {
        !self.0.is_empty() && self.0.remove(&identity(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prognos_dataflows::config::Severity;
    use prognos_dataflows::records::{AlertStatus, AlertType};

    fn store() -> (tempfile::TempDir, CheckpointStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = CheckpointStore::open(dir.path(), 0, "scada", "alerts").expect("open");
        (dir, s)
    }

    fn ckpt(frontier: u64, offset: i64) -> Checkpoint {
        Checkpoint {
            frontier,
            offsets: BTreeMap::from([(0, offset), (1, offset + 100)]),
            alerts_from: BTreeMap::from([(0, offset / 2)]),
            taken_at: 1_700_000_000_000 + frontier as i64,
        }
    }

    #[test]
    fn a_stored_checkpoint_loads_back_unchanged() {
        let (dir, s) = store();
        let c = ckpt(5_000, 42);
        s.store(&c).expect("store");
        s.flush().expect("flush");
        drop(s);
        let s = CheckpointStore::open(dir.path(), 0, "scada", "alerts").expect("reopen");
        assert_eq!(s.history().expect("history"), BTreeMap::from([(5_000, c)]));
    }

    #[test]
    fn checkpoints_of_other_topics_are_apart() {
        let (dir, s) = store();
        s.store(&ckpt(1_000, 1)).expect("store");
        drop(s);
        let other = CheckpointStore::open(dir.path(), 0, "scada", "other").expect("open");
        assert!(other.history().expect("history").is_empty());
        other.store(&ckpt(2_000, 2)).expect("store");
        drop(other);
        let s = CheckpointStore::open(dir.path(), 0, "scada", "alerts").expect("reopen");
        assert_eq!(
            s.history().expect("history").keys().collect::<Vec<_>>(),
            [&1_000]
        );
    }

    #[test]
    fn the_history_keeps_the_newest_checkpoints() {
        let (_dir, s) = store();
        for f in 1..=(HISTORY as u64 + 3) {
            s.store(&ckpt(f, f as i64)).expect("store");
        }
        let h = s.history().expect("history");
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h.keys().next(), Some(&4));
        assert_eq!(h.keys().next_back(), Some(&(HISTORY as u64 + 3)));
    }

    #[test]
    fn a_garbled_checkpoint_is_an_error_naming_its_key() {
        let (_dir, s) = store();
        s.store(&ckpt(1_000, 1)).expect("store");
        s.insert_raw(2_000, b"{\"frontier\": 2000, \"offs");
        match s.history() {
            Err(RecoveryError::Garbled { key, .. }) => {
                assert_eq!(key, format!("scada->alerts/{:020}", 2_000))
            }
            other => panic!("expected a garbled checkpoint, got {other:?}"),
        }
    }

    #[test]
    fn without_a_checkpoint_a_process_starts_from_the_beginning() {
        let published = BTreeMap::from([(process_key(1), 9_000)]);
        assert_eq!(plan(&BTreeMap::new(), &published, 0, 2), Resume::default());
    }

    #[test]
    fn a_single_process_resumes_from_its_latest_checkpoint() {
        let (_dir, s) = store();
        for (f, o) in [(1_000, 10), (3_000, 30), (2_000, 20)] {
            s.store(&ckpt(f, o)).expect("store");
        }
        let r = plan(&s.history().expect("history"), &BTreeMap::new(), 0, 1);
        assert_eq!(r.frontier, 3_000);
        assert_eq!(r.checkpoint, Some(ckpt(3_000, 30)));
    }

    #[test]
    fn the_cluster_resumes_from_the_lowest_frontier() {
        let (_dir, s) = store();
        for (f, o) in [(1_000, 10), (2_000, 20), (3_000, 30), (4_000, 40)] {
            s.store(&ckpt(f, o)).expect("store");
        }
        let history = s.history().expect("history");
        // Process 1 of 3 (this is 1): 0 published 3500, 2 published 2500.
        let published = BTreeMap::from([(process_key(0), 3_500), (process_key(2), 2_500)]);
        let r = plan(&history, &published, 1, 3);
        assert_eq!(r.frontier, 2_500);
        // Its newest checkpoint at or before 2500.
        assert_eq!(r.checkpoint, Some(ckpt(2_000, 20)));
        // This process's own published frontier is not a bound on itself.
        let published = BTreeMap::from([(process_key(1), 500), (process_key(0), 9_000)]);
        let r = plan(&history, &published, 1, 2);
        assert_eq!((r.frontier, r.checkpoint), (4_000, Some(ckpt(4_000, 40))));
    }

    #[test]
    fn a_process_that_never_published_holds_the_cluster_at_zero() {
        let (_dir, s) = store();
        s.store(&ckpt(1_000, 10)).expect("store");
        let published = BTreeMap::from([(process_key(0), 5_000)]);
        let r = plan(&s.history().expect("history"), &published, 0, 3);
        assert_eq!(r, Resume::default());
    }

    #[test]
    fn the_latest_published_frontier_of_a_process_wins() {
        let rec = |key: &str, payload: &str| TopicRecord {
            partition: 0,
            offset: 0,
            key: key.as_bytes().to_vec(),
            payload: payload.as_bytes().to_vec(),
        };
        let published = published_frontiers(&[
            rec("process-0", "100"),
            rec("process-1", "200"),
            rec("process-0", "300"),
            rec("process-1", "not a number"),
        ]);
        assert_eq!(
            published,
            BTreeMap::from([
                ("process-0".to_string(), 300),
                ("process-1".to_string(), 200)
            ])
        );
    }

    #[test]
    fn partitions_not_written_keep_the_previous_starting_points() {
        let previous = BTreeMap::from([(0, 10), (1, 20)]);
        let merged = merge_alerts_from(&previous, BTreeMap::from([(1, 25), (2, 5)]));
        assert_eq!(merged, BTreeMap::from([(0, 10), (1, 25), (2, 5)]));
    }

    fn alert(id: &str, status: AlertStatus, suppressed_count: u32) -> Alert {
        Alert {
            status,
            suppressed_count,
            // A replay may explain an alert differently: not part of its identity.
            message: format!("explained at {}", suppressed_count * 7),
            ..Alert::notification(
                id.into(),
                "acme",
                "m-1",
                AlertType::Predictive,
                Severity::Warning,
                "bearing",
                1_700_000_000_000,
            )
        }
    }

    #[test]
    fn the_skip_set_drops_alerts_already_delivered_and_only_those() {
        let delivered = [
            alert("a-1", AlertStatus::Active, 0),
            alert("a-2", AlertStatus::Active, 3),
        ];
        let mut records: Vec<TopicRecord> = delivered
            .iter()
            .enumerate()
            .map(|(i, a)| TopicRecord {
                partition: 0,
                offset: i as i64,
                key: b"acme".to_vec(),
                payload: serde_json::to_vec(a).expect("encode"),
            })
            .collect();
        records.push(TopicRecord {
            partition: 0,
            offset: 2,
            key: b"acme".to_vec(),
            payload: b"not an alert".to_vec(),
        });
        let mut skip = SkipSet::from_records(&records);
        assert_eq!(skip.len(), 2);
        // Same id, another status or suppressed count: a new record.
        assert!(!skip.take(&alert("a-1", AlertStatus::Resolved, 0)));
        assert!(!skip.take(&alert("a-2", AlertStatus::Active, 4)));
        assert!(!skip.take(&alert("a-3", AlertStatus::Active, 0)));
        // Delivered ones: skipped once each.
        let mut replayed = delivered[1].clone();
        replayed.message = "explained otherwise".into();
        assert!(skip.take(&replayed));
        assert!(!skip.take(&delivered[1]));
        assert!(skip.take(&delivered[0]));
        assert!(skip.is_empty());
        assert!(!skip.take(&delivered[0]));
    }
}
