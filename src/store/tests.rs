//! Tests of the alert store on a real sled database in a temporary directory.

use super::*;
use prognos_dataflows::config::Severity;
use prognos_dataflows::records::{Alert, AlertType, TopFeature};
use prognos_dataflows::time::parse_rfc3339_ms;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2024-03-10T00:00:00Z.
const DAY0: i64 = 1_710_028_800_000;

fn open_store() -> (tempfile::TempDir, sled::Db, AlertStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("store")).unwrap();
    let store = AlertStore::open(&db).unwrap();
    (dir, db, store)
}

/// A notification of key (org, machine, component, type) at event time `ts`.
fn notif(org: &str, machine: &str, component: &str, t: AlertType, id: &str, ts: i64) -> Alert {
    let severity = if t == AlertType::Warning {
        Severity::Warning
    } else {
        Severity::Critical
    };
    Alert {
        probability: 0.9,
        confidence: 0.8,
        time_to_failure: 5.0,
        model_version: "v1".into(),
        message: format!("{component} on {machine}"),
        created_at: ts + 1_000,
        ..Alert::notification(id.into(), org, machine, t, severity, component, ts)
    }
}

/// The resolution of a key at event time `ts`.
fn resolution(org: &str, machine: &str, component: &str, t: AlertType, id: &str, ts: i64) -> Alert {
    Alert {
        status: AlertStatus::Resolved,
        resolved_at: Some(ts),
        ..notif(org, machine, component, t, id, ts)
    }
}

fn kind(c: &Option<Change>) -> Option<ChangeKind> {
    c.as_ref().map(|c| c.kind)
}

fn all(store: &AlertStore, org: &str) -> Vec<StoredAlert> {
    let q = AlertQuery {
        limit: usize::MAX,
        ..AlertQuery::default()
    };
    store.query(org, &q).unwrap().alerts
}

#[test]
fn a_keys_notifications_group_into_one_alert() {
    let (_d, _db, s) = open_store();
    let p = AlertType::Predictive;
    let mut n1 = notif("acme", "f1", "heater", p, "n1", DAY0);
    n1.probability = 0.87;
    let mut n2 = notif("acme", "f1", "heater", p, "n2", DAY0 + 5 * MIN);
    n2.probability = 0.95;
    n2.time_to_failure = 3.0;
    n2.suppressed_count = 2;
    n2.top_features = vec![TopFeature {
        name: "temp_mean_5m".into(),
        value: 951.0,
        contribution: 0.4,
    }];
    let mut n3 = notif("acme", "f1", "heater", p, "n3", DAY0 + 10 * MIN);
    n3.probability = 0.86;
    n3.time_to_failure = 1.5;
    n3.model_version = "v2".into();

    let c1 = s.apply(&n1).unwrap().unwrap();
    assert_eq!(
        (c1.kind, c1.seq, c1.alert.id.as_str()),
        (ChangeKind::Created, 1, "n1")
    );
    let c2 = s.apply(&n2).unwrap().unwrap();
    assert_eq!(
        (c2.kind, c2.seq, c2.alert.id.as_str()),
        (ChangeKind::Updated, 2, "n1")
    );
    let c3 = s.apply(&n3).unwrap().unwrap();
    assert_eq!((c3.kind, c3.seq), (ChangeKind::Updated, 3));

    let a = s.get("acme", "n1").unwrap();
    assert_eq!(a, c3.alert);
    assert_eq!(a.notification_count, 3);
    assert_eq!((a.ts, a.last_ts), (DAY0, DAY0 + 10 * MIN));
    assert_eq!(
        a.created_at,
        DAY0 + 1_000,
        "createdAt is the first notification's"
    );
    assert_eq!(a.updated_at, DAY0 + 10 * MIN + 1_000);
    assert_eq!(a.probability, 0.95, "the highest probability");
    assert_eq!(a.time_to_failure, 1.5, "the latest estimate");
    assert_eq!(a.model_version, "v2");
    assert!(
        a.top_features.is_empty(),
        "the latest notification's features"
    );
    assert_eq!(a.suppressed_count, 2);
    assert_eq!(a.status, AlertStatus::Active);
    assert_eq!(a.seq, 3);
    assert!(matches!(
        s.get("acme", "n2"),
        Err(StoreError::NotFound { .. })
    ));

    // Another machine, component or type is another key.
    let other = [
        notif("acme", "f2", "heater", p, "m1", DAY0),
        notif("acme", "f1", "fan", p, "m2", DAY0),
        notif("acme", "f1", "heater", AlertType::Critical, "m3", DAY0),
    ];
    for n in &other {
        assert_eq!(kind(&s.apply(n).unwrap()), Some(ChangeKind::Created));
    }
    assert_eq!(all(&s, "acme").len(), 4);
}

#[test]
fn a_notification_after_resolution_opens_a_new_alert() {
    let (_d, _db, s) = open_store();
    let w = AlertType::Warning;
    s.apply(&notif("acme", "f1", "fan", w, "n1", DAY0)).unwrap();
    s.apply(&notif("acme", "f1", "fan", w, "n2", DAY0 + MIN))
        .unwrap();
    // Another key's resolution leaves this one alone.
    let other = resolution("acme", "f2", "fan", w, "r0", DAY0 + 5 * MIN);
    assert_eq!(s.apply(&other).unwrap(), None);

    let r1 = resolution("acme", "f1", "fan", w, "r1", DAY0 + 11 * MIN);
    let c = s.apply(&r1).unwrap().unwrap();
    assert_eq!(c.kind, ChangeKind::Resolved);
    assert_eq!(c.alert.id, "n1");
    assert_eq!(c.alert.status, AlertStatus::Resolved);
    assert_eq!(c.alert.resolved_at, Some(DAY0 + 11 * MIN));
    assert_eq!(c.alert.resolved_by, None);
    assert_eq!(s.apply(&r1).unwrap(), None, "re-delivered resolution");

    let c = s
        .apply(&notif("acme", "f1", "fan", w, "n3", DAY0 + HOUR))
        .unwrap();
    let c = c.unwrap();
    assert_eq!((c.kind, c.alert.id.as_str()), (ChangeKind::Created, "n3"));
    assert_eq!(c.alert.notification_count, 1);
    assert_eq!(s.get("acme", "n1").unwrap().status, AlertStatus::Resolved);
    assert_eq!(s.get("acme", "n1").unwrap().notification_count, 2);

    // A replayed old resolution does not resolve the new episode...
    assert_eq!(s.apply(&r1).unwrap(), None);
    // ...nor does an unseen resolution older than the new episode.
    let late = resolution("acme", "f1", "fan", w, "r-late", DAY0 + 30 * MIN);
    assert_eq!(s.apply(&late).unwrap(), None);
    assert_eq!(s.get("acme", "n3").unwrap().status, AlertStatus::Active);
    // A resolution for a key with nothing open is remembered: replaying it after the
    // key opened again does nothing.
    let early = resolution("acme", "f9", "fan", w, "r-early", DAY0);
    assert_eq!(s.apply(&early).unwrap(), None);
    s.apply(&notif("acme", "f9", "fan", w, "n9", DAY0 + 2 * HOUR))
        .unwrap();
    let mut replayed = early.clone();
    replayed.ts = DAY0 + 3 * HOUR; // even with a later time: the id was seen
    assert_eq!(s.apply(&replayed).unwrap(), None);
    assert_eq!(s.get("acme", "n9").unwrap().status, AlertStatus::Active);

    // An acknowledged alert is resolved by the dataflow, keeping the acknowledgement.
    s.acknowledge("acme", "n3", "ops", DAY0 + HOUR + 5 * MIN)
        .unwrap();
    let r2 = resolution("acme", "f1", "fan", w, "r2", DAY0 + 2 * HOUR);
    let c = s.apply(&r2).unwrap().unwrap();
    assert_eq!(c.alert.status, AlertStatus::Resolved);
    assert_eq!(c.alert.acknowledged_by.as_deref(), Some("ops"));
}

#[test]
fn re_emission_replaces_its_own_suppressed_count() {
    let (_d, _db, s) = open_store();
    let c = AlertType::Critical;
    let n1 = notif("acme", "f1", "heater", c, "n1", DAY0);
    let n2 = notif("acme", "f1", "heater", c, "n2", DAY0 + MIN);
    s.apply(&n1).unwrap();
    s.apply(&n2).unwrap();
    let with = |n: &Alert, k: u32| Alert {
        suppressed_count: k,
        ..n.clone()
    };
    let ch = s.apply(&with(&n1, 4)).unwrap().unwrap();
    assert_eq!(
        (ch.kind, ch.alert.suppressed_count),
        (ChangeKind::Updated, 4)
    );
    let ch = s.apply(&with(&n1, 6)).unwrap().unwrap();
    assert_eq!(
        ch.alert.suppressed_count, 6,
        "replaces 4, does not add to it"
    );
    assert_eq!(s.apply(&with(&n1, 4)).unwrap(), None, "smaller: a replay");
    assert_eq!(s.apply(&with(&n1, 6)).unwrap(), None, "equal: a replay");
    assert_eq!(s.apply(&n1).unwrap(), None);
    let ch = s.apply(&with(&n2, 2)).unwrap().unwrap();
    assert_eq!(ch.alert.suppressed_count, 8);
    assert_eq!(ch.alert.notification_count, 2);
    // After resolution a re-emission still corrects the count, and nothing else.
    s.acknowledge("acme", "n1", "ops", DAY0 + 2 * MIN).unwrap();
    s.feedback("acme", "n1", false, "eve", DAY0 + 3 * MIN, None)
        .unwrap();
    s.apply(&resolution(
        "acme",
        "f1",
        "heater",
        c,
        "r1",
        DAY0 + 20 * MIN,
    ))
    .unwrap();
    let before = s.get("acme", "n1").unwrap();
    let ch = s.apply(&with(&n2, 3)).unwrap().unwrap();
    assert_eq!(ch.alert.suppressed_count, 9);
    assert_eq!(
        StoredAlert {
            suppressed_count: 9,
            seq: ch.seq,
            ..before
        },
        ch.alert
    );
    assert_eq!(all(&s, "acme").len(), 1, "no new alert");
}

#[test]
fn re_delivery_never_resets_status_ack_or_feedback() {
    let (_d, _db, s) = open_store();
    let p = AlertType::Predictive;
    let n1 = notif("acme", "f1", "heater", p, "n1", DAY0);
    let n2 = notif("acme", "f1", "heater", p, "n2", DAY0 + MIN);
    let r1 = resolution("acme", "f1", "heater", p, "r1", DAY0 + 20 * MIN);
    s.apply(&n1).unwrap();
    s.acknowledge("acme", "n1", "ops", DAY0 + 2 * MIN).unwrap();
    s.apply(&n2).unwrap();
    s.feedback(
        "acme",
        "n1",
        true,
        "eve",
        DAY0 + 3 * MIN,
        Some("saw it".into()),
    )
    .unwrap();
    let acked = s.get("acme", "n1").unwrap();
    for r in [&n1, &n2, &n1] {
        assert_eq!(s.apply(r).unwrap(), None);
    }
    assert_eq!(s.get("acme", "n1").unwrap(), acked);
    s.apply(&r1).unwrap();
    let resolved = s.get("acme", "n1").unwrap();
    let seq = s.last_seq().unwrap();
    for r in [&r1, &n2, &n1, &r1] {
        assert_eq!(s.apply(r).unwrap(), None);
    }
    assert_eq!(s.get("acme", "n1").unwrap(), resolved);
    assert_eq!(s.last_seq().unwrap(), seq);
    assert_eq!(
        all(&s, "acme").len(),
        1,
        "a replayed notification opens nothing"
    );
}

#[test]
fn operator_transitions_and_feedback() {
    let (_d, _db, s) = open_store();
    let w = AlertType::Warning;
    s.apply(&notif("acme", "f1", "fan", w, "a", DAY0)).unwrap();
    s.apply(&notif("acme", "f2", "fan", w, "b", DAY0)).unwrap();

    let c = s.acknowledge("acme", "a", "ops", DAY0 + MIN).unwrap();
    assert_eq!((c.kind, c.seq), (ChangeKind::Updated, 3));
    assert_eq!(c.alert.status, AlertStatus::Acknowledged);
    assert_eq!(c.alert.acknowledged_by.as_deref(), Some("ops"));
    assert_eq!(c.alert.acknowledged_at, Some(DAY0 + MIN));
    assert_eq!(c.alert.updated_at, DAY0 + MIN);
    let e = s
        .acknowledge("acme", "a", "bob", DAY0 + 2 * MIN)
        .unwrap_err();
    assert!(
        matches!(
            &e,
            StoreError::InvalidTransition { id, from: AlertStatus::Acknowledged, to: AlertStatus::Acknowledged } if id == "a"
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "alert a is ACKNOWLEDGED, it cannot become ACKNOWLEDGED"
    );
    assert_eq!(
        s.get("acme", "a").unwrap().acknowledged_by.as_deref(),
        Some("ops"),
        "a refused action changes nothing"
    );

    let c = s.resolve("acme", "a", "bob", DAY0 + 3 * MIN).unwrap();
    assert_eq!(c.kind, ChangeKind::Resolved);
    assert_eq!(c.alert.status, AlertStatus::Resolved);
    assert_eq!(
        (c.alert.resolved_by.as_deref(), c.alert.resolved_at),
        (Some("bob"), Some(DAY0 + 3 * MIN))
    );
    assert_eq!(c.alert.acknowledged_by.as_deref(), Some("ops"));
    for e in [
        s.acknowledge("acme", "a", "ops", DAY0 + 4 * MIN)
            .unwrap_err(),
        s.resolve("acme", "a", "ops", DAY0 + 4 * MIN).unwrap_err(),
    ] {
        assert!(
            matches!(
                e,
                StoreError::InvalidTransition {
                    from: AlertStatus::Resolved,
                    ..
                }
            ),
            "{e:?}"
        );
    }
    // The dataflow's resolution of an operator-resolved alert keeps the operator's.
    s.apply(&resolution("acme", "f1", "fan", w, "r", DAY0 + HOUR))
        .unwrap();
    assert_eq!(
        s.get("acme", "a").unwrap().resolved_by.as_deref(),
        Some("bob")
    );

    // ACTIVE → RESOLVED directly.
    let c = s.resolve("acme", "b", "bob", DAY0 + 5 * MIN).unwrap();
    assert_eq!(c.alert.status, AlertStatus::Resolved);
    assert_eq!(c.alert.acknowledged_at, None);

    // Feedback in any state; latest wins, comment included.
    let c = s
        .feedback("acme", "a", false, "eve", DAY0 + 6 * MIN, Some("no".into()))
        .unwrap();
    assert_eq!(c.kind, ChangeKind::Updated);
    assert_eq!(c.alert.status, AlertStatus::Resolved);
    let c = s
        .feedback("acme", "a", true, "dan", DAY0 + 7 * MIN, None)
        .unwrap();
    let a = &c.alert;
    assert_eq!(
        (
            a.is_accurate,
            a.feedback_by.as_deref(),
            a.feedback_at,
            a.feedback_comment.as_deref()
        ),
        (Some(true), Some("dan"), Some(DAY0 + 7 * MIN), None)
    );
    assert_eq!(s.get("acme", "a").unwrap(), c.alert);
    assert!(matches!(
        s.feedback("acme", "zzz", true, "dan", 0, None),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn another_orgs_alert_is_not_found() {
    let (_d, _db, s) = open_store();
    let p = AlertType::Predictive;
    s.apply(&notif("acme", "f1", "heater", p, "a", DAY0))
        .unwrap();
    s.feedback("acme", "a", true, "eve", DAY0, None).unwrap();
    // Same machine and component names in another org are another key.
    let c = s
        .apply(&notif("globex", "f1", "heater", p, "g", DAY0))
        .unwrap();
    assert_eq!(kind(&c), Some(ChangeKind::Created));
    let nf = |r: Result<Change>| matches!(r, Err(StoreError::NotFound { ref org, ref id }) if org == "globex" && id == "a");
    assert!(matches!(
        s.get("globex", "a"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(nf(s.acknowledge("globex", "a", "x", DAY0)));
    assert!(nf(s.resolve("globex", "a", "x", DAY0)));
    assert!(nf(s.feedback("globex", "a", false, "x", DAY0, None)));
    let a = s.get("acme", "a").unwrap();
    assert_eq!((a.status, a.is_accurate), (AlertStatus::Active, Some(true)));
    let ids = |org| all(&s, org).into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids("acme"), ["a"]);
    assert_eq!(ids("globex"), ["g"]);
    assert!(ids("ac").is_empty(), "an org name prefix is another org");
    let q = AlertQuery {
        component: Some("heater".into()),
        alert_type: Some(p),
        ..AlertQuery::default()
    };
    assert_eq!(s.query("globex", &q).unwrap().total, 1);
    assert_eq!(s.stats("globex", i64::MIN, i64::MAX).unwrap().total, 1);
    assert_eq!(
        s.stats("globex", i64::MIN, i64::MAX).unwrap().with_feedback,
        0
    );
    let seqs = |org| {
        s.changes_since(Some(org), 0, 100)
            .unwrap()
            .into_iter()
            .map(|(q, a)| (q, a.id))
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs("acme"), [(2, "a".to_string())]);
    assert_eq!(seqs("globex"), [(3, "g".to_string())]);
    let mut out = Vec::new();
    assert_eq!(s.export_feedback("globex", &mut out).unwrap(), 0);
    assert!(out.is_empty());
    // A resolution of the other org's key does not touch this one.
    s.apply(&resolution("globex", "f1", "heater", p, "r", DAY0 + HOUR))
        .unwrap();
    assert_eq!(s.get("acme", "a").unwrap().status, AlertStatus::Active);
}

/// A varied org: 3 machines × 3 components × 3 types over 3 days, some alerts
/// grouped, acknowledged, resolved. Returns the final state of every alert.
fn populate(s: &AlertStore) -> Vec<StoredAlert> {
    let types = [
        AlertType::Critical,
        AlertType::Warning,
        AlertType::Predictive,
    ];
    let comps = ["heater", "fan", "pump"];
    let mut ids = Vec::new();
    for i in 0..60i64 {
        let (m, c, t) = (i % 3, (i / 3) % 3, types[(i / 9 % 3) as usize]);
        // Several alerts share a ts (ties are ordered by id).
        let ts = DAY0 + (i % 20) * 4 * HOUR - 2 * HOUR;
        let n = notif(
            "acme",
            &format!("f{m}"),
            comps[c as usize],
            t,
            &format!("a{i:02}"),
            ts,
        );
        let ch = s.apply(&n).unwrap().unwrap();
        if ch.kind == ChangeKind::Created {
            ids.push(ch.alert.id.clone());
        }
        match i % 5 {
            1 => {
                s.acknowledge("acme", &ch.alert.id, "ops", ts + MIN).ok();
            }
            2 => {
                let r = resolution(
                    "acme",
                    &n.machine_id,
                    &n.component,
                    t,
                    &format!("r{i}"),
                    ts + HOUR,
                );
                s.apply(&r).unwrap();
            }
            _ => {}
        }
    }
    s.apply(&notif(
        "other",
        "f0",
        "heater",
        AlertType::Critical,
        "o1",
        DAY0,
    ))
    .unwrap();
    ids.iter().map(|id| s.get("acme", id).unwrap()).collect()
}

#[test]
fn queries_match_a_filtered_scan_and_pages_neither_skip_nor_repeat() {
    let (_d, _db, s) = open_store();
    let alerts = populate(&s);
    assert!(alerts.len() > 30, "{}", alerts.len());
    assert!(alerts.iter().any(|a| a.notification_count > 1));
    for st in [
        AlertStatus::Active,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ] {
        assert!(alerts.iter().any(|a| a.status == st), "{st:?}");
    }
    let mut queries = Vec::new();
    let ranges = [
        (i64::MIN, i64::MAX),
        (DAY0, DAY0 + DAY),
        (DAY0 + 2 * HOUR, DAY0 + 30 * HOUR), // bounds equal to alert times
        (DAY0 + 5 * HOUR, DAY0 + 5 * HOUR),  // empty
    ];
    for (from, to) in ranges {
        for component in [None, Some("fan"), Some("nope")] {
            for alert_type in [None, Some(AlertType::Warning)] {
                for status in [None, Some(AlertStatus::Active), Some(AlertStatus::Resolved)] {
                    queries.push(AlertQuery {
                        from,
                        to,
                        component: component.map(str::to_string),
                        alert_type,
                        status,
                        ..AlertQuery::default()
                    });
                }
            }
        }
    }
    queries.push(AlertQuery {
        alert_type: Some(AlertType::Predictive),
        status: Some(AlertStatus::Acknowledged),
        ..AlertQuery::default()
    });
    for q in queries {
        let mut expected: Vec<&StoredAlert> = alerts
            .iter()
            .filter(|a| a.ts >= q.from && a.ts < q.to)
            .filter(|a| q.component.as_ref().is_none_or(|c| *c == a.component))
            .filter(|a| q.alert_type.is_none_or(|t| t == a.alert_type))
            .filter(|a| q.status.is_none_or(|st| st == a.status))
            .collect();
        expected.sort_by(|a, b| (b.ts, &b.id).cmp(&(a.ts, &a.id)));
        let expected: Vec<String> = expected.into_iter().map(|a| a.id.clone()).collect();
        for limit in [1, 3, 7, 1000] {
            let mut got = Vec::new();
            let mut q = AlertQuery { limit, ..q.clone() };
            let mut pages = 0;
            loop {
                let page = s.query("acme", &q).unwrap();
                assert_eq!(page.total, expected.len() as u64, "{q:?}");
                assert!(page.alerts.len() <= limit);
                got.extend(page.alerts.iter().map(|a| a.id.clone()));
                pages += 1;
                match page.next {
                    Some(c) => {
                        assert_eq!(page.alerts.len(), limit, "only a full page has a next");
                        q.after = Some(c.to_string().parse().unwrap());
                    }
                    None => break,
                }
            }
            assert_eq!(got, expected, "{q:?}");
            assert_eq!(pages, expected.len().div_ceil(limit).max(1), "{q:?}");
        }
    }
    // The page's alerts are the stored state.
    let page = s
        .query(
            "acme",
            &AlertQuery {
                limit: 2,
                ..AlertQuery::default()
            },
        )
        .unwrap();
    for a in &page.alerts {
        assert_eq!(*a, s.get("acme", &a.id).unwrap());
    }
}

#[test]
fn a_cursor_survives_new_alerts_and_status_changes() {
    let (_d, _db, s) = open_store();
    let w = AlertType::Warning;
    for i in 0..6 {
        s.apply(&notif(
            "acme",
            &format!("f{i}"),
            "fan",
            w,
            &format!("a{i}"),
            DAY0 + i * MIN,
        ))
        .unwrap();
    }
    let q = AlertQuery {
        limit: 2,
        ..AlertQuery::default()
    };
    let p1 = s.query("acme", &q).unwrap();
    let ids = |p: &AlertPage| p.alerts.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&p1), ["a5", "a4"]);
    // A newer alert and a status change between pages.
    s.apply(&notif("acme", "f9", "fan", w, "a9", DAY0 + HOUR))
        .unwrap();
    s.acknowledge("acme", "a3", "ops", DAY0 + HOUR).unwrap();
    let p2 = s
        .query(
            "acme",
            &AlertQuery {
                after: p1.next.clone(),
                ..q.clone()
            },
        )
        .unwrap();
    assert_eq!(ids(&p2), ["a3", "a2"]);
    assert_eq!(p2.total, 7);
    let p3 = s
        .query(
            "acme",
            &AlertQuery {
                after: p2.next.clone(),
                ..q.clone()
            },
        )
        .unwrap();
    assert_eq!(ids(&p3), ["a1", "a0"]);
    assert_eq!(p3.next, None);
    assert!("nonsense".parse::<PageCursor>().is_err());
    assert!("x:y".parse::<PageCursor>().is_err());
    let c: PageCursor = "-5:id:with:colons".parse().unwrap();
    assert_eq!((c.ts, c.id.as_str()), (-5, "id:with:colons"));
}

#[test]
fn stats_and_daily_trends_match_hand_counts() {
    let (_d, _db, s) = open_store();
    use AlertType::*;
    // Day 0 (2024-03-10).
    let a1 = notif("acme", "f1", "heater", Critical, "a1", DAY0 + HOUR);
    s.apply(&a1).unwrap();
    s.apply(&notif(
        "acme",
        "f1",
        "heater",
        Critical,
        "a1b",
        DAY0 + HOUR + MIN,
    ))
    .unwrap(); // grouped into a1: still one alert
    s.acknowledge("acme", "a1", "ops", a1.created_at + 60_000)
        .unwrap();
    s.apply(&resolution(
        "acme",
        "f1",
        "heater",
        Critical,
        "r1",
        DAY0 + HOUR + 10 * MIN,
    ))
    .unwrap(); // dataflow: resolvedAt − ts = 600 000
    let a2 = notif("acme", "f1", "fan", Warning, "a2", DAY0 + 2 * HOUR);
    s.apply(&a2).unwrap();
    s.acknowledge("acme", "a2", "ops", a2.created_at + 120_000)
        .unwrap();
    s.resolve("acme", "a2", "ops", a2.created_at + 300_000)
        .unwrap(); // operator: resolvedAt − createdAt = 300 000
    s.feedback("acme", "a2", false, "eve", DAY0 + 3 * HOUR, None)
        .unwrap();
    s.feedback("acme", "a2", true, "eve", DAY0 + 4 * HOUR, None)
        .unwrap(); // overwritten: accurate
    // Day 1.
    let mut a3 = notif("acme", "f2", "heater", Predictive, "a3", DAY0 + DAY + HOUR);
    a3.severity = Severity::Critical;
    s.apply(&a3).unwrap();
    s.feedback("acme", "a3", false, "eve", DAY0 + DAY + 2 * HOUR, None)
        .unwrap();
    let mut a4 = notif("acme", "f2", "pump", Predictive, "a4", DAY0 + 2 * DAY - 1);
    a4.severity = Severity::Warning;
    s.apply(&a4).unwrap();
    s.feedback("acme", "a4", true, "eve", DAY0 + 2 * DAY, None)
        .unwrap();
    // Outside the range, and another org.
    s.apply(&notif(
        "acme",
        "f1",
        "heater",
        Warning,
        "a5",
        DAY0 + 2 * DAY,
    ))
    .unwrap();
    s.apply(&notif("acme", "f3", "heater", Warning, "a6", DAY0 - 1))
        .unwrap();
    s.apply(&notif("globex", "f1", "heater", Warning, "g1", DAY0 + HOUR))
        .unwrap();

    let st = s.stats("acme", DAY0, DAY0 + 2 * DAY).unwrap();
    let map = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(st.total, 4);
    assert_eq!(
        st.by_type,
        map(&[("CRITICAL", 1), ("WARNING", 1), ("PREDICTIVE", 2)])
    );
    assert_eq!(
        st.by_component,
        map(&[("heater", 2), ("fan", 1), ("pump", 1)])
    );
    assert_eq!(
        st.by_status,
        map(&[("ACTIVE", 2), ("ACKNOWLEDGED", 0), ("RESOLVED", 2)])
    );
    assert_eq!(st.by_severity, map(&[("CRITICAL", 2), ("WARNING", 2)]));
    assert_eq!((st.acknowledged, st.acknowledged_share), (2, Some(0.5)));
    assert_eq!((st.with_feedback, st.accurate), (3, 2));
    assert_eq!(st.feedback_accuracy, Some(2.0 / 3.0));
    assert_eq!(st.mean_time_to_acknowledge_ms, Some(90_000.0));
    assert_eq!(st.mean_time_to_resolve_ms, Some(450_000.0));

    let empty = s.stats("acme", DAY0 + 10 * DAY, DAY0 + 11 * DAY).unwrap();
    assert_eq!(empty.total, 0);
    assert_eq!(empty.by_type["PREDICTIVE"], 0);
    assert_eq!(
        (
            empty.acknowledged_share,
            empty.feedback_accuracy,
            empty.mean_time_to_acknowledge_ms,
            empty.mean_time_to_resolve_ms
        ),
        (None, None, None, None)
    );

    let tr = s.daily_trends("acme", DAY0, DAY0 + 2 * DAY).unwrap();
    let day = |date: &str, c, w, p, wf, acc, accuracy| DailyTrend {
        date: date.into(),
        total: c + w + p,
        critical: c,
        warning: w,
        predictive: p,
        with_feedback: wf,
        accurate: acc,
        accuracy,
    };
    assert_eq!(
        tr,
        [
            day("2024-03-10", 1, 1, 0, 1, 1, Some(1.0)),
            day("2024-03-11", 0, 0, 2, 2, 1, Some(0.5)),
        ]
    );
    // The whole history: the days before and after, no gap days.
    let tr = s.daily_trends("acme", i64::MIN, i64::MAX).unwrap();
    let dates: Vec<&str> = tr.iter().map(|d| d.date.as_str()).collect();
    assert_eq!(
        dates,
        ["2024-03-09", "2024-03-10", "2024-03-11", "2024-03-12"]
    );
    assert_eq!(tr[0].accuracy, None);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["byType"]["PREDICTIVE"], 2);
    assert_eq!(json["meanTimeToResolveMs"], 450_000.0);
}

#[test]
fn changes_since_returns_the_latest_state_once_in_sequence_order() {
    let (_d, _db, s) = open_store();
    let w = AlertType::Warning;
    assert_eq!(s.last_seq().unwrap(), 0);
    s.apply(&notif("acme", "f1", "fan", w, "a", DAY0)).unwrap(); // 1
    s.apply(&notif("acme", "f2", "fan", w, "b", DAY0)).unwrap(); // 2
    s.apply(&notif("globex", "f1", "fan", w, "g", DAY0))
        .unwrap(); // 3
    s.apply(&notif("acme", "f1", "fan", w, "a2", DAY0 + MIN))
        .unwrap(); // 4: a grouped
    s.acknowledge("acme", "b", "ops", DAY0 + 2 * MIN).unwrap(); // 5
    s.apply(&notif("acme", "f1", "fan", w, "a2", DAY0 + MIN))
        .unwrap(); // replay: no number
    assert_eq!(s.last_seq().unwrap(), 5);
    let ids = |v: Vec<(u64, StoredAlert)>| {
        v.into_iter()
            .map(|(q, a)| {
                assert_eq!(q, a.seq);
                (q, a.id)
            })
            .collect::<Vec<_>>()
    };
    let p = |v: &[(u64, &str)]| {
        v.iter()
            .map(|(q, i)| (*q, i.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(s.changes_since(None, 0, 100).unwrap()),
        p(&[(3, "g"), (4, "a"), (5, "b")])
    );
    assert_eq!(
        ids(s.changes_since(None, 3, 100).unwrap()),
        p(&[(4, "a"), (5, "b")])
    );
    assert_eq!(ids(s.changes_since(None, 0, 1).unwrap()), p(&[(3, "g")]));
    assert!(s.changes_since(None, 5, 100).unwrap().is_empty());
    assert!(s.changes_since(None, u64::MAX, 100).unwrap().is_empty());
    assert_eq!(
        ids(s.changes_since(Some("acme"), 0, 100).unwrap()),
        p(&[(4, "a"), (5, "b")])
    );
    assert_eq!(
        ids(s.changes_since(Some("acme"), 4, 100).unwrap()),
        p(&[(5, "b")])
    );
    assert_eq!(
        ids(s.changes_since(Some("globex"), 0, 100).unwrap()),
        p(&[(3, "g")])
    );
    let latest = s.changes_since(Some("acme"), 0, 100).unwrap();
    assert_eq!(latest[0].1.notification_count, 2);
    assert_eq!(latest[1].1.status, AlertStatus::Acknowledged);
}

#[test]
fn the_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let p = AlertType::Predictive;
    let n1 = notif("acme", "f1", "heater", p, "n1", DAY0);
    let before = {
        let db = sled::open(dir.path().join("store")).unwrap();
        let s = AlertStore::open(&db).unwrap();
        s.apply(&n1).unwrap();
        s.acknowledge("acme", "n1", "ops", DAY0 + MIN).unwrap();
        s.feedback("acme", "n1", true, "eve", DAY0 + 2 * MIN, Some("ok".into()))
            .unwrap();
        s.flush().unwrap();
        s.get("acme", "n1").unwrap()
    };
    let db = sled::open(dir.path().join("store")).unwrap();
    // The registry's trees live in the same database.
    db.open_tree("models").unwrap();
    let s = AlertStore::open(&db).unwrap();
    assert_eq!(s.get("acme", "n1").unwrap(), before);
    assert_eq!(s.last_seq().unwrap(), 3);
    assert_eq!(s.apply(&n1).unwrap(), None, "seen before the restart");
    let c = s
        .apply(&notif("acme", "f1", "heater", p, "n2", DAY0 + MIN))
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.kind, c.seq, c.alert.id.as_str()),
        (ChangeKind::Updated, 4, "n1")
    );
    assert_eq!(c.alert.status, AlertStatus::Acknowledged);
    assert_eq!(all(&s, "acme").len(), 1);
    assert_eq!(s.export_feedback("acme", std::io::sink()).unwrap(), 1);
}

#[test]
fn feedback_export_is_json_lines_that_labels_py_reads() {
    let (_d, _db, s) = open_store();
    let p = AlertType::Predictive;
    s.apply(&notif("acme", "f1", "heater", p, "a1", DAY0 + 500))
        .unwrap();
    s.apply(&notif(
        "acme",
        "f2",
        "pump",
        AlertType::Warning,
        "a2",
        DAY0 - HOUR,
    ))
    .unwrap();
    s.apply(&notif("acme", "f3", "pump", p, "a3", DAY0))
        .unwrap(); // no feedback
    s.apply(&notif("globex", "f1", "heater", p, "g1", DAY0))
        .unwrap();
    s.feedback("acme", "a1", true, "eve", DAY0 + HOUR, None)
        .unwrap();
    s.feedback(
        "acme",
        "a1",
        false,
        "eve",
        DAY0 + 2 * HOUR,
        Some("no".into()),
    )
    .unwrap();
    s.feedback("acme", "a2", true, "dan", DAY0 + HOUR, None)
        .unwrap();
    s.feedback("globex", "g1", true, "x", DAY0, None).unwrap();
    let mut out = Vec::new();
    assert_eq!(s.export_feedback("acme", &mut out).unwrap(), 2);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n'));
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Oldest first; the fields `read_feedback` / `apply_feedback` use.
    let want = [
        ("a2", "f2", "WARNING", DAY0 - HOUR, true),
        ("a1", "f1", "PREDICTIVE", DAY0 + 500, false),
    ];
    assert_eq!(rows.len(), want.len());
    for (r, (id, machine, t, ts, acc)) in rows.iter().zip(want) {
        assert_eq!(r["id"], id);
        assert_eq!(r["organizationId"], "acme");
        assert_eq!(r["machineId"], machine);
        assert_eq!(r["type"], t);
        assert_eq!(parse_rfc3339_ms(r["ts"].as_str().unwrap()), Some(ts));
        assert_eq!(r["isAccurate"], acc);
        assert!(r["feedbackAt"].is_string() && r["feedbackBy"].is_string());
    }
    assert_eq!(rows[1]["feedbackComment"], "no");
}

#[test]
fn stored_alert_json_has_the_api_fields_and_keeps_nan() {
    let (_d, _db, s) = open_store();
    let mut n = notif("acme", "f1", "heater", AlertType::Predictive, "n1", DAY0);
    n.time_to_failure = f64::NAN;
    n.rule = Some("r".into());
    let c = s.apply(&n).unwrap().unwrap();
    let back = s.get("acme", "n1").unwrap();
    assert!(back.time_to_failure.is_nan());
    assert_eq!(back.seq, c.seq);
    let v = serde_json::to_value(&back).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    let mut want = vec![
        "id",
        "organizationId",
        "machineId",
        "type",
        "severity",
        "component",
        "probability",
        "confidence",
        "timeToFailure",
        "modelVersion",
        "rule",
        "message",
        "ts",
        "createdAt",
        "resolvedAt",
        "status",
        "suppressedCount",
        "topFeatures",
        "isAccurate",
        "feedbackAt",
        "feedbackBy",
        "feedbackComment",
        "acknowledgedBy",
        "acknowledgedAt",
        "resolvedBy",
        "notificationCount",
        "lastTs",
        "seq",
        "updatedAt",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["ts"], "2024-03-10T00:00:00.000Z");
    assert_eq!(v["timeToFailure"], serde_json::Value::Null);
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["type"], "PREDICTIVE");
    // Every Alert field has the same name and wire form: the JSON parses as an Alert
    // (a NaN aside, which Alert's plain f64 cannot read back).
    let mut v = v.clone();
    v["timeToFailure"] = 0.0.into();
    let as_alert: Alert = serde_json::from_value(v).unwrap();
    assert_eq!(as_alert.id, "n1");
}

#[test]
fn records_the_store_cannot_take_are_errors() {
    let (_d, _db, s) = open_store();
    let mut a = notif("acme", "f1", "heater", AlertType::Critical, "n1", DAY0);
    a.status = AlertStatus::Acknowledged;
    assert!(matches!(s.apply(&a), Err(StoreError::InvalidRecord { .. })));
    let b = notif("ac\0me", "f1", "heater", AlertType::Critical, "n2", DAY0);
    assert!(matches!(s.apply(&b), Err(StoreError::InvalidRecord { .. })));
    assert_eq!(s.last_seq().unwrap(), 0);
}

// ---- Property: random streams and operator actions against a naive reference,
// then a shuffled replay of every delivered record changes nothing.

#[derive(Debug, Clone)]
enum Op {
    /// A new notification of key `key` with `supp` suppressed.
    Notify {
        key: usize,
        supp: u32,
    },
    /// Deliver an earlier notification again, its count raised by `extra` (0: verbatim).
    Redeliver {
        pick: usize,
        extra: u32,
    },
    /// A new resolution of `key`, `lag` steps in the past.
    Resolve {
        key: usize,
        lag: i64,
    },
    Ack {
        pick: usize,
    },
    Close {
        pick: usize,
    },
    Feedback {
        pick: usize,
        acc: bool,
        comment: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..3u32).prop_map(|(key, supp)| Op::Notify { key, supp }),
        2 => (any::<usize>(), 0..3u32).prop_map(|(pick, extra)| Op::Redeliver { pick, extra }),
        2 => (0..4usize, 0..4i64).prop_map(|(key, lag)| Op::Resolve { key, lag }),
        1 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        1 => (any::<usize>(), any::<bool>(), any::<bool>())
            .prop_map(|(pick, acc, comment)| Op::Feedback { pick, acc, comment }),
    ]
}

const KEYS: [(&str, &str, AlertType); 4] = [
    ("f1", "heater", AlertType::Predictive),
    ("f1", "heater", AlertType::Critical),
    ("f2", "heater", AlertType::Predictive),
    ("f1", "fan", AlertType::Predictive),
];

#[derive(Debug, Clone, PartialEq)]
struct RefAlert {
    key: usize,
    ts: i64,
    status: AlertStatus,
    count: u32,
    suppressed: u32,
    ack: Option<(String, i64)>,
    resolved: Option<(Option<String>, i64)>,
    feedback: Option<(bool, String, i64, Option<String>)>,
}

/// The rules of the module header, on plain maps.
#[derive(Default)]
struct Reference {
    alerts: BTreeMap<String, RefAlert>,
    latest: HashMap<usize, String>,
    /// record id → (alert, counted suppressed, is resolution)
    seen: HashMap<String, (Option<String>, u32, bool)>,
}

impl Reference {
    fn notify(&mut self, key: usize, id: &str, ts: i64, supp: u32) -> Option<ChangeKind> {
        if let Some((alert, counted, res)) = self.seen.get_mut(id) {
            let alert = alert.clone()?;
            if *res || supp <= *counted {
                return None;
            }
            let a = self.alerts.get_mut(&alert).unwrap();
            a.suppressed = a.suppressed - *counted + supp;
            *counted = supp;
            return Some(ChangeKind::Updated);
        }
        let open = self
            .latest
            .get(&key)
            .filter(|id| self.alerts[*id].status != AlertStatus::Resolved)
            .cloned();
        let (kind, alert) = match open {
            Some(open) => {
                let a = self.alerts.get_mut(&open).unwrap();
                a.count += 1;
                a.suppressed += supp;
                (ChangeKind::Updated, open)
            }
            None => {
                self.alerts.insert(
                    id.into(),
                    RefAlert {
                        key,
                        ts,
                        status: AlertStatus::Active,
                        count: 1,
                        suppressed: supp,
                        ack: None,
                        resolved: None,
                        feedback: None,
                    },
                );
                self.latest.insert(key, id.into());
                (ChangeKind::Created, id.to_string())
            }
        };
        self.seen.insert(id.into(), (Some(alert), supp, false));
        Some(kind)
    }

    fn resolve(&mut self, key: usize, id: &str, ts: i64) -> Option<ChangeKind> {
        if self.seen.contains_key(id) {
            return None;
        }
        let target = self.latest.get(&key).cloned().filter(|a| {
            let a = &self.alerts[a];
            a.status != AlertStatus::Resolved && a.ts <= ts
        });
        self.seen.insert(id.into(), (target.clone(), 0, true));
        let a = self.alerts.get_mut(&target?).unwrap();
        a.status = AlertStatus::Resolved;
        a.resolved = Some((None, ts));
        Some(ChangeKind::Resolved)
    }
}

fn check_against(s: &AlertStore, r: &Reference) -> std::result::Result<(), TestCaseError> {
    let stored = all(s, "acme");
    prop_assert_eq!(stored.len(), r.alerts.len());
    for a in stored {
        let want = &r.alerts[&a.id];
        let (machine, component, t) = KEYS[want.key];
        prop_assert_eq!(
            (a.machine_id.as_str(), a.component.as_str(), a.alert_type),
            (machine, component, t)
        );
        let got = RefAlert {
            key: want.key,
            ts: a.ts,
            status: a.status,
            count: a.notification_count,
            suppressed: a.suppressed_count,
            ack: a.acknowledged_by.clone().zip(a.acknowledged_at),
            resolved: a.resolved_at.map(|at| (a.resolved_by.clone(), at)),
            feedback: a.is_accurate.map(|acc| {
                (
                    acc,
                    a.feedback_by.clone().unwrap(),
                    a.feedback_at.unwrap(),
                    a.feedback_comment.clone(),
                )
            }),
        };
        prop_assert_eq!(&got, want, "alert {}", a.id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replay_in_any_order_changes_nothing(ops in prop::collection::vec(op(), 1..40),
                                           shuffle_seed in any::<u64>()) {
        let (_d, _db, s) = open_store();
        let mut r = Reference::default();
        let mut delivered: Vec<Alert> = Vec::new();
        // (first delivery, largest count delivered) of every notification
        let mut notifs: Vec<(Alert, u32)> = Vec::new();
        for (step, op) in ops.iter().enumerate() {
            let ts = DAY0 + step as i64 * MIN;
            let at = ts + 30_000;
            let pick = |p: usize| r.alerts.keys().nth(p % r.alerts.len().max(1)).cloned();
            match *op {
                Op::Notify { key, supp } => {
                    let (m, c, t) = KEYS[key];
                    let mut n = notif("acme", m, c, t, &format!("n{step}"), ts);
                    n.suppressed_count = supp;
                    let got = s.apply(&n).unwrap();
                    prop_assert_eq!(kind(&got), r.notify(key, &n.id, ts, supp));
                    notifs.push((n.clone(), supp));
                    delivered.push(n);
                }
                Op::Redeliver { pick, extra } => {
                    if notifs.is_empty() {
                        continue;
                    }
                    let i = pick % notifs.len();
                    let (n, max) = &mut notifs[i];
                    *max += extra;
                    let n = Alert { suppressed_count: *max, ..n.clone() };
                    let key = KEYS.iter().position(|(m, c, t)| {
                        (*m, *c, *t) == (n.machine_id.as_str(), n.component.as_str(), n.alert_type)
                    }).unwrap();
                    let got = s.apply(&n).unwrap();
                    prop_assert_eq!(kind(&got), r.notify(key, &n.id, n.ts, n.suppressed_count));
                    delivered.push(n);
                }
                Op::Resolve { key, lag } => {
                    let (m, c, t) = KEYS[key];
                    let rts = ts - lag * MIN;
                    let res = resolution("acme", m, c, t, &format!("r{step}"), rts);
                    let got = s.apply(&res).unwrap();
                    prop_assert_eq!(kind(&got), r.resolve(key, &res.id, rts));
                    delivered.push(res);
                }
                Op::Ack { pick: p } => {
                    let Some(id) = pick(p) else { continue };
                    let a = r.alerts.get_mut(&id).unwrap();
                    let got = s.acknowledge("acme", &id, "ops", at);
                    if a.status == AlertStatus::Active {
                        prop_assert_eq!(got.unwrap().kind, ChangeKind::Updated);
                        a.status = AlertStatus::Acknowledged;
                        a.ack = Some(("ops".into(), at));
                    } else {
                        let is_refused = matches!(got, Err(StoreError::InvalidTransition { .. }));
                        prop_assert!(is_refused);
                    }
                }
                Op::Close { pick: p } => {
                    let Some(id) = pick(p) else { continue };
                    let a = r.alerts.get_mut(&id).unwrap();
                    let got = s.resolve("acme", &id, "bob", at);
                    if a.status != AlertStatus::Resolved {
                        prop_assert_eq!(got.unwrap().kind, ChangeKind::Resolved);
                        a.status = AlertStatus::Resolved;
                        a.resolved = Some((Some("bob".into()), at));
                    } else {
                        let is_refused = matches!(got, Err(StoreError::InvalidTransition { .. }));
                        prop_assert!(is_refused);
                    }
                }
                Op::Feedback { pick: p, acc, comment } => {
                    let Some(id) = pick(p) else { continue };
                    let comment = comment.then(|| format!("c{step}"));
                    let got = s.feedback("acme", &id, acc, "eve", at, comment.clone()).unwrap();
                    prop_assert_eq!(got.kind, ChangeKind::Updated);
                    r.alerts.get_mut(&id).unwrap().feedback = Some((acc, "eve".into(), at, comment));
                }
            }
        }
        check_against(&s, &r)?;
        let before = all(&s, "acme");
        let seq = s.last_seq().unwrap();
        let changes = s.changes_since(None, 0, usize::MAX).unwrap();
        prop_assert_eq!(changes.len(), before.len(), "one change-log entry per alert");
        prop_assert_eq!(changes.last().map(|c| c.0), Some(seq).filter(|_| !before.is_empty()));

        // Fisher–Yates with xorshift: every record again, in a random order.
        let mut x = shuffle_seed | 1;
        for i in (1..delivered.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            delivered.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for rec in &delivered {
            let got = s.apply(rec).unwrap();
            prop_assert!(got.is_none(), "re-delivery of {} changed {:?}", rec.id, got);
        }
        prop_assert_eq!(all(&s, "acme"), before);
        prop_assert_eq!(s.last_seq().unwrap(), seq);
    }
}
