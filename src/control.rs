//! The control topic (compacted, one partition): what `prognos controller`
//! publishes and every worker follows.
//!
//! | record | key | a worker applies it |
//! |---|---|---|
//! | model activation | `activation/<org>/<effectiveTs>` | live, from its effective ts (or the worker's frontier, if later) |
//! | threshold change | `thresholds/<org>/<effectiveTs>` | live, the same way |
//! | org configuration | `config/<org>` | at its next start: the latest record of each org replaces the file's `[orgs.<id>]` |
//!
//! Keys make compaction keep every activation and threshold change (a replay
//! needs the whole log) and only the latest configuration of an org.

use crate::orgs::{LIVE_KEYS, StoredOrg, changed_keys};
use prognos_dataflows::config::Config;
use prognos_dataflows::models::activations::{Activation, Activations, ThresholdChange};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One record of the control topic (JSON, `kind` names the variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ControlRecord {
    /// A model version (or none) for an org from an event time on.
    Activation(Activation),
    /// An org's prediction thresholds from an event time on.
    Thresholds(ThresholdChange),
    /// An org's configuration as stored through `/api/orgs`.
    OrgConfig(Box<StoredOrg>),
}

impl ControlRecord {
    /// The record's key on the topic.
    pub fn key(&self) -> String {
        match self {
            ControlRecord::Activation(a) => {
                format!("activation/{}/{}", a.organization_id, a.effective_ts)
            }
            ControlRecord::Thresholds(c) => {
                format!("thresholds/{}/{}", c.organization_id, c.effective_ts)
            }
            ControlRecord::OrgConfig(o) => format!("config/{}", o.id),
        }
    }
}

/// What a worker does with the control topic: it lays the configurations over
/// its file at start, then applies activations and threshold changes live and
/// reports configuration changes that wait for its next start.
pub struct ControlFollower {
    activations: std::sync::Arc<Activations>,
    /// The configuration the dataflow runs with.
    running: Config,
    /// Orgs whose stored configuration differs from `running` in keys that
    /// apply at the next start, with those keys.
    pending: BTreeMap<String, Vec<String>>,
}

impl ControlFollower {
    /// Start from what the topic holds now: `base` (the file's configuration)
    /// with the latest configuration record of each org laid over it, and every
    /// activation and threshold change applied to `activations`.
    pub fn start(
        base: Config,
        records: impl IntoIterator<Item = ControlRecord>,
        activations: std::sync::Arc<Activations>,
    ) -> Result<ControlFollower, prognos_dataflows::config::ConfigError> {
        let mut configs: BTreeMap<String, StoredOrg> = BTreeMap::new();
        let mut rest = Vec::new();
        for r in records {
            match r {
                ControlRecord::OrgConfig(o) => {
                    configs.insert(o.id.clone(), *o);
                }
                other => rest.push(other),
            }
        }
        let stored: Vec<StoredOrg> = configs.into_values().collect();
        let running = crate::orgs::overlay(base, &stored)?;
        let mut f = ControlFollower {
            activations,
            running,
            pending: BTreeMap::new(),
        };
        for r in rest {
            f.apply(r);
        }
        Ok(f)
    }

    /// The configuration to run the dataflow with.
    pub fn config(&self) -> &Config {
        &self.running
    }

    /// Orgs with configuration changes waiting for the next start, and their keys.
    pub fn pending_restart(&self) -> &BTreeMap<String, Vec<String>> {
        &self.pending
    }

    /// Apply one record read while the dataflow runs.
    pub fn apply(&mut self, r: ControlRecord) {
        match r {
            ControlRecord::Activation(a) => {
                let applied = self.activations.activate(
                    &a.organization_id,
                    a.version.clone(),
                    a.effective_ts,
                );
                tracing::info!(org = %a.organization_id, version = ?a.version,
                    effective_ts = applied.effective_ts, "model activation");
            }
            ControlRecord::Thresholds(c) => {
                let applied = self.activations.set_thresholds(
                    &c.organization_id,
                    c.thresholds,
                    c.effective_ts,
                );
                tracing::info!(org = %c.organization_id, thresholds = ?c.thresholds,
                    effective_ts = applied.effective_ts, "prediction thresholds");
            }
            ControlRecord::OrgConfig(o) => {
                let keys: Vec<String> = match self.running.orgs.get(&o.id) {
                    None => vec!["*".to_string()],
                    Some(now) => changed_keys(now, &o.config)
                        .into_iter()
                        .filter(|k| !LIVE_KEYS.contains(&k.as_str()))
                        .collect(),
                };
                if keys.is_empty() {
                    self.pending.remove(&o.id);
                } else {
                    tracing::warn!(org = %o.id, keys = ?keys, by = %o.updated_by,
                        "organization configuration changed: these keys apply when this worker restarts");
                    self.pending.insert(o.id.clone(), keys);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prognos_dataflows::models::activations::{Thresholds, thresholds_at};
    use std::sync::Arc;

    fn base() -> Config {
        Config::from_toml_str(crate::settings::EXAMPLE_CONFIG).unwrap()
    }

    fn t(f: f64) -> Thresholds {
        Thresholds {
            failure_threshold: f,
            for_s: 30,
            immediate_threshold: None,
            confidence_threshold: 0.7,
        }
    }

    #[test]
    fn records_round_trip_with_their_kind_and_key() {
        let recs = [
            ControlRecord::Activation(Activation {
                organization_id: "acme-heat".into(),
                version: Some("v2".into()),
                effective_ts: 5,
            }),
            ControlRecord::Thresholds(ThresholdChange {
                organization_id: "acme-heat".into(),
                effective_ts: i64::MIN,
                thresholds: t(0.6),
            }),
            ControlRecord::OrgConfig(Box::new(StoredOrg {
                id: "acme-heat".into(),
                config: base().orgs["acme-heat"].clone(),
                updated_at: 1,
                updated_by: "root".into(),
            })),
        ];
        let keys: Vec<String> = recs.iter().map(ControlRecord::key).collect();
        assert_eq!(
            keys,
            [
                "activation/acme-heat/5",
                "thresholds/acme-heat/-9223372036854775808",
                "config/acme-heat"
            ]
        );
        for r in recs {
            let v = serde_json::to_value(&r).unwrap();
            assert!(
                v["kind"].is_string() && v["organizationId"].is_string() || v["id"].is_string()
            );
            assert_eq!(serde_json::from_value::<ControlRecord>(v).unwrap(), r);
        }
        assert!(serde_json::from_str::<ControlRecord>(r#"{"kind":"nope"}"#).is_err());
    }

    #[test]
    fn a_worker_starts_with_stored_configs_and_applies_the_rest_live() {
        let acts = Arc::new(Activations::default());
        let mut off = base().orgs["acme-heat"].clone();
        off.enabled = false;
        let mut older = off.clone();
        older.name = "older".into();
        let stored = |config, at| {
            ControlRecord::OrgConfig(Box::new(StoredOrg {
                id: "acme-heat".into(),
                config,
                updated_at: at,
                updated_by: "root".into(),
            }))
        };
        let mut f = ControlFollower::start(
            base(),
            [
                stored(older, 1),
                stored(off.clone(), 2),
                ControlRecord::Thresholds(ThresholdChange {
                    organization_id: "acme-heat".into(),
                    effective_ts: 1_000,
                    thresholds: t(0.9),
                }),
            ],
            acts.clone(),
        )
        .unwrap();
        assert!(
            !f.config().orgs["acme-heat"].enabled,
            "the latest record wins"
        );
        assert_eq!(f.config().orgs["acme-heat"].name, off.name);
        assert!(f.pending_restart().is_empty());
        let log = acts.thresholds_if_changed(&mut 0).unwrap();
        assert_eq!(thresholds_at(&log, "acme-heat", 1_000), Some(t(0.9)));

        // While running: thresholds and activations apply at once (never below
        // what the operators scored) ...
        acts.resolve_rows(0, 50_000, &[], &mut Vec::new(), None);
        f.apply(ControlRecord::Thresholds(ThresholdChange {
            organization_id: "acme-heat".into(),
            effective_ts: 20_000,
            thresholds: t(0.5),
        }));
        f.apply(ControlRecord::Activation(Activation {
            organization_id: "acme-heat".into(),
            version: Some("v1".into()),
            effective_ts: 60_000,
        }));
        let log = acts.thresholds_if_changed(&mut 0).unwrap();
        assert_eq!(thresholds_at(&log, "acme-heat", 49_999), Some(t(0.9)));
        assert_eq!(thresholds_at(&log, "acme-heat", 50_000), Some(t(0.5)));
        assert_eq!(acts.version_at("acme-heat", 60_000).as_deref(), Some("v1"));
        // ... a threshold-only configuration change needs no restart ...
        let mut live_only = off.clone();
        live_only.prediction.failure_threshold = 0.5;
        f.apply(stored(live_only, 3));
        assert!(f.pending_restart().is_empty());
        // ... other keys and new orgs wait for the next start, and are named.
        let mut schema = off.clone();
        schema.time_column = "event_time".into();
        f.apply(stored(schema, 4));
        f.apply(ControlRecord::OrgConfig(Box::new(StoredOrg {
            id: "new-org".into(),
            config: off.clone(),
            updated_at: 5,
            updated_by: "root".into(),
        })));
        assert_eq!(
            f.pending_restart(),
            &BTreeMap::from([
                ("acme-heat".to_string(), vec!["time_column".to_string()]),
                ("new-org".to_string(), vec!["*".to_string()]),
            ])
        );
        // Back to what runs: nothing pending for it any more.
        f.apply(stored(off, 6));
        assert_eq!(f.pending_restart().len(), 1);
        assert!(f.config().orgs["acme-heat"].time_column != "event_time");
    }
}
