//! Reads: pages of an org's alerts, the change log, statistics, daily trends and
//! the feedback export.

use super::record::{severity_str, status_str};
use super::{
    AlertStore, BY_COMPONENT, BY_TYPE, CHANGES, CHANGES_BY_ORG, FEEDBACK, PRIMARY, Result,
    StoreError, StoredAlert, decode, keys, show_key,
};
use prognos_dataflows::records::{AlertStatus, AlertType};
use prognos_dataflows::time::civil_from_days;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

const DAY_MS: i64 = 86_400_000;

/// Where a page ends: the `(ts, id)` of its last alert. The next page starts with
/// the alert after it in newest-first order, so pages neither skip nor repeat while
/// alerts are added or change status. On the wire: `"<ts ms>:<id>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    /// Event time of the last alert of the page.
    pub ts: i64,
    /// Its id.
    pub id: String,
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ts, self.id)
    }
}

impl FromStr for PageCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ts, id) = s
            .split_once(':')
            .ok_or_else(|| format!("page cursor `{s}` is not `<ts>:<id>`"))?;
        let ts = ts
            .parse()
            .map_err(|_| format!("page cursor `{s}`: `{ts}` is not a number"))?;
        Ok(PageCursor { ts, id: id.into() })
    }
}

impl Serialize for PageCursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PageCursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which alerts of an org to list, newest first (by `ts`, then id).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertQuery {
    /// Event time from (inclusive, ms).
    pub from: i64,
    /// Event time to (exclusive, ms).
    pub to: i64,
    /// Only this component.
    pub component: Option<String>,
    /// Only this type.
    pub alert_type: Option<AlertType>,
    /// Only this status (now).
    pub status: Option<AlertStatus>,
    /// Page size (the API caps it).
    pub limit: usize,
    /// Start after this cursor (the previous page's `next`).
    pub after: Option<PageCursor>,
}

impl Default for AlertQuery {
    fn default() -> Self {
        AlertQuery {
            from: i64::MIN,
            to: i64::MAX,
            component: None,
            alert_type: None,
            status: None,
            limit: 50,
            after: None,
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertPage {
    /// The page, newest first.
    pub alerts: Vec<StoredAlert>,
    /// How many alerts match the query in all (every page).
    pub total: u64,
    /// Cursor of the next page; `None` on the last page.
    pub next: Option<PageCursor>,
}

/// An org's alerts over a time range, counted.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStats {
    /// Alerts with `ts` in the range.
    pub total: u64,
    /// By type (every type present).
    pub by_type: BTreeMap<String, u64>,
    /// By component (components with alerts).
    pub by_component: BTreeMap<String, u64>,
    /// By status now (every status present).
    pub by_status: BTreeMap<String, u64>,
    /// By severity (every severity present).
    pub by_severity: BTreeMap<String, u64>,
    /// Alerts an operator acknowledged (whatever their status now).
    pub acknowledged: u64,
    /// `acknowledged / total`; `None` without alerts.
    pub acknowledged_share: Option<f64>,
    /// Alerts with operator feedback.
    pub with_feedback: u64,
    /// Alerts whose feedback says accurate.
    pub accurate: u64,
    /// `accurate / with_feedback`; `None` without feedback.
    pub feedback_accuracy: Option<f64>,
    /// Mean of `acknowledgedAt − createdAt` (ms, wall clock, at least 0).
    pub mean_time_to_acknowledge_ms: Option<f64>,
    /// Mean time to resolve (ms, at least 0): `resolvedAt − createdAt` when an
    /// operator resolved, `resolvedAt − ts` when the dataflow did.
    pub mean_time_to_resolve_ms: Option<f64>,
}

/// One UTC day of alerts (by `ts`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyTrend {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Alerts that day.
    pub total: u64,
    /// CRITICAL alerts.
    pub critical: u64,
    /// WARNING alerts.
    pub warning: u64,
    /// PREDICTIVE alerts.
    pub predictive: u64,
    /// Alerts with operator feedback.
    pub with_feedback: u64,
    /// Alerts whose feedback says accurate.
    pub accurate: u64,
    /// `accurate / with_feedback`; `None` without feedback.
    pub accuracy: Option<f64>,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn matches(a: &StoredAlert, q: &AlertQuery) -> bool {
    q.component.as_ref().is_none_or(|c| *c == a.component)
        && q.alert_type.is_none_or(|t| t == a.alert_type)
        && q.status.is_none_or(|s| s == a.status)
}

/// `prefix ts_be(from) .. prefix ts_be(to)`.
fn time_range(prefix: &[u8], from: i64, to: i64) -> (Vec<u8>, Vec<u8>) {
    let mut lo = prefix.to_vec();
    lo.extend_from_slice(&keys::ts_be(from));
    let mut hi = prefix.to_vec();
    hi.extend_from_slice(&keys::ts_be(to));
    (lo, hi)
}

impl AlertStore {
    /// The alert under primary key `pk`.
    fn load_pk(&self, pk: &[u8]) -> Result<StoredAlert> {
        let v = self.trees[PRIMARY]
            .get(pk)?
            .ok_or_else(|| StoreError::Dangling { key: show_key(pk) })?;
        decode(pk, &v)
    }

    /// Every alert of `org` with `ts` in `[from, to)`, oldest first.
    fn scan(
        &self,
        org: &str,
        from: i64,
        to: i64,
    ) -> impl Iterator<Item = Result<StoredAlert>> + use<> {
        let (lo, hi) = time_range(&keys::org_prefix(org), from, to);
        let it = (from < to).then(|| self.trees[PRIMARY].range(lo..hi));
        it.into_iter().flatten().map(|kv| {
            let (k, v) = kv?;
            decode(&k, &v)
        })
    }

    /// A page of `org`'s alerts matching `q`, newest first, with the total count.
    pub fn query(&self, org: &str, q: &AlertQuery) -> Result<AlertPage> {
        let mut page = AlertPage::default();
        if q.from >= q.to {
            return Ok(page);
        }
        let (tree, prefix) = match (&q.component, q.alert_type) {
            (Some(c), _) => (BY_COMPONENT, keys::component_prefix(org, c)),
            (None, Some(t)) => (BY_TYPE, keys::type_prefix(org, t)),
            (None, None) => (PRIMARY, keys::org_prefix(org)),
        };
        // The index already applied component (or type); the rest needs the record.
        let filter_on_record =
            q.status.is_some() || (tree == BY_COMPONENT && q.alert_type.is_some());
        let after = q.after.as_ref().map(|c| keys::time_suffix(c.ts, &c.id));
        let org_prefix = keys::org_prefix(org);
        let (lo, hi) = time_range(&prefix, q.from, q.to);
        let mut more = false;
        for kv in self.trees[tree].range(lo..hi).rev() {
            let (k, v) = kv?;
            let suffix = &k[prefix.len()..];
            let load = || -> Result<StoredAlert> {
                if tree == PRIMARY {
                    decode(&k, &v)
                } else {
                    self.load_pk(&[org_prefix.as_slice(), suffix].concat())
                }
            };
            let mut rec = None;
            if filter_on_record {
                let a = load()?;
                if !matches(&a, q) {
                    continue;
                }
                rec = Some(a);
            }
            page.total += 1;
            if after.as_ref().is_some_and(|c| suffix >= c.as_slice()) {
                continue;
            }
            if page.alerts.len() < q.limit {
                page.alerts.push(match rec {
                    Some(a) => a,
                    None => load()?,
                });
            } else {
                more = true;
            }
        }
        if more {
            page.next = page.alerts.last().map(|a| PageCursor {
                ts: a.ts,
                id: a.id.clone(),
            });
        }
        Ok(page)
    }

    /// The latest state of each alert (of `org`, or of every org) changed after
    /// sequence number `seq`, in sequence order, at most `limit`. An alert appears
    /// once, at its latest change; the number next to it is that change's (a
    /// concurrent change may make the alert newer than the number, never older).
    pub fn changes_since(
        &self,
        org: Option<&str>,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, StoredAlert)>> {
        let Some(start) = seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let (tree, prefix) = match org {
            Some(o) => (CHANGES_BY_ORG, keys::org_prefix(o)),
            None => (CHANGES, Vec::new()),
        };
        let mut lo = prefix.clone();
        lo.extend_from_slice(&keys::seq(start));
        let mut out = Vec::new();
        for kv in self.trees[tree].range(lo..) {
            if out.len() >= limit {
                break;
            }
            let (k, pk) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            let s = keys::seq_of(&k).ok_or_else(|| StoreError::Dangling { key: show_key(&k) })?;
            out.push((s, self.load_pk(&pk)?));
        }
        Ok(out)
    }

    /// Statistics of `org`'s alerts with `ts` in `[from, to)`.
    pub fn stats(&self, org: &str, from: i64, to: i64) -> Result<AlertStats> {
        let mut s = AlertStats::default();
        for t in [
            AlertType::Critical,
            AlertType::Warning,
            AlertType::Predictive,
        ] {
            s.by_type.insert(t.as_str().into(), 0);
        }
        for st in [
            AlertStatus::Active,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ] {
            s.by_status.insert(status_str(st).into(), 0);
        }
        for sev in ["CRITICAL", "WARNING"] {
            s.by_severity.insert(sev.into(), 0);
        }
        let (mut tta, mut n_tta, mut ttr, mut n_ttr) = (0.0, 0u64, 0.0, 0u64);
        for a in self.scan(org, from, to) {
            let a = a?;
            s.total += 1;
            *s.by_type.entry(a.alert_type.as_str().into()).or_default() += 1;
            *s.by_component.entry(a.component.clone()).or_default() += 1;
            *s.by_status.entry(status_str(a.status).into()).or_default() += 1;
            *s.by_severity
                .entry(severity_str(a.severity).into())
                .or_default() += 1;
            if let Some(at) = a.acknowledged_at {
                s.acknowledged += 1;
                tta += (at - a.created_at).max(0) as f64;
                n_tta += 1;
            }
            if let Some(acc) = a.is_accurate {
                s.with_feedback += 1;
                s.accurate += u64::from(acc);
            }
            if let (AlertStatus::Resolved, Some(at)) = (a.status, a.resolved_at) {
                let start = if a.resolved_by.is_some() {
                    a.created_at
                } else {
                    a.ts
                };
                ttr += (at - start).max(0) as f64;
                n_ttr += 1;
            }
        }
        s.acknowledged_share = ratio(s.acknowledged, s.total);
        s.feedback_accuracy = ratio(s.accurate, s.with_feedback);
        s.mean_time_to_acknowledge_ms = (n_tta > 0).then(|| tta / n_tta as f64);
        s.mean_time_to_resolve_ms = (n_ttr > 0).then(|| ttr / n_ttr as f64);
        Ok(s)
    }

    /// Per UTC day (of `ts`), `org`'s alerts in `[from, to)` by type, with feedback
    /// accuracy; oldest day first, days without alerts left out.
    pub fn daily_trends(&self, org: &str, from: i64, to: i64) -> Result<Vec<DailyTrend>> {
        let mut days: BTreeMap<i64, DailyTrend> = BTreeMap::new();
        for a in self.scan(org, from, to) {
            let a = a?;
            let day = a.ts.div_euclid(DAY_MS);
            let d = days.entry(day).or_insert_with(|| {
                let (y, m, dd) = civil_from_days(day);
                DailyTrend {
                    date: format!("{y:04}-{m:02}-{dd:02}"),
                    ..DailyTrend::default()
                }
            });
            d.total += 1;
            match a.alert_type {
                AlertType::Critical => d.critical += 1,
                AlertType::Warning => d.warning += 1,
                AlertType::Predictive => d.predictive += 1,
            }
            if let Some(acc) = a.is_accurate {
                d.with_feedback += 1;
                d.accurate += u64::from(acc);
            }
        }
        Ok(days
            .into_values()
            .map(|mut d| {
                d.accuracy = ratio(d.accurate, d.with_feedback);
                d
            })
            .collect())
    }

    /// Write `org`'s alerts that have operator feedback as JSON lines (the
    /// [`StoredAlert`] JSON: `organizationId, machineId, type, ts, isAccurate, …`,
    /// what `ml/prognos_ml/labels.py::read_feedback` reads), oldest first. Returns
    /// how many.
    pub fn export_feedback(&self, org: &str, mut w: impl std::io::Write) -> Result<usize> {
        let mut n = 0;
        for kv in self.trees[FEEDBACK].scan_prefix(keys::org_prefix(org)) {
            let (pk, _) = kv?;
            let a = self.load_pk(&pk)?;
            serde_json::to_writer(&mut w, &a).map_err(|e| StoreError::Export(e.into()))?;
            w.write_all(b"\n").map_err(StoreError::Export)?;
            n += 1;
        }
        w.flush().map_err(StoreError::Export)?;
        Ok(n)
    }
}
