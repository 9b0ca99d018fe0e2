//! The alert store (sled): the dataflow's alert stream grouped into alerts with a
//! lifecycle, operator actions, queries, statistics and the feedback export.
//!
//! # Semantics
//! The stream ([`Alert`] records) holds *notifications* (`status: ACTIVE`) and
//! *resolutions* (`status: RESOLVED`), each with a stable id; any record may be
//! delivered again (replay), and a notification is re-emitted with the same id and
//! a larger `suppressedCount` when its dedup window closes. [`AlertStore::apply`]:
//! - **Grouping.** A notification whose dedup key (org, machine, component, type)
//!   has no open alert — none yet, or the key's latest alert is RESOLVED — creates a
//!   stored alert: id, `ts`, `createdAt` from it, ACTIVE ([`ChangeKind::Created`]).
//!   Further notifications of the key while that alert is open are grouped into it
//!   ([`ChangeKind::Updated`]): `notificationCount` + 1; `lastTs` = the latest event
//!   time; `probability`, `confidence`, `severity` = the highest seen (the worst
//!   case is what an operator needs); `timeToFailure`, `modelVersion`, `rule`,
//!   `message`, `topFeatures` = those of the latest notification by event time (the
//!   current estimate); `suppressedCount` = the sum over its notifications of each
//!   one's largest `suppressedCount` seen. `id`, `ts` and `createdAt` never change.
//! - **Re-delivery.** Every applied record's id is remembered (`org \0 id` → the
//!   stored alert it went to and its counted `suppressedCount`). A seen record is a
//!   no-op (`None`), except a notification with a larger `suppressedCount`, which
//!   replaces its own earlier contribution (`Updated`). Re-delivery never touches
//!   status, acknowledgement or feedback.
//! - **Resolution.** A new resolution resolves its key's open alert (ACTIVE or
//!   ACKNOWLEDGED → RESOLVED, `resolvedAt` = the resolution's `resolvedAt`, else its
//!   `ts`; `resolvedBy` stays null; [`ChangeKind::Resolved`]). With no open alert, or
//!   when the open alert started after the resolution's `ts` (a late resolution of
//!   an earlier episode), it is a no-op, still remembered so that a replay never
//!   resolves a later episode with it.
//! - **Operators.** [`AlertStore::acknowledge`]: ACTIVE → ACKNOWLEDGED;
//!   [`AlertStore::resolve`]: ACTIVE | ACKNOWLEDGED → RESOLVED; anything else is
//!   [`StoreError::InvalidTransition`]. [`AlertStore::feedback`] works in every state
//!   and overwrites (latest wins, with who, when and comment). Every operator
//!   action names the org; an alert of another org is [`StoreError::NotFound`].
//! - **Sequence numbers.** Every change takes the next store sequence number (a
//!   counter in the `alerts_meta` tree, updated in the change's transaction, so
//!   numbers are gap-free and survive restarts). The change log keeps one entry per
//!   alert, at its latest number, so [`AlertStore::changes_since`] returns the latest
//!   state of each alert changed after a cursor, in sequence order.
//! - **Time.** An alert's time for queries, statistics and trends is `ts` (event
//!   time of its first notification). Durations: time to acknowledge is
//!   `acknowledgedAt − createdAt` (both wall clock); time to resolve is
//!   `resolvedAt − createdAt` when an operator resolved it (wall clock) and
//!   `resolvedAt − ts` when the dataflow did (both event time), so a replayed
//!   history never mixes clocks.
//!
//! # Trees (all in the caller's `sled::Db`, all named `alerts*`)
//! | tree | key | value |
//! |---|---|---|
//! | `alerts` | `org \0 ts_be \0 id` | [`StoredAlert`] JSON |
//! | `alerts_ids` | `org \0 id` | primary key |
//! | `alerts_seen` | `org \0 record id` | which alert it went to, counted suppressed count |
//! | `alerts_open` | `org \0 machine \0 component \0 type \0` | id of the key's latest alert |
//! | `alerts_by_component` | `org \0 component \0 ts_be \0 id` | empty |
//! | `alerts_by_type` | `org \0 C/W/P \0 ts_be \0 id` | empty |
//! | `alerts_feedback` | `org \0 ts_be \0 id` (alerts with feedback) | empty |
//! | `alerts_changes` | `seq_be` | primary key |
//! | `alerts_changes_by_org` | `org \0 seq_be` | primary key |
//! | `alerts_meta` | `seq` | last sequence number |
//!
//! `ts_be` is the event time with its sign bit flipped, big-endian, so an org's
//! time range is one sled range scan, newest first by iterating backwards (ties by
//! id bytes). Component and type never change for an alert, so their indexes are
//! written once; a query with a component filter scans the component index, else
//! with a type filter the type index, else the primary tree; the remaining filters
//! (type after component, status) are checked on the record. Status is filtered,
//! not indexed: it changes, and an org's range is what bounds the scan. A page
//! ends with a [`PageCursor`] `(ts, id)`: the next page starts strictly after it,
//! so pages never skip or repeat while alerts arrive or change status; every page
//! also carries the total count of matches (one pass over the range).
//! Every change is one sled transaction over all the trees, so a crash never leaves
//! an index pointing nowhere. Operator actions (acknowledge, resolve, feedback)
//! are flushed before they return, so what the API confirms survives a crash
//! (+0.2 to 0.6 ms each on ext4); records of the alert stream are not fsynced one by one:
//! call [`AlertStore::flush`] when durability matters (the sink after a batch).
//! Org, machine, component and ids must not contain NUL (they are key separators):
//! such a record is [`StoreError::InvalidRecord`].

mod apply;
mod keys;
mod query;
mod record;

pub use query::{AlertPage, AlertQuery, AlertStats, DailyTrend, PageCursor};
pub use record::{Change, ChangeKind, StoredAlert, severity_str, status_str};

#[cfg(doc)]
use prognos_dataflows::records::Alert;
use prognos_dataflows::records::AlertStatus;
use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};

/// Why an alert store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("alert store I/O")]
    Storage(#[source] sled::Error),
    /// A stored value does not parse.
    #[error("alert store record {key} is unreadable")]
    Corrupt {
        /// The key, NULs shown as `\0`.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// An index entry names an alert that is not stored.
    #[error("alert store index entry {key} points to a missing alert")]
    Dangling {
        /// The key of the missing alert, NULs shown as `\0`.
        key: String,
    },
    /// No such alert in this org (also for an alert of another org).
    #[error("org {org} has no alert {id}")]
    NotFound {
        /// Org asked.
        org: String,
        /// Alert id asked.
        id: String,
    },
    /// The lifecycle does not allow the action in the alert's state.
    #[error("alert {id} is {}, it cannot become {}", status_str(*from), status_str(*to))]
    InvalidTransition {
        /// Alert id.
        id: String,
        /// Its status.
        from: AlertStatus,
        /// The status asked for.
        to: AlertStatus,
    },
    /// A record of the alert stream that the store cannot take.
    #[error("alert record {id} of org {org}: {reason}")]
    InvalidRecord {
        /// Org of the record.
        org: String,
        /// Id of the record.
        id: String,
        /// Why.
        reason: &'static str,
    },
    /// Writing the feedback export failed.
    #[error("writing the feedback export")]
    Export(#[source] std::io::Error),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Storage(e)
    }
}

/// Result of the store's operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// Indexes into `AlertStore::trees` (and into a transaction's view). The primary
// tree comes first: sled commits a transaction's trees in this order, so a reader
// outside the transaction never meets an index entry before the alert it names.
const PRIMARY: usize = 0;
const IDS: usize = 1;
const SEEN: usize = 2;
const OPEN: usize = 3;
const BY_COMPONENT: usize = 4;
const BY_TYPE: usize = 5;
const FEEDBACK: usize = 6;
const CHANGES: usize = 7;
const CHANGES_BY_ORG: usize = 8;
const META: usize = 9;
const TREE_NAMES: [&str; 10] = [
    "alerts",
    "alerts_ids",
    "alerts_seen",
    "alerts_open",
    "alerts_by_component",
    "alerts_by_type",
    "alerts_feedback",
    "alerts_changes",
    "alerts_changes_by_org",
    "alerts_meta",
];
const SEQ_KEY: &[u8] = b"seq";

/// What the store remembers of an applied record (`alerts_seen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    /// The stored alert it was grouped into or resolved; `None` for a no-op resolution.
    alert: Option<String>,
    /// The suppressed count it contributes (its largest seen).
    suppressed: u32,
    /// It was a resolution.
    resolution: bool,
}

/// The alert store over the trees `alerts*` of a sled database. Cheap to clone;
/// every clone sees the same trees.
#[derive(Clone)]
pub struct AlertStore {
    trees: Vec<sled::Tree>,
}

fn show_key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).replace('\0', "\\0")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|source| StoreError::Corrupt {
        key: show_key(key),
        source,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records serialize (no maps with non-string keys)")
}

type Tx = Vec<TransactionalTree>;
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

fn abort<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

impl AlertStore {
    /// Open the alert trees of `db` (the controller's store at `<data-dir>/store`).
    pub fn open(db: &sled::Db) -> Result<AlertStore> {
        let trees = TREE_NAMES
            .iter()
            .map(|n| db.open_tree(n))
            .collect::<std::result::Result<_, _>>()?;
        Ok(AlertStore { trees })
    }

    /// Make every change so far durable.
    pub fn flush(&self) -> Result<()> {
        // All trees share one log: flushing one flushes the database.
        self.trees[PRIMARY].flush()?;
        Ok(())
    }

    /// One alert of `org`.
    pub fn get(&self, org: &str, id: &str) -> Result<StoredAlert> {
        let not_found = || StoreError::NotFound {
            org: org.into(),
            id: id.into(),
        };
        let pk = self.trees[IDS]
            .get(keys::org_id(org, id))?
            .ok_or_else(not_found)?;
        let v = self.trees[PRIMARY].get(&pk)?.ok_or_else(not_found)?;
        decode(&pk, &v)
    }

    /// The sequence number of the latest change (0 before any).
    pub fn last_seq(&self) -> Result<u64> {
        Ok(self.trees[META]
            .get(SEQ_KEY)?
            .and_then(|v| keys::seq_of(&v))
            .unwrap_or(0))
    }

    /// Run `f` as one transaction over all the alert trees.
    fn txn<T>(&self, f: impl Fn(&Tx) -> TxResult<T>) -> Result<T> {
        self.trees[..].transaction(f).map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Storage(e),
        })
    }
}

#[cfg(test)]
mod tests;
