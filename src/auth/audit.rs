//! The audit log: who did what to which org, and when (sled trees `audit`:
//! `ts_be id_be` → [`AuditEntry`] JSON, and `audit_by_org`: `org \0 ts_be id_be`
//! → empty). Entries are never changed or removed; reads are newest first in
//! pages with a `"<ts ms>:<id>"` cursor.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

/// One audited operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Unique, increasing within a store.
    pub id: u64,
    /// When (ms since the epoch, wall clock).
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub at: i64,
    /// Username, or `cli` for the command line.
    pub actor: String,
    /// The actor's role (`cli` for the command line).
    pub actor_role: String,
    /// The org acted on (`None` for operations outside any org).
    pub organization_id: Option<String>,
    /// What, e.g. `ml.deploy`, `ml.rollback`, `ml.train`, `users.add`.
    pub action: String,
    /// `ok`, `accepted` (started), or `error`.
    pub outcome: String,
    /// Parameters and results (version, job id, error message).
    pub detail: serde_json::Value,
}

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled failed.
    #[error("audit log I/O")]
    Storage(#[from] sled::Error),
    /// A stored entry does not parse.
    #[error("audit entry is unreadable")]
    Corrupt(#[source] serde_json::Error),
}

/// The actor and role of what the service does by itself (schedule, first
/// models, model loads).
pub const SYSTEM: &str = "system";
/// The role of a command run on the host (`prognos train`, `prognos models`).
pub const CLI_ROLE: &str = "cli";

/// The OS user running this command (`$USER`, else `$LOGNAME`, else the uid),
/// as an audit actor may carry it: at most 64 of `[A-Za-z0-9._-]`.
pub fn os_user() -> String {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|u| clean_os_user(&u))
        .find(|u| !u.is_empty());
    from_env.unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }))
}

/// `u` kept to the characters an actor may carry (at most 64).
pub fn clean_os_user(u: &str) -> String {
    u.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect()
}

/// The actor of a command run on the host: `cli:<os user>`.
pub fn cli_actor() -> String {
    format!("cli:{}", os_user())
}

/// Audit each load of a model version (the seed's MODEL_LOAD) as
/// `ml.model.load` by `system`, `ok` or `error`, at the time it ended;
/// `source` names the process (`run`, `worker-<i>`). A failed write is logged.
pub fn record_model_loads(
    log: &AuditLog,
    loads: &[prognos_dataflows::models::ModelLoadRecord],
    source: &str,
) {
    for r in loads {
        if let Err(e) = log.record(
            r.at_ms,
            SYSTEM,
            SYSTEM,
            Some(&r.org),
            "ml.model.load",
            if r.ok { "ok" } else { "error" },
            serde_json::json!({"version": r.version, "loadMs": r.load_ms, "bytes": r.bytes,
                "error": r.error, "process": source}),
        ) {
            tracing::error!(error = %e, org = %r.org, "cannot write the audit log");
        }
    }
}

/// Where a page ends (the next page starts after it).
pub fn cursor_of(e: &AuditEntry) -> String {
    format!("{}:{}", e.at, e.id)
}

/// Parse a cursor made by [`cursor_of`].
pub fn parse_cursor(s: &str) -> Option<(i64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn ts_be(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn suffix(at: i64, id: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&ts_be(at));
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn org_prefix(org: &str) -> Vec<u8> {
    let mut p = org.as_bytes().to_vec();
    p.push(0);
    p
}

/// The audit trees.
#[derive(Clone)]
pub struct AuditLog {
    db: sled::Db,
    all: sled::Tree,
    by_org: sled::Tree,
}

impl AuditLog {
    /// Open the audit trees of `db`.
    pub fn open(db: &sled::Db) -> Result<AuditLog, AuditError> {
        Ok(AuditLog {
            db: db.clone(),
            all: db.open_tree("audit")?,
            by_org: db.open_tree("audit_by_org")?,
        })
    }

    /// Append an entry (its `id` is assigned here) and make it durable.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        at: i64,
        actor: &str,
        actor_role: &str,
        org: Option<&str>,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<AuditEntry, AuditError> {
        let e = AuditEntry {
            id: self.db.generate_id()?,
            at,
            actor: actor.into(),
            actor_role: actor_role.into(),
            organization_id: org.map(str::to_string),
            action: action.into(),
            outcome: outcome.into(),
            detail,
        };
        let key = suffix(e.at, e.id);
        let bytes = serde_json::to_vec(&e).expect("audit entries serialize");
        (&self.all, &self.by_org)
            .transaction(|(all, by_org)| {
                all.insert(&key[..], bytes.as_slice())?;
                if let Some(o) = &e.organization_id {
                    by_org.insert([org_prefix(o).as_slice(), &key].concat(), &[][..])?;
                }
                Ok(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(s) => AuditError::Storage(s),
                TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
            })?;
        self.all.flush()?;
        Ok(e)
    }

    /// Newest first: up to `limit` entries of `org` (every entry when `None`)
    /// older than `after`, and the cursor of the next page.
    pub fn list(
        &self,
        org: Option<&str>,
        limit: usize,
        after: Option<(i64, u64)>,
    ) -> Result<(Vec<AuditEntry>, Option<String>), AuditError> {
        let (tree, prefix) = match org {
            Some(o) => (&self.by_org, org_prefix(o)),
            None => (&self.all, Vec::new()),
        };
        let hi = match after {
            Some((at, id)) => [prefix.as_slice(), &suffix(at, id)].concat(),
            None => {
                let mut hi = prefix.clone();
                hi.extend_from_slice(&[0xff; 17]);
                hi
            }
        };
        let mut out = Vec::new();
        let mut more = false;
        for kv in tree.range(prefix.clone()..hi).rev() {
            let (k, v) = kv?;
            if out.len() == limit {
                more = true;
                break;
            }
            let v = match org {
                Some(_) => match self.all.get(&k[prefix.len()..])? {
                    Some(v) => v,
                    None => continue,
                },
                None => v,
            };
            out.push(serde_json::from_slice(&v).map_err(AuditError::Corrupt)?);
        }
        let next = if more {
            out.last().map(cursor_of)
        } else {
            None
        };
        Ok((out, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_newest_first_per_org() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = AuditLog::open(&db).unwrap();
        for i in 0..5 {
            let org = if i % 2 == 0 { "a" } else { "b" };
            log.record(
                1000 + i,
                "ann",
                "admin",
                Some(org),
                "ml.deploy",
                "ok",
                serde_json::json!({"i": i}),
            )
            .unwrap();
        }
        log.record(
            2000,
            "cli",
            "cli",
            None,
            "users.add",
            "ok",
            serde_json::json!({}),
        )
        .unwrap();
        let (all, next) = log.list(None, 10, None).unwrap();
        assert_eq!(all.len(), 6);
        assert!(next.is_none());
        assert_eq!(all[0].action, "users.add");
        let (a1, next) = log.list(Some("a"), 2, None).unwrap();
        assert_eq!(
            a1.iter().map(|e| e.at).collect::<Vec<_>>(),
            vec![1004, 1002]
        );
        let (a2, next2) = log
            .list(Some("a"), 2, parse_cursor(&next.unwrap()))
            .unwrap();
        assert_eq!(a2.iter().map(|e| e.at).collect::<Vec<_>>(), vec![1000]);
        assert!(next2.is_none());
        let (b, _) = log.list(Some("b"), 10, None).unwrap();
        assert!(b.iter().all(|e| e.organization_id.as_deref() == Some("b")));
        assert_eq!(b.len(), 2);
    }
}
