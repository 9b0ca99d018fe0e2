use super::*;
use crate::records::SourcePosition;

const EXAMPLE: &str = include_str!("../../../../config/prognos.example.toml");

fn mapper() -> SchemaMapper {
    SchemaMapper::new(&Config::from_toml_str(EXAMPLE).unwrap())
}

fn json(org: &str, text: &str) -> RawRow {
    RawRow {
        pos: SourcePosition {
            partition: 2,
            offset: 17,
        },
        organization_id: Some(org.to_string()),
        payload: RawPayload::Json {
            text: text.to_string(),
        },
    }
}

fn reason(r: Result<CanonicalRow, Box<DeadLetter>>) -> (DeadLetterReason, String) {
    let d = r.expect_err("row must be refused");
    (d.reason, d.detail)
}

const ACME_OK: &str = r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:30.000Z","hz1pv":880.5,"hz2pv":879.1,"hz3pv":881.0,"hzsp":880.0,"hz1out":55.0,"hz2out":51.2,"hz3out":60.0,"cppv":1.1,"cpsp":1.1,"oiltemp":62.0,"door_open":false,"cycle_on":true,"hz1hfail":false,"tcfail":false,"oilfail":false,"cpfail":false,"extra":{"x":[1,2]}}"#;

#[test]
fn maps_each_example_org_from_its_own_columns() {
    let m = mapper();
    let r = m.map(&json("acme-heat", ACME_OK)).unwrap();
    assert_eq!(r.organization_id, "acme-heat");
    assert_eq!(r.machine_id, "IQ-01");
    assert_eq!(r.ts, 1_704_067_230_000);
    assert_eq!(
        r.pos,
        SourcePosition {
            partition: 2,
            offset: 17
        }
    );
    assert_eq!(r.values.len(), 16);
    assert_eq!(r.values[0], 880.5);
    assert_eq!(r.values[11], 1.0, "cycle_on true");
    assert_eq!(r.values[10], 0.0, "door_open false");

    let b = m
        .map(&json(
            "borealis-forge",
            r#"{"asset":"BF-02","time_ms":1704067230000,"Zone1_Temp_C":870,"DoorOpen":1,"HeaterAlarm":"off"}"#,
        ))
        .unwrap();
    assert_eq!(b.ts, 1_704_067_230_000);
    assert_eq!(b.values[0], 870.0);
    assert_eq!(b.values[10], 1.0);
    assert_eq!(b.values[12], 0.0);
    assert!(b.values[1].is_nan(), "absent column is missing");

    let c = m
        .map(&json(
            "cobalt-thermal",
            r#"{"machine":7,"event_time":"2024-01-01T01:00:30+01:00","t_zone_a":"851.25","t_zone_b":null,"door":"Yes"}"#,
        ))
        .unwrap();
    assert_eq!(c.machine_id, "7");
    assert_eq!(c.ts, 1_704_067_230_000);
    assert_eq!(c.values[0], 851.25);
    assert!(c.values[1].is_nan());
    assert_eq!(c.values[8], 1.0);
}

#[test]
fn map_mut_moves_the_org_only_when_the_row_maps() {
    let m = mapper();
    let mut raw = json("acme-heat", ACME_OK);
    let owned = m.map_mut(&mut raw).unwrap();
    assert_eq!(owned, m.map(&json("acme-heat", ACME_OK)).unwrap());
    assert_eq!(raw.organization_id, None);
    // Room for the derived values, so appending them does not reallocate.
    let cfg = Config::from_toml_str(EXAMPLE).unwrap();
    assert!(owned.values.capacity() >= cfg.orgs["acme-heat"].value_signals().len());
    let mut bad = json("acme-heat", "{not json");
    let dead = m.map_mut(&mut bad).unwrap_err();
    assert_eq!(dead.organization_id.as_deref(), Some("acme-heat"));
    assert_eq!(bad.organization_id.as_deref(), Some("acme-heat"));
    let mut unknown = json("nobody", ACME_OK);
    assert!(m.map_mut(&mut unknown).is_err());
    assert_eq!(unknown.organization_id.as_deref(), Some("nobody"));
}

#[test]
fn csv_rows_map_by_header() {
    let m = mapper();
    let header: Arc<[String]> = ["machine", "event_time", "t_zone_a", "door", "note"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .into();
    let row = |text: &str| RawRow {
        pos: SourcePosition {
            partition: 0,
            offset: 3,
        },
        organization_id: Some("cobalt-thermal".into()),
        payload: RawPayload::Csv {
            header: header.clone(),
            text: text.into(),
        },
    };
    let r = m
        .map(&row(
            "CT-F01,1704067230000,851.5,true,\"a, \"\"quoted\"\" note\"\r\n",
        ))
        .unwrap();
    assert_eq!(r.machine_id, "CT-F01");
    assert_eq!(r.values[0], 851.5);
    assert_eq!(r.values[8], 1.0);
    let r = m.map(&row("CT-F01,1704067230000,,0,")).unwrap();
    assert!(r.values[0].is_nan());
    assert_eq!(
        reason(m.map(&row("CT-F01,1704067230000,851.5"))).0,
        DeadLetterReason::MalformedCsv
    );
    assert_eq!(
        reason(m.map(&row("CT-F01,1704067230000,851.5,true,\"open"))).0,
        DeadLetterReason::MalformedCsv
    );
}

#[test]
fn every_kind_of_bad_row_gets_its_reason() {
    let m = mapper();
    let cases: &[(&str, &str, DeadLetterReason, &str)] = &[
        (
            "acme-heat",
            "{not json",
            DeadLetterReason::MalformedJson,
            "not a JSON object",
        ),
        (
            "acme-heat",
            "[1,2,3]",
            DeadLetterReason::MalformedJson,
            "not a JSON object",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01"} trailing"#,
            DeadLetterReason::MalformedJson,
            "not a JSON object",
        ),
        (
            "nobody",
            ACME_OK,
            DeadLetterReason::UnknownOrg,
            "`nobody` is not configured",
        ),
        (
            "acme-heat",
            r#"{"timestamp":"2024-01-01T00:00:00Z"}"#,
            DeadLetterReason::MissingMachine,
            "furnace_id",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"","timestamp":"2024-01-01T00:00:00Z"}"#,
            DeadLetterReason::MissingMachine,
            "furnace_id",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":true,"timestamp":"2024-01-01T00:00:00Z"}"#,
            DeadLetterReason::MissingMachine,
            "furnace_id",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01"}"#,
            DeadLetterReason::MissingTime,
            "timestamp",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":null}"#,
            DeadLetterReason::MissingTime,
            "timestamp",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"yesterday"}"#,
            DeadLetterReason::BadTime,
            "timestamp",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":1.5}"#,
            DeadLetterReason::BadTime,
            "timestamp",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"1970-01-01T00:00:00Z"}"#,
            DeadLetterReason::AbsurdTime,
            "outside 2000-01-01..2100-01-01",
        ),
        (
            "borealis-forge",
            r#"{"asset":"B","time_ms":99999999999999}"#,
            DeadLetterReason::AbsurdTime,
            "outside",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":"hot"}"#,
            DeadLetterReason::WrongType,
            "`hz1pv`: expected a number",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":true}"#,
            DeadLetterReason::WrongType,
            "`hz1pv`",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":[1]}"#,
            DeadLetterReason::WrongType,
            "`hz1pv`",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","door_open":2}"#,
            DeadLetterReason::WrongType,
            "`door_open`: expected a boolean",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","door_open":"maybe"}"#,
            DeadLetterReason::WrongType,
            "`door_open`",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":"inf"}"#,
            DeadLetterReason::NonFinite,
            "`hz1pv` is infinite",
        ),
        (
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":1e400}"#,
            DeadLetterReason::MalformedJson,
            "number out of range",
        ),
    ];
    for (org, text, want, detail) in cases {
        let d = m.map(&json(org, text)).expect_err(text);
        assert_eq!(d.reason, *want, "{text}: {}", d.detail);
        assert!(d.detail.contains(detail), "{text}: {}", d.detail);
        assert_eq!(d.payload, *text, "dead letter keeps the original payload");
        assert_eq!((d.partition, d.offset), (2, 17));
        if *want != DeadLetterReason::UnknownOrg {
            assert_eq!(d.organization_id.as_deref(), Some(*org));
        }
    }
    let no_org = RawRow {
        organization_id: None,
        ..json("x", ACME_OK)
    };
    assert_eq!(reason(m.map(&no_org)).0, DeadLetterReason::UnknownOrg);
}

#[test]
fn nan_strings_are_missing_not_errors() {
    let m = mapper();
    let r = m
        .map(&json(
            "acme-heat",
            r#"{"furnace_id":"IQ-01","timestamp":"2024-01-01T00:00:00Z","hz1pv":"NaN","hz2pv":"","door_open":null}"#,
        ))
        .unwrap();
    assert!(r.values[0].is_nan() && r.values[1].is_nan() && r.values[10].is_nan());
}

proptest::proptest! {
    /// Whatever bytes arrive, mapping returns a row or a dead letter: it never panics.
    #[test]
    fn never_panics_on_arbitrary_input(text in ".{0,200}", org in proptest::sample::select(vec!["acme-heat", "borealis-forge", "x"])) {
        let m = mapper();
        let _ = m.map(&json(org, &text));
    }

    #[test]
    fn never_panics_on_json_shaped_input(
        machine in proptest::option::of(".{0,6}"),
        ts in proptest::option::of(proptest::prelude::any::<i64>()),
        v in proptest::prelude::any::<f64>(),
    ) {
        let m = mapper();
        let mut obj = serde_json::Map::new();
        if let Some(mc) = machine { obj.insert("asset".into(), mc.into()); }
        if let Some(t) = ts { obj.insert("time_ms".into(), t.into()); }
        obj.insert("Zone1_Temp_C".into(), serde_json::json!(v));
        let _ = m.map(&json("borealis-forge", &serde_json::Value::Object(obj).to_string()));
    }
}

#[test]
fn invalid_utf8_is_a_dead_letter_naming_the_byte() {
    let bytes = b"{\"furnace_id\":\"IQ-\xff\xfe01\"}";
    let row = RawRow {
        payload: RawPayload::from_bytes(bytes, |text| RawPayload::Json { text }),
        ..json("acme-heat", "")
    };
    let d = mapper().map(&row).expect_err("not UTF-8");
    assert_eq!(d.reason, DeadLetterReason::InvalidUtf8);
    assert_eq!(d.reason.as_str(), "invalid_utf8");
    assert_eq!(d.detail, "invalid UTF-8 at byte 18");
    assert_eq!(d.payload, "{\"furnace_id\":\"IQ-\u{fffd}\u{fffd}01\"}");
    assert_eq!(d.organization_id.as_deref(), Some("acme-heat"));
}
