//! Changes: the alert stream applied, and the operators' actions. Each is one
//! transaction over all the alert trees (see the module header for the rules).

use super::{
    AlertStore, BY_COMPONENT, BY_TYPE, CHANGES, CHANGES_BY_ORG, FEEDBACK, IDS, META, OPEN, PRIMARY,
    Result, SEEN, SEQ_KEY, Seen, StoreError, Tx, TxResult, abort, decode, encode, keys, show_key,
};
use super::{Change, ChangeKind, StoredAlert};
use prognos_dataflows::records::{Alert, AlertStatus};

/// Decode inside a transaction.
fn tx_decode<T: for<'de> serde::Deserialize<'de>>(key: &[u8], v: &[u8]) -> TxResult<T> {
    decode(key, v).or_else(abort)
}

/// The alert `id` of `org` and its primary key.
fn load(t: &Tx, org: &str, id: &str) -> TxResult<Option<(Vec<u8>, StoredAlert)>> {
    let Some(pk) = t[IDS].get(keys::org_id(org, id))? else {
        return Ok(None);
    };
    let Some(v) = t[PRIMARY].get(&pk)? else {
        return abort(StoreError::Dangling { key: show_key(&pk) });
    };
    Ok(Some((pk.to_vec(), tx_decode(&pk, &v)?)))
}

/// Write `alert` under `pk` with the next sequence number, moving its change-log
/// entry to that number.
fn commit(t: &Tx, pk: &[u8], alert: &mut StoredAlert) -> TxResult<u64> {
    let seq = t[META]
        .get(SEQ_KEY)?
        .and_then(|v| keys::seq_of(&v))
        .unwrap_or(0)
        + 1;
    t[META].insert(SEQ_KEY, &keys::seq(seq))?;
    let org = &alert.organization_id;
    if alert.seq != 0 {
        t[CHANGES].remove(&keys::seq(alert.seq))?;
        t[CHANGES_BY_ORG].remove(keys::org_seq(org, alert.seq))?;
    }
    alert.seq = seq;
    t[CHANGES].insert(&keys::seq(seq), pk)?;
    t[CHANGES_BY_ORG].insert(keys::org_seq(org, seq), pk)?;
    t[PRIMARY].insert(pk, encode(alert))?;
    Ok(seq)
}

fn change(kind: ChangeKind, seq: u64, alert: StoredAlert) -> Change {
    Change { kind, seq, alert }
}

/// A notification (status ACTIVE).
fn notification(t: &Tx, n: &Alert) -> TxResult<Option<Change>> {
    let org = &n.organization_id;
    let seen_key = keys::org_id(org, &n.id);
    if let Some(v) = t[SEEN].get(&seen_key)? {
        let mut seen: Seen = tx_decode(&seen_key, &v)?;
        let Some(alert_id) = seen.alert.clone() else {
            return Ok(None);
        };
        if seen.resolution || n.suppressed_count <= seen.suppressed {
            return Ok(None);
        }
        // A re-emission with a larger count replaces its own earlier contribution.
        let Some((pk, mut alert)) = load(t, org, &alert_id)? else {
            return abort(StoreError::Dangling {
                key: show_key(&keys::org_id(org, &alert_id)),
            });
        };
        alert.suppressed_count = (alert.suppressed_count.saturating_sub(seen.suppressed))
            .saturating_add(n.suppressed_count);
        alert.updated_at = alert.updated_at.max(n.created_at);
        seen.suppressed = n.suppressed_count;
        t[SEEN].insert(seen_key, encode(&seen))?;
        let seq = commit(t, &pk, &mut alert)?;
        return Ok(Some(change(ChangeKind::Updated, seq, alert)));
    }
    let dk = keys::dedup(org, &n.machine_id, &n.component, n.alert_type);
    let open = match t[OPEN].get(&dk)? {
        Some(id) => load(t, org, &String::from_utf8_lossy(&id))?,
        None => None,
    };
    let (kind, pk, mut alert) = match open {
        Some((pk, mut alert)) if alert.status != AlertStatus::Resolved => {
            alert.group(n);
            (ChangeKind::Updated, pk, alert)
        }
        _ => {
            let alert = StoredAlert::open(n);
            let pk = keys::primary(org, alert.ts, &alert.id);
            let suffix = keys::time_suffix(alert.ts, &alert.id);
            let ids_key = keys::org_id(org, &alert.id);
            if t[IDS].get(&ids_key)?.is_some() {
                return abort(StoreError::InvalidRecord {
                    org: org.clone(),
                    id: n.id.clone(),
                    reason: "an alert with this id exists but the notification was never seen",
                });
            }
            t[IDS].insert(ids_key, pk.as_slice())?;
            t[OPEN].insert(dk, alert.id.as_bytes())?;
            let mut ck = keys::component_prefix(org, &alert.component);
            ck.extend_from_slice(&suffix);
            t[BY_COMPONENT].insert(ck, &[])?;
            let mut tk = keys::type_prefix(org, alert.alert_type);
            tk.extend_from_slice(&suffix);
            t[BY_TYPE].insert(tk, &[])?;
            (ChangeKind::Created, pk, alert)
        }
    };
    let seen = Seen {
        alert: Some(alert.id.clone()),
        suppressed: n.suppressed_count,
        resolution: false,
    };
    t[SEEN].insert(seen_key, encode(&seen))?;
    let seq = commit(t, &pk, &mut alert)?;
    Ok(Some(change(kind, seq, alert)))
}

/// A resolution (status RESOLVED).
fn resolution(t: &Tx, r: &Alert) -> TxResult<Option<Change>> {
    let org = &r.organization_id;
    let seen_key = keys::org_id(org, &r.id);
    if t[SEEN].get(&seen_key)?.is_some() {
        return Ok(None);
    }
    let dk = keys::dedup(org, &r.machine_id, &r.component, r.alert_type);
    let open = match t[OPEN].get(&dk)? {
        Some(id) => load(t, org, &String::from_utf8_lossy(&id))?,
        None => None,
    };
    // An open alert that started after the resolution belongs to a later episode.
    let target = open.filter(|(_, a)| a.status != AlertStatus::Resolved && a.ts <= r.ts);
    let mut seen = Seen {
        alert: None,
        suppressed: 0,
        resolution: true,
    };
    let Some((pk, mut alert)) = target else {
        t[SEEN].insert(seen_key, encode(&seen))?;
        return Ok(None);
    };
    alert.status = AlertStatus::Resolved;
    alert.resolved_at = Some(r.resolved_at.unwrap_or(r.ts));
    alert.updated_at = alert.updated_at.max(r.created_at);
    seen.alert = Some(alert.id.clone());
    t[SEEN].insert(seen_key, encode(&seen))?;
    let seq = commit(t, &pk, &mut alert)?;
    Ok(Some(change(ChangeKind::Resolved, seq, alert)))
}

fn check_record(a: &Alert) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidRecord {
            org: a.organization_id.clone(),
            id: a.id.clone(),
            reason,
        })
    };
    let fields = [&a.organization_id, &a.machine_id, &a.component, &a.id];
    if fields.iter().any(|f| f.as_bytes().contains(&0)) {
        return bad("org, machine, component and id must not contain NUL");
    }
    if a.status == AlertStatus::Acknowledged {
        return bad("the alert stream carries ACTIVE notifications and RESOLVED resolutions only");
    }
    Ok(())
}

impl AlertStore {
    /// Apply one record of the dataflow's alert stream: `Some` change, or `None`
    /// when the store did not change (a re-delivery, or a resolution with nothing
    /// open).
    pub fn apply(&self, a: &Alert) -> Result<Option<Change>> {
        check_record(a)?;
        if a.status == AlertStatus::Resolved {
            self.txn(|t| resolution(t, a))
        } else {
            self.txn(|t| notification(t, a))
        }
    }

    /// Run an operator action on alert `id` of `org`, commit it at `at` and make
    /// it durable (flushed) before returning.
    fn operator(
        &self,
        org: &str,
        id: &str,
        at: i64,
        act: impl Fn(&mut StoredAlert) -> Result<ChangeKind>,
    ) -> Result<Change> {
        let change = self.txn(|t| {
            let Some((pk, mut alert)) = load(t, org, id)? else {
                return abort(StoreError::NotFound {
                    org: org.into(),
                    id: id.into(),
                });
            };
            let kind = act(&mut alert).or_else(abort)?;
            if alert.is_accurate.is_some() {
                t[FEEDBACK].insert(pk.as_slice(), &[])?;
            }
            alert.updated_at = alert.updated_at.max(at);
            let seq = commit(t, &pk, &mut alert)?;
            Ok(change(kind, seq, alert))
        })?;
        // An operator is told the action is done: it must survive a crash.
        self.flush()?;
        Ok(change)
    }

    /// An operator acknowledges an ACTIVE alert.
    pub fn acknowledge(&self, org: &str, id: &str, by: &str, at: i64) -> Result<Change> {
        self.operator(org, id, at, |a| {
            if a.status != AlertStatus::Active {
                return Err(transition(a, AlertStatus::Acknowledged));
            }
            a.status = AlertStatus::Acknowledged;
            a.acknowledged_by = Some(by.to_string());
            a.acknowledged_at = Some(at);
            Ok(ChangeKind::Updated)
        })
    }

    /// An operator resolves an ACTIVE or ACKNOWLEDGED alert.
    pub fn resolve(&self, org: &str, id: &str, by: &str, at: i64) -> Result<Change> {
        self.operator(org, id, at, |a| {
            if a.status == AlertStatus::Resolved {
                return Err(transition(a, AlertStatus::Resolved));
            }
            a.status = AlertStatus::Resolved;
            a.resolved_by = Some(by.to_string());
            a.resolved_at = Some(at);
            Ok(ChangeKind::Resolved)
        })
    }

    /// An operator says whether the alert was right (any state; latest wins).
    pub fn feedback(
        &self,
        org: &str,
        id: &str,
        is_accurate: bool,
        by: &str,
        at: i64,
        comment: Option<String>,
    ) -> Result<Change> {
        self.operator(org, id, at, |a| {
            a.is_accurate = Some(is_accurate);
            a.feedback_by = Some(by.to_string());
            a.feedback_at = Some(at);
            a.feedback_comment.clone_from(&comment);
            Ok(ChangeKind::Updated)
        })
    }
}

fn transition(a: &StoredAlert, to: AlertStatus) -> StoreError {
    StoreError::InvalidTransition {
        id: a.id.clone(),
        from: a.status,
        to,
    }
}
