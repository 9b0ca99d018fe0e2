//! The model registry (sled): versions per org with their metrics (the seed's
//! ModelMetrics), training runs (TrainingLog), the activation log in event time,
//! the active version, prediction threshold changes in event time, and retention
//! of version directories.
//!
//! Trees: `models` (`org\0version` → [`ModelRecord`]), `activations`
//! (`org\0effective_ts` → [`Activation`]), `thresholds` (`org\0effective_ts` →
//! [`ThresholdChange`]), `runs` (`run id` → [`TrainingRun`]).

use prognos_dataflows::models::activations::{
    Activation, Activations, ThresholdChange, Thresholds,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store could not be opened or written.
    #[error("model registry at {}: {reason}", path.display())]
    Store {
        /// The sled directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A version's metadata could not be read.
    #[error("version {}: {reason}", dir.display())]
    Metadata {
        /// Version directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The version does not exist.
    #[error("org {org} has no version `{version}`")]
    NoSuchVersion {
        /// Org.
        org: String,
        /// Version.
        version: String,
    },
    /// Nothing to roll back to.
    #[error("org {org} has no previous version to roll back to")]
    NothingToRollBack {
        /// Org.
        org: String,
    },
}

/// A registered version (the seed's ModelMetrics plus where it lives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    /// Organization.
    pub organization_id: String,
    /// Version label.
    pub version: String,
    /// Directory with the ONNX files and metadata.
    pub dir: PathBuf,
    /// When it was registered (ms).
    pub created_at: i64,
    /// Validation metrics from `metadata.json`.
    pub metrics: serde_json::Value,
    /// Number of features.
    pub feature_count: usize,
    /// Validation range `[validationStart, validationEnd]` (RFC 3339), for the gate.
    pub split: serde_json::Value,
    /// The threshold curve on the validation rows and the point chosen for the
    /// org's false-alarm budget (`metadata.json`'s `operatingPoint`; null for
    /// versions trained before operating points).
    #[serde(default)]
    pub operating_point: serde_json::Value,
}

/// A training run (the seed's TrainingLog).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRun {
    /// Run id.
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// `RUNNING`, `COMPLETED`, `FAILED`, `REJECTED` (did not beat the active
    /// model), `SKIPPED` (too little history or no failure in it),
    /// `INTERRUPTED` (the service stopped during the run).
    pub status: String,
    /// Version produced.
    pub version: String,
    /// Start (ms).
    pub started_at: i64,
    /// End (ms).
    pub completed_at: Option<i64>,
    /// What was asked (inputs, tune, force).
    pub config: serde_json::Value,
    /// Validation metrics.
    pub metrics: Option<serde_json::Value>,
    /// Why it failed.
    pub error_message: Option<String>,
}

/// The registry.
pub struct Registry {
    path: PathBuf,
    models: sled::Tree,
    activations: sled::Tree,
    thresholds: sled::Tree,
    runs: sled::Tree,
    db: sled::Db,
}

fn key(org: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = org.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(rest);
    k
}

/// Make the store readable by its owner only (it holds the users' password
/// hashes and the audit log): the folder 0700, the files in it 0600.
fn private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Order-preserving bytes of an i64 (sign bit flipped, big-endian).
fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

impl Registry {
    /// Open (or create) the registry in `dir` (the controller's store).
    pub fn open(dir: &Path) -> Result<Registry, RegistryError> {
        let err = |e: sled::Error| RegistryError::Store {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        };
        let db = sled::open(dir).map_err(err)?;
        private(dir).map_err(|e| RegistryError::Store {
            path: dir.to_path_buf(),
            reason: format!("cannot make it private to its owner: {e}"),
        })?;
        Ok(Registry {
            path: dir.to_path_buf(),
            models: db.open_tree("models").map_err(err)?,
            activations: db.open_tree("activations").map_err(err)?,
            thresholds: db.open_tree("thresholds").map_err(err)?,
            runs: db.open_tree("runs").map_err(err)?,
            db,
        })
    }

    /// The sled database the registry lives in (the alert store shares it: sled
    /// is single-process, one `Db` per data dir).
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    fn store_err(&self, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Store {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Register the version in `dir` (its `metadata.json` names org and version).
    pub fn register(&self, dir: &Path, now_ms: i64) -> Result<ModelRecord, RegistryError> {
        let meta_err = |reason: String| RegistryError::Metadata {
            dir: dir.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(dir.join("metadata.json"))
            .map_err(|e| meta_err(e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| meta_err(e.to_string()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let rec = ModelRecord {
            organization_id: field("organizationId")
                .ok_or_else(|| meta_err("no organizationId".into()))?,
            version: field("version").ok_or_else(|| meta_err("no version".into()))?,
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            created_at: now_ms,
            metrics: v.get("metrics").cloned().unwrap_or_default(),
            feature_count: v
                .get("featureNames")
                .and_then(|f| f.as_array())
                .map_or(0, |a| a.len()),
            split: v.get("split").cloned().unwrap_or_default(),
            operating_point: v.get("operatingPoint").cloned().unwrap_or_default(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| self.store_err(e))?;
        self.models
            .insert(key(&rec.organization_id, rec.version.as_bytes()), bytes)
            .map_err(|e| self.store_err(e))?;
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(rec)
    }

    /// Versions of `org`, oldest first.
    pub fn versions(&self, org: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        let mut out: Vec<ModelRecord> = Vec::new();
        for kv in self.models.scan_prefix(key(org, b"")) {
            let (_, v) = kv.map_err(|e| self.store_err(e))?;
            out.push(serde_json::from_slice(&v).map_err(|e| self.store_err(e))?);
        }
        out.sort_by_key(|r| (r.created_at, r.version.clone()));
        Ok(out)
    }

    /// One version.
    pub fn version(&self, org: &str, version: &str) -> Result<ModelRecord, RegistryError> {
        let v = self
            .models
            .get(key(org, version.as_bytes()))
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| RegistryError::NoSuchVersion {
                org: org.into(),
                version: version.into(),
            })?;
        serde_json::from_slice(&v).map_err(|e| self.store_err(e))
    }

    /// Orgs with at least one version.
    pub fn orgs(&self) -> Result<Vec<String>, RegistryError> {
        let mut orgs: Vec<String> = Vec::new();
        for kv in self.models.iter() {
            let (k, _) = kv.map_err(|e| self.store_err(e))?;
            let org = String::from_utf8_lossy(k.split(|b| *b == 0).next().unwrap_or_default())
                .into_owned();
            if orgs.last() != Some(&org) {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    /// The whole activation log (every org), in `(org, effective_ts)` order.
    pub fn activation_log(&self) -> Result<Vec<Activation>, RegistryError> {
        self.read_tree(&self.activations)
    }

    /// Every value of `tree`, in key order.
    fn read_tree<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
    ) -> Result<Vec<T>, RegistryError> {
        tree.iter()
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.store_err(e))?;
                serde_json::from_slice(&v).map_err(|e| self.store_err(e))
            })
            .collect()
    }

    /// The version active for `org` now (its latest activation).
    pub fn active(&self, org: &str) -> Result<Option<String>, RegistryError> {
        Ok(self.last_activation(org)?.and_then(|a| a.version))
    }

    /// `org`'s latest activation, if any.
    fn last_activation(&self, org: &str) -> Result<Option<Activation>, RegistryError> {
        self.activations
            .scan_prefix(key(org, b""))
            .next_back()
            .transpose()
            .map_err(|e| self.store_err(e))?
            .map(|(_, v)| serde_json::from_slice(&v))
            .transpose()
            .map_err(|e| self.store_err(e))
    }

    /// Activate `version` for `org` through `live` (so it lands at or after the
    /// running operators' frontier), from `not_before`, and persist the record.
    /// The first activation of an org applies from the beginning of time, so a
    /// backtest over history uses it; a later one never shares the previous one's
    /// instant.
    pub fn activate(
        &self,
        org: &str,
        version: Option<&str>,
        not_before: i64,
        live: &Activations,
    ) -> Result<Activation, RegistryError> {
        if let Some(v) = version {
            self.version(org, v)?;
        }
        // Each activation gets its own instant (two in the same millisecond would
        // share a key and the log would lose one).
        let last = self.last_activation(org)?;
        let at = match last {
            None => i64::MIN,
            Some(l) => not_before.max(l.effective_ts.saturating_add(1)),
        };
        let a = live.activate(org, version.map(str::to_string), at);
        let bytes = serde_json::to_vec(&a).map_err(|e| self.store_err(e))?;
        self.activations
            .insert(key(org, &ts_key(a.effective_ts)), bytes)
            .map_err(|e| self.store_err(e))?;
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(a)
    }

    /// Change `org`'s prediction thresholds through `live` (so the change lands
    /// at or after the running operators' frontier), from `not_before`, and
    /// persist it. An org's first change also records `before` (what the
    /// configuration gave until then) from the beginning of time, so a restart or
    /// a replay — whose configuration already holds the new values — still
    /// scores the rows before the change with the old ones.
    pub fn set_thresholds(
        &self,
        org: &str,
        before: Thresholds,
        thresholds: Thresholds,
        not_before: i64,
        live: &Activations,
    ) -> Result<ThresholdChange, RegistryError> {
        let first = self
            .thresholds
            .scan_prefix(key(org, b""))
            .next()
            .transpose()
            .map_err(|e| self.store_err(e))?
            .is_none();
        if first {
            let base = ThresholdChange {
                organization_id: org.to_string(),
                effective_ts: i64::MIN,
                thresholds: before,
            };
            self.put_thresholds(&base)?;
            live.load_thresholds([base]);
        }
        let c = live.set_thresholds(org, thresholds, not_before);
        self.put_thresholds(&c)?;
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(c)
    }

    fn put_thresholds(&self, c: &ThresholdChange) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(c).map_err(|e| self.store_err(e))?;
        self.thresholds
            .insert(key(&c.organization_id, &ts_key(c.effective_ts)), bytes)
            .map_err(|e| self.store_err(e))?;
        Ok(())
    }

    /// Every persisted threshold change, in `(org, effective_ts)` order.
    pub fn threshold_log(&self) -> Result<Vec<ThresholdChange>, RegistryError> {
        self.read_tree(&self.thresholds)
    }

    /// The live log of a service starting on this registry: every activation
    /// and every threshold change recorded so far.
    pub fn live_log(&self) -> Result<Activations, RegistryError> {
        let live = Activations::from_log(self.activation_log()?);
        live.load_thresholds(self.threshold_log()?);
        Ok(live)
    }

    /// Re-activate the version that was active before the current one.
    pub fn rollback(
        &self,
        org: &str,
        not_before: i64,
        live: &Activations,
    ) -> Result<Activation, RegistryError> {
        let log: Vec<Activation> = self
            .activation_log()?
            .into_iter()
            .filter(|a| a.organization_id == org)
            .collect();
        let current = log.last().and_then(|a| a.version.clone());
        let previous = log
            .iter()
            .rev()
            .filter_map(|a| a.version.clone())
            .find(|v| Some(v) != current.as_ref())
            .ok_or_else(|| RegistryError::NothingToRollBack { org: org.into() })?;
        self.activate(org, Some(&previous), not_before, live)
    }

    /// Record (insert or update) a training run.
    pub fn record_run(&self, run: &TrainingRun) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec(run).map_err(|e| self.store_err(e))?;
        self.runs
            .insert(run.id.as_bytes(), bytes)
            .map_err(|e| self.store_err(e))?;
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(())
    }

    /// The number of `org`'s next version: one more than any version registered
    /// or any run recorded (a failed or interrupted run's number is never reused).
    pub fn next_version_number(&self, org: &str) -> Result<u64, RegistryError> {
        let num = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u64>().ok());
        let registered = self
            .versions(org)?
            .into_iter()
            .filter_map(|r| num(&r.version));
        let ran = self.runs(org)?.into_iter().filter_map(|r| num(&r.version));
        Ok(registered.chain(ran).max().unwrap_or(0) + 1)
    }

    /// Mark every run still `RUNNING` as `INTERRUPTED`: called at start, when no
    /// run of this store can be in progress (the store is single-process).
    /// Returns the runs marked.
    pub fn interrupt_running(&self, now_ms: i64) -> Result<Vec<TrainingRun>, RegistryError> {
        let mut out = Vec::new();
        for kv in self.runs.iter() {
            let (_, v) = kv.map_err(|e| self.store_err(e))?;
            let mut r: TrainingRun = serde_json::from_slice(&v).map_err(|e| self.store_err(e))?;
            if r.status == "RUNNING" {
                r.status = "INTERRUPTED".into();
                r.completed_at = Some(now_ms);
                r.error_message = Some("the process stopped during the run".into());
                self.record_run(&r)?;
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Training runs of `org`, newest first.
    pub fn runs(&self, org: &str) -> Result<Vec<TrainingRun>, RegistryError> {
        let mut out: Vec<TrainingRun> = Vec::new();
        for kv in self.runs.iter() {
            let (_, v) = kv.map_err(|e| self.store_err(e))?;
            let r: TrainingRun = serde_json::from_slice(&v).map_err(|e| self.store_err(e))?;
            if r.organization_id == org {
                out.push(r);
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        Ok(out)
    }

    /// Delete the directories of `org`'s versions beyond the newest `keep`, except
    /// any version in the activation log (it may still score a replay). Returns the
    /// versions removed.
    pub fn retain(&self, org: &str, keep: usize) -> Result<Vec<String>, RegistryError> {
        let referenced: std::collections::BTreeSet<String> = self
            .activation_log()?
            .into_iter()
            .filter(|a| a.organization_id == org)
            .filter_map(|a| a.version)
            .collect();
        let versions = self.versions(org)?;
        let mut removed = Vec::new();
        let n = versions.len();
        for r in versions.into_iter().take(n.saturating_sub(keep)) {
            if referenced.contains(&r.version) {
                continue;
            }
            let _ = std::fs::remove_dir_all(&r.dir);
            self.models
                .remove(key(org, r.version.as_bytes()))
                .map_err(|e| self.store_err(e))?;
            removed.push(r.version);
        }
        self.db.flush().map_err(|e| self.store_err(e))?;
        Ok(removed)
    }
}

/// Gate: does `candidate` beat `active`, both scored on the same validation rows?
/// Event recall at no more false alarms than the active model, then AUC.
pub fn beats(candidate: &serde_json::Value, active: &serde_json::Value) -> bool {
    let f = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let (cr, ar) = (f(candidate, "eventRecall"), f(active, "eventRecall"));
    let (cf, af) = (
        f(candidate, "falseAlarmsPerMachineDay"),
        f(active, "falseAlarmsPerMachineDay"),
    );
    let (ca, aa) = (f(candidate, "auc"), f(active, "auc"));
    // More false alarms (or an unknown rate) never wins.
    if cf.is_nan() || af.is_nan() || cf > af + 1e-9 {
        return false;
    }
    if cr > ar + 1e-9 {
        return true;
    }
    (cr - ar).abs() <= 1e-9 && ca > aa
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        {
            let r = Registry::open(&dir).unwrap();
            r.db().flush().unwrap();
        }
        // Even a store an older version left readable is closed at the next open.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _r = Registry::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        assert!(!files.is_empty());
        for f in files {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    fn version_dir(root: &Path, org: &str, v: &str, recall: f64) -> PathBuf {
        let d = root.join(org).join(v);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("metadata.json"),
            serde_json::json!({"organizationId": org, "version": v, "featureNames": ["a", "b"],
                "metrics": {"eventRecall": recall, "falseAlarmsPerMachineDay": 0.5, "auc": 0.9}})
            .to_string(),
        )
        .unwrap();
        d
    }

    #[test]
    fn threshold_changes_persist_with_the_values_they_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(&tmp.path().join("store")).unwrap();
        let live = Activations::default();
        let t = |f| Thresholds {
            failure_threshold: f,
            for_s: 30,
            immediate_threshold: None,
            confidence_threshold: 0.7,
        };
        // Operators have scored up to 7000.
        live.resolve_rows(0, 7_000, &[], &mut Vec::new(), None);
        let c1 = reg
            .set_thresholds("acme", t(0.6), t(0.8), 5_000, &live)
            .unwrap();
        assert_eq!(c1.effective_ts, 7_000);
        let c2 = reg
            .set_thresholds("acme", t(0.8), t(0.9), 9_000, &live)
            .unwrap();
        assert_eq!(c2.effective_ts, 9_000);
        let log = reg.threshold_log().unwrap();
        assert_eq!(
            log.iter()
                .map(|c| (c.effective_ts, c.thresholds.failure_threshold))
                .collect::<Vec<_>>(),
            [(i64::MIN, 0.6), (7_000, 0.8), (9_000, 0.9)],
            "the first change records what it replaced, once"
        );
        assert_eq!(log, live.threshold_log());
        drop(reg);
        let reg = Registry::open(&tmp.path().join("store")).unwrap();
        assert_eq!(reg.live_log().unwrap().threshold_log(), log);
    }

    #[test]
    fn register_activate_rollback_and_retain() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(&tmp.path().join("store")).unwrap();
        let live = Activations::default();
        for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
            reg.register(&version_dir(tmp.path(), "acme", v, 0.8), i as i64)
                .unwrap();
        }
        assert_eq!(reg.versions("acme").unwrap().len(), 3);
        assert_eq!(reg.orgs().unwrap(), vec!["acme".to_string()]);
        assert_eq!(reg.active("acme").unwrap(), None);

        let a1 = reg.activate("acme", Some("v1"), 5_000, &live).unwrap();
        assert_eq!(a1.effective_ts, i64::MIN, "the first model covers history");
        let a2 = reg.activate("acme", Some("v2"), 10_000, &live).unwrap();
        assert_eq!(a2.effective_ts, 10_000);
        assert_eq!(reg.active("acme").unwrap().as_deref(), Some("v2"));
        assert_eq!(live.version_at("acme", 9_999).as_deref(), Some("v1"));

        let back = reg.rollback("acme", 20_000, &live).unwrap();
        assert_eq!(back.version.as_deref(), Some("v1"));
        assert_eq!(reg.active("acme").unwrap().as_deref(), Some("v1"));
        assert_eq!(live.version_at("acme", 20_000).as_deref(), Some("v1"));
        assert_eq!(live.version_at("acme", 15_000).as_deref(), Some("v2"));

        assert!(matches!(
            reg.activate("acme", Some("nope"), 0, &live),
            Err(RegistryError::NoSuchVersion { .. })
        ));

        // Retain 1: v3 is newest; v1 and v2 are in the activation log, so nothing goes.
        assert!(reg.retain("acme", 1).unwrap().is_empty());
        reg.register(&version_dir(tmp.path(), "acme", "v4", 0.8), 9)
            .unwrap();
        let removed = reg.retain("acme", 1).unwrap();
        assert_eq!(removed, vec!["v3".to_string()]);
        assert!(!tmp.path().join("acme/v3").exists());

        // Reopening restores the same log (a replay scores identically).
        drop(reg);
        let reg = Registry::open(&tmp.path().join("store")).unwrap();
        let replay = Activations::from_log(reg.activation_log().unwrap());
        assert_eq!(replay.log(), live.log());
    }

    #[test]
    fn nothing_to_roll_back_to() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::open(&tmp.path().join("store")).unwrap();
        let live = Activations::default();
        reg.register(&version_dir(tmp.path(), "acme", "v1", 0.8), 0)
            .unwrap();
        reg.activate("acme", Some("v1"), 0, &live).unwrap();
        assert!(matches!(
            reg.rollback("acme", 1, &live),
            Err(RegistryError::NothingToRollBack { .. })
        ));
    }

    #[test]
    fn gate_prefers_recall_at_no_more_false_alarms_then_auc() {
        let m = |r: f64, f: f64, a: f64| serde_json::json!({"eventRecall": r, "falseAlarmsPerMachineDay": f, "auc": a});
        assert!(beats(&m(0.9, 0.5, 0.9), &m(0.8, 0.5, 0.95)));
        assert!(
            !beats(&m(0.9, 0.6, 0.9), &m(0.8, 0.5, 0.9)),
            "more false alarms never wins"
        );
        assert!(
            beats(&m(0.8, 0.4, 0.91), &m(0.8, 0.5, 0.9)),
            "tie on recall: AUC decides"
        );
        assert!(
            !beats(&m(0.8, 0.5, 0.9), &m(0.8, 0.5, 0.9)),
            "equal is not better"
        );
        assert!(!beats(&m(0.7, 0.1, 0.99), &m(0.8, 0.5, 0.9)));
    }
}
