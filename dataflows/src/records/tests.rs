use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

// 2000-01-01 .. 2100-01-01 in ms.
fn ts() -> impl Strategy<Value = i64> {
    946_684_800_000i64..4_102_444_800_000
}

fn num() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1e9f64..1e9,
        1 => Just(f64::NAN),
        1 => any::<f64>().prop_filter("finite", |x| x.is_finite()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _\\-\"\\\\é]{0,12}"
}

fn pos() -> impl Strategy<Value = SourcePosition> {
    (any::<u32>(), any::<u64>())
        .prop_map(|(partition, offset)| SourcePosition { partition, offset })
}

/// Serialize, parse back, serialize again: the JSON must be identical, and the
/// parsed value must equal the original wherever equality is defined (NaN aside).
fn round_trip<T>(v: &T) -> T
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let text = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    back
}

fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.is_nan() && y.is_nan()) || x == y)
}

prop_compose! {
    fn canonical_row()(org in name(), machine in name(), ts in ts(), pos in pos(),
                       values in prop::collection::vec(num(), 0..20)) -> CanonicalRow {
        CanonicalRow { organization_id: org, machine_id: machine, ts, pos, values }
    }
}

prop_compose! {
    fn prediction()(org in name(), machine in name(), ts in ts(), p in 0.0f64..=1.0, c in 0.0f64..=1.0,
                    comp in name(), ttf in 0.0f64..120.0, ver in name(), at in ts(),
                    feats in prop::collection::vec((name(), num()), 0..8),
                    pt in 0.0f64..10.0, lt in 0.0f64..100.0, fc in 0usize..200,
                    health in prop_oneof![Just(ModelHealth::Healthy), Just(ModelHealth::Degraded), Just(ModelHealth::Failed)],
                    fb in any::<bool>()) -> Prediction {
        Prediction {
            organization_id: org, machine_id: machine, ts, probability: p, confidence: c,
            predicted_component: comp, time_to_failure: ttf, model_version: ver, timestamp: at,
            features: FeatureMap(feats),
            metadata: PredictionMetadata { processing_time: pt, model_load_time: lt, feature_count: fc, model_health: health, fallback_used: fb, fallback_reason: fb.then(|| "no_model".to_string()) },
        }
    }
}

prop_compose! {
    fn alert()(id in "[0-9a-f]{32}", org in name(), machine in name(),
               t in prop_oneof![Just(AlertType::Critical), Just(AlertType::Warning), Just(AlertType::Predictive)],
               sev in prop_oneof![Just(Severity::Critical), Just(Severity::Warning)],
               comp in name(), p in 0.0f64..=1.0, c in 0.0f64..=1.0, ttf in 0.0f64..60.0, ver in name(),
               rule in prop::option::of(name()), msg in name(), ts in ts(), created in ts(),
               resolved in prop::option::of(ts()),
               status in prop_oneof![Just(AlertStatus::Active), Just(AlertStatus::Acknowledged), Just(AlertStatus::Resolved)],
               sup in any::<u32>(), top in prop::collection::vec((name(), num(), -1.0f64..1.0), 0..5),
               acc in prop::option::of(any::<bool>()), fat in prop::option::of(ts()), fby in prop::option::of(name())) -> Alert {
        Alert {
            id, organization_id: org, machine_id: machine, alert_type: t, severity: sev, component: comp,
            probability: p, confidence: c, time_to_failure: ttf, model_version: ver, rule, message: msg,
            ts, created_at: created, resolved_at: resolved, status, suppressed_count: sup,
            top_features: top.into_iter().map(|(name, value, contribution)| TopFeature { name, value, contribution }).collect(),
            is_accurate: acc, feedback_at: fat, feedback_by: fby,
        }
    }
}

proptest! {
    #[test]
    fn raw_row_round_trips(pos in pos(), org in prop::option::of(name()), text in ".{0,40}",
                           header in prop::collection::vec(name(), 0..5), csv in any::<bool>()) {
        let payload = if csv {
            RawPayload::Csv { header: header.into(), text }
        } else {
            RawPayload::Json { text }
        };
        let row = RawRow { pos, organization_id: org, payload };
        prop_assert_eq!(round_trip(&row), row);
    }

    #[test]
    fn canonical_row_round_trips(row in canonical_row()) {
        let back = round_trip(&row);
        prop_assert!(same_floats(&back.values, &row.values));
        prop_assert_eq!((back.organization_id, back.machine_id, back.ts, back.pos),
                        (row.organization_id, row.machine_id, row.ts, row.pos));
    }

    #[test]
    fn feature_row_round_trips(row in canonical_row()) {
        let f = FeatureRow { organization_id: row.organization_id, machine_id: row.machine_id, ts: row.ts, pos: row.pos, features: row.values.clone(), values: row.values.iter().map(|v| -v).collect() };
        // `-v`, not `2 * v`: doubling a finite value can overflow to infinity, which JSON writes as null.
        let back = round_trip(&f);
        prop_assert!(same_floats(&back.features, &f.features));
        prop_assert!(same_floats(&back.values, &f.values));
    }

    #[test]
    fn prediction_round_trips(p in prediction()) {
        let back = round_trip(&p);
        let names = |m: &FeatureMap| m.0.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let vals = |m: &FeatureMap| m.0.iter().map(|(_, v)| *v).collect::<Vec<_>>();
        // Duplicate names are not possible in a model, but the map keeps order and all entries.
        prop_assert_eq!(names(&back.features), names(&p.features));
        prop_assert!(same_floats(&vals(&back.features), &vals(&p.features)));
        prop_assert_eq!(back.metadata, p.metadata);
        prop_assert_eq!(back.probability, p.probability);
        prop_assert_eq!(back.ts, p.ts);
    }

    #[test]
    fn alert_round_trips(a in alert()) {
        let back = round_trip(&a);
        prop_assert_eq!(back.top_features.len(), a.top_features.len());
        for (x, y) in back.top_features.iter().zip(&a.top_features) {
            prop_assert!(same_floats(&[x.value], &[y.value]));
            prop_assert_eq!(x.contribution, y.contribution);
        }
        let strip = |mut a: Alert| { a.top_features.clear(); a };
        prop_assert_eq!(strip(back), strip(a));
    }

    #[test]
    fn dead_letter_round_trips(i in 0usize..11, partition in any::<u32>(), offset in any::<u64>(),
                               org in prop::option::of(name()), payload in ".{0,40}", detail in ".{0,20}") {
        let d = DeadLetter { reason: DeadLetterReason::ALL[i], partition, offset, organization_id: org, payload, detail };
        prop_assert_eq!(round_trip(&d), d);
    }

    #[test]
    fn failure_event_round_trips(org in name(), m in name(), c in name(), start in ts(), len in 0i64..86_400_000) {
        let e = FailureEvent { organization_id: org, machine_id: m, component: c, start, end: start + len };
        prop_assert_eq!(round_trip(&e), e);
    }
}

#[test]
fn alert_wire_shape_uses_the_seed_names() {
    let a = Alert {
        id: "a1".into(),
        organization_id: "acme-heat".into(),
        machine_id: "IQ-01".into(),
        alert_type: AlertType::Predictive,
        severity: Severity::Warning,
        component: "Heating System".into(),
        probability: 0.91,
        confidence: 0.8,
        time_to_failure: 7.5,
        model_version: "v3".into(),
        rule: None,
        message: "Heating System failure predicted".into(),
        ts: 0,
        created_at: 1_000,
        resolved_at: None,
        status: AlertStatus::Active,
        suppressed_count: 2,
        top_features: vec![TopFeature {
            name: "zone1_output".into(),
            value: f64::NAN,
            contribution: 0.5,
        }],
        is_accurate: None,
        feedback_at: None,
        feedback_by: None,
    };
    let v = serde_json::to_value(&a).unwrap();
    for key in [
        "id",
        "organizationId",
        "type",
        "component",
        "probability",
        "confidence",
        "timeToFailure",
        "modelVersion",
        "createdAt",
        "resolvedAt",
        "isAccurate",
        "feedbackAt",
        "feedbackBy",
        "machineId",
        "ts",
        "severity",
        "status",
        "suppressedCount",
        "topFeatures",
    ] {
        assert!(v.get(key).is_some(), "alert JSON lacks {key}: {v}");
    }
    assert_eq!(v["type"], "PREDICTIVE");
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["severity"], "WARNING");
    assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    assert_eq!(v["createdAt"], "1970-01-01T00:00:01.000Z");
    assert_eq!(v["resolvedAt"], Value::Null);
    assert_eq!(v["topFeatures"][0]["value"], Value::Null);
}

#[test]
fn dead_letter_and_event_wire_shapes() {
    let d = DeadLetter {
        reason: DeadLetterReason::LateIdle,
        partition: 3,
        offset: 42,
        organization_id: None,
        payload: "{}".into(),
        detail: "ts below frontier".into(),
    };
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"reason": "late_idle", "partition": 3, "offset": 42, "payload": "{}", "detail": "ts below frontier"})
    );
    for r in DeadLetterReason::ALL {
        assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
    }
    let e: FailureEvent = serde_json::from_value(json!({
        "organizationId": "acme-heat", "machineId": "IQ-01", "component": "Quench System",
        "start": "2026-01-01T00:10:00Z", "end": "2026-01-01T00:40:00.000Z"
    }))
    .unwrap();
    assert_eq!(e.end - e.start, 30 * 60_000);
    assert!(serde_json::from_value::<FailureEvent>(json!({
        "organizationId": "a", "machineId": "m", "component": "c", "start": "soon", "end": "later"
    }))
    .is_err());
}

#[test]
fn prediction_features_keep_model_order_and_nan_is_null() {
    let m = FeatureMap(vec![
        ("z".into(), 1.0),
        ("a".into(), f64::NAN),
        ("m".into(), 2.5),
    ]);
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(text, r#"{"z":1.0,"a":null,"m":2.5}"#);
    let back: FeatureMap = serde_json::from_str(&text).unwrap();
    assert_eq!(back.0[0].0, "z");
    assert!(back.0[1].1.is_nan());
}
