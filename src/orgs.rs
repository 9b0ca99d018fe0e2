//! Organization configurations changed through the API (`/api/orgs`), kept in
//! the store's `org_configs` tree. `prognos run` lays them over the file's
//! `[orgs.<id>]` tables at start ([`overlay`]); while it runs, only the
//! prediction thresholds of a change take effect at once (through the
//! activation log, in event time) — see `api/orgs.rs` for what applies when.

use prognos_dataflows::config::{Config, ConfigError, OrgConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A configuration stored through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredOrg {
    /// Organization id.
    pub id: String,
    /// Its `[orgs.<id>]` table.
    pub config: OrgConfig,
    /// When it was stored (ms).
    pub updated_at: i64,
    /// Who stored it.
    pub updated_by: String,
}

/// Why the org store failed.
#[derive(Debug, thiserror::Error)]
pub enum OrgStoreError {
    /// sled.
    #[error("org store")]
    Sled(#[from] sled::Error),
    /// The snapshot file could not be written.
    #[error("cannot write {}", path.display())]
    Snapshot {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored record that does not parse (written by another version?).
    #[error("stored configuration of org `{id}` does not parse")]
    Corrupt {
        /// The org.
        id: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The `org_configs` tree.
#[derive(Clone)]
pub struct OrgStore {
    db: sled::Db,
    tree: sled::Tree,
    snapshot: Option<std::path::PathBuf>,
}

/// The file in the data dir that mirrors the stored configurations, so that
/// commands run beside the service (`prognos train`, `prognos history`) use the
/// configuration the service uses without opening its store (sled is
/// single-process).
pub const SNAPSHOT_FILE: &str = "org_configs.json";

impl OrgStore {
    /// Open the tree in `db`.
    pub fn open(db: &sled::Db) -> Result<OrgStore, OrgStoreError> {
        Ok(OrgStore {
            db: db.clone(),
            tree: db.open_tree("org_configs")?,
            snapshot: None,
        })
    }

    /// Mirror every change into `<data_dir>/org_configs.json` (written now too).
    pub fn with_snapshot(mut self, data_dir: &std::path::Path) -> Result<OrgStore, OrgStoreError> {
        self.snapshot = Some(data_dir.join(SNAPSHOT_FILE));
        self.write_snapshot()?;
        Ok(self)
    }

    fn write_snapshot(&self) -> Result<(), OrgStoreError> {
        let Some(path) = &self.snapshot else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&self.list()?).expect("org configs serialize");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|source| OrgStoreError::Snapshot {
                path: path.clone(),
                source,
            })
    }

    /// Every stored configuration, by id.
    pub fn list(&self) -> Result<Vec<StoredOrg>, OrgStoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k).into_owned();
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|source| OrgStoreError::Corrupt { id, source })?,
            );
        }
        Ok(out)
    }

    /// Store (insert or replace) and make it durable.
    pub fn put(&self, org: &StoredOrg) -> Result<(), OrgStoreError> {
        let bytes = serde_json::to_vec(org).expect("org configs serialize");
        self.tree.insert(org.id.as_bytes(), bytes)?;
        self.db.flush()?;
        self.write_snapshot()
    }
}

/// Keys a running org applies without a restart.
pub const LIVE_KEYS: [&str; 4] = [
    "prediction.failure_threshold",
    "prediction.for_s",
    "prediction.immediate_threshold",
    "prediction.confidence_threshold",
];

/// Dotted keys whose values differ (prediction settings one by one).
pub fn changed_keys(old: &OrgConfig, new: &OrgConfig) -> Vec<String> {
    let (a, b) = (json!(old), json!(new));
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        if a.get(k) == b.get(k) {
            continue;
        }
        match (
            k.as_str(),
            a.get(k).and_then(Value::as_object),
            b.get(k).and_then(Value::as_object),
        ) {
            ("prediction", Some(pa), Some(pb)) => {
                let mut sub: Vec<&String> = pa.keys().chain(pb.keys()).collect();
                sub.sort();
                sub.dedup();
                out.extend(
                    sub.into_iter()
                        .filter(|s| pa.get(*s) != pb.get(*s))
                        .map(|s| format!("prediction.{s}")),
                );
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// The configuration a service on `data_dir` runs with: `base` (file +
/// environment) with the configurations stored through `/api/orgs` laid over it,
/// read from the snapshot the service keeps in the data dir.
pub fn effective_config(base: Config, data_dir: &std::path::Path) -> anyhow::Result<Config> {
    let path = data_dir.join(SNAPSHOT_FILE);
    let stored: Vec<StoredOrg> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| anyhow::anyhow!("{} does not parse: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    };
    overlay(base, &stored).map_err(|e| {
        anyhow::anyhow!(
            "the stored organization configurations ({}) do not fit the configuration file: {e}",
            path.display()
        )
    })
}

/// `base` with every stored org configuration in place of (or beside) the
/// file's, validated as a whole (the failing key is named).
pub fn overlay(mut base: Config, stored: &[StoredOrg]) -> Result<Config, ConfigError> {
    for s in stored {
        base.orgs.insert(s.id.clone(), s.config.clone());
    }
    base.validate()?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_orgs_replace_and_extend_the_file_and_are_validated() {
        let base = Config::from_toml_str(crate::settings::EXAMPLE_CONFIG).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = OrgStore::open(&db).unwrap();
        let mut acme = base.orgs["acme-heat"].clone();
        acme.prediction.failure_threshold = 0.6;
        let copy = StoredOrg {
            id: "new-org".into(),
            config: base.orgs["cobalt-thermal"].clone(),
            updated_at: 2,
            updated_by: "root".into(),
        };
        store
            .put(&StoredOrg {
                id: "acme-heat".into(),
                config: acme,
                updated_at: 1,
                updated_by: "root".into(),
            })
            .unwrap();
        store.put(&copy).unwrap();
        let stored = OrgStore::open(&db).unwrap().list().unwrap();
        assert_eq!(stored.len(), 2);
        let c = overlay(base.clone(), &stored).unwrap();
        assert_eq!(c.orgs.len(), 4);
        assert_eq!(c.orgs["acme-heat"].prediction.failure_threshold, 0.6);
        assert_eq!(c.orgs["borealis-forge"], base.orgs["borealis-forge"]);

        let mut bad = copy;
        bad.config.prediction.confidence_threshold = 7.0;
        let e = overlay(base, &[bad]).unwrap_err();
        assert!(
            e.key.starts_with("orgs.new-org.prediction"),
            "names the key: {e}"
        );
    }
}
