//! History store: write-ahead → Parquet, recovery after a crash, deduplication
//! on read, retention and compaction, against a naive reference.

use super::*;
use prognos_dataflows::records::{CanonicalRow, SourcePosition};

fn config() -> prognos_dataflows::config::Config {
    crate::settings::load_with_env(None, Vec::new())
        .unwrap()
        .config
}

fn row(org: &str, machine: &str, ts: i64, part: u32, off: u64, v: f64) -> CanonicalRow {
    CanonicalRow {
        organization_id: org.into(),
        machine_id: machine.into(),
        ts,
        pos: SourcePosition {
            partition: part,
            offset: off,
        },
        values: vec![v, f64::NAN, -v],
    }
}

fn signals(org: &str) -> Vec<String> {
    config().orgs[org]
        .signals
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

const ORG: &str = "acme-heat";
const T0: i64 = 1_780_000_000_000;

#[test]
fn rows_written_come_back_deduplicated_in_event_time_order() {
    let tmp = tempfile::tempdir().unwrap();
    round_trip(
        &HistoryStore::dir(&tmp.path().join("h")),
        &tmp.path().join("wal/run"),
    );
}

fn round_trip(root: &HistoryStore, wal: &std::path::Path) {
    let (root, wal) = (root.clone(), wal.to_path_buf());
    let mut w = HistoryWriter::open(&root, &wal, &config(), HistorySettings::default()).unwrap();
    // Two days, two machines, out of order, and the same (machine, ts) twice:
    // the lower source position must win whichever came first.
    let rows = vec![
        row(ORG, "m2", T0 + 1_000, 0, 5, 2.0),
        row(ORG, "m1", T0, 0, 1, 1.0),
        row(ORG, "m1", T0 + DAY_MS, 0, 9, 3.0),
        row(ORG, "m1", T0, 1, 0, 99.0), // duplicate, higher position
        row(ORG, "m1", T0 + 500, 0, 3, 4.0),
    ];
    w.write(&rows).unwrap();
    w.flush().unwrap();
    assert!(
        HistoryReader::new(&root).days(ORG).unwrap().is_empty(),
        "open segments are not visible before they close"
    );
    w.close().unwrap();
    assert_eq!(w.segments, 2, "one segment per (org, day)");
    let r = HistoryReader::new(&root);
    let sig = signals(ORG);
    let mut got = Vec::new();
    let n = r
        .scan(ORG, i64::MIN, i64::MAX, &sig, |rs| {
            got.extend(rs.iter().map(|r| (r.machine.clone(), r.ts, r.values[0])));
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        got,
        vec![
            ("m1".to_string(), T0, 1.0),
            ("m1".to_string(), T0 + 500, 4.0),
            ("m2".to_string(), T0 + 1_000, 2.0),
            ("m1".to_string(), T0 + DAY_MS, 3.0),
        ]
    );
    let s = r.summary(ORG).unwrap();
    assert_eq!((s.rows, s.duplicates, s.days, s.segments), (4, 1, 2, 2));
    assert_eq!(s.machines[0].machine_id, "m1");
    assert_eq!(s.machines[0].rows, 3);
    assert_eq!(s.machines[0].first_ts, T0);
    assert_eq!(s.machines[0].last_ts, T0 + DAY_MS);
    assert_eq!(s.machines[0].gaps, 1, "a day without rows is a gap");
    // NaN survives the round trip; a signal a segment lacks reads as NaN.
    let (day_rows, _) = r
        .read_day(ORG, day_of(T0), &[sig[1].clone(), "nope".into()])
        .unwrap();
    assert!(
        day_rows
            .iter()
            .all(|r| r.values[0].is_nan() && r.values[1].is_nan())
    );
    assert_eq!(r.last_ts(ORG).unwrap(), Some(T0 + DAY_MS));
}

#[test]
fn a_crash_loses_no_flushed_row_and_a_replay_adds_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, wal) = (
        HistoryStore::dir(&tmp.path().join("h")),
        tmp.path().join("wal/worker-0"),
    );
    let cfg = config();
    {
        let mut w = HistoryWriter::open(&root, &wal, &cfg, HistorySettings::default()).unwrap();
        w.write(
            &(0..100)
                .map(|i| row(ORG, "m", T0 + i * 1000, 0, i as u64, i as f64))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        w.flush().unwrap();
        // Not flushed: may or may not survive; a replay brings it again.
        w.write(&[row(ORG, "m", T0 + 100_000, 0, 100, 100.0)])
            .unwrap();
        std::mem::forget(w); // kill -9: nothing closed, buffers lost
    }
    // Tear the last record as a crash in the middle of a write would.
    let f = std::fs::read_dir(&wal)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    // Restart: the earlier segment is sealed, the replay writes rows 50.. again.
    let mut w = HistoryWriter::open(&root, &wal, &cfg, HistorySettings::default()).unwrap();
    w.write(
        &(50..150)
            .map(|i| row(ORG, "m", T0 + i * 1000, 0, i as u64, i as f64))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    w.close().unwrap();
    let r = HistoryReader::new(&root);
    let mut ts = Vec::new();
    r.scan(ORG, i64::MIN, i64::MAX, &signals(ORG), |rs| {
        ts.extend(rs.iter().map(|r| r.ts));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        ts,
        (0..150).map(|i| T0 + i * 1000).collect::<Vec<_>>(),
        "every row exactly once"
    );
    assert!(
        std::fs::read_dir(&wal).unwrap().next().is_none(),
        "no write-ahead file left"
    );
}

#[test]
fn segments_close_on_their_row_budget_and_compaction_merges_a_day() {
    let tmp = tempfile::tempdir().unwrap();
    budgets_compaction_retention(
        &HistoryStore::dir(&tmp.path().join("h")),
        &tmp.path().join("wal/run"),
    );
}

/// The same store contract in an S3-compatible object store: sealing, reading
/// back deduplicated, compaction, retention, and the import ledger.
#[test]
fn the_history_works_the_same_in_an_object_store() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let s3 = test_s3::TestS3::start(root, "history");
    let tmp = tempfile::tempdir().unwrap();
    round_trip(&s3.store("a").unwrap(), &tmp.path().join("wal/a"));
    let store = s3.store("b/nested").unwrap();
    budgets_compaction_retention(&store, &tmp.path().join("wal/b"));
    assert!(
        HistoryReader::new(&s3.store("a").unwrap())
            .days(ORG)
            .unwrap()
            .len()
            == 2,
        "two prefixes of one bucket are two histories"
    );
    // Importing a file twice adds nothing: the ledger is in the store too.
    let export = tmp.path().join("export.jsonl");
    let line = |ts: i64| {
        format!(
            "{{\"furnace_id\":\"m9\",\"timestamp\":\"{}\",\"hz1pv\":1.5}}\n",
            prognos_dataflows::time::format_rfc3339_ms(ts)
        )
    };
    std::fs::write(&export, format!("{}{}", line(T0), line(T0 + 1000))).unwrap();
    let cfg = config();
    let imp = s3.store("c").unwrap();
    let mut w = HistoryWriter::open(
        &imp,
        &tmp.path().join("wal/c"),
        &cfg,
        HistorySettings::default(),
    )
    .unwrap();
    let first = import::import(
        &mut w,
        &cfg,
        ORG,
        std::slice::from_ref(&export),
        |_| {},
        |_| {},
    )
    .unwrap();
    let again = import::import(
        &mut w,
        &cfg,
        ORG,
        std::slice::from_ref(&export),
        |_| {},
        |_| {},
    )
    .unwrap();
    assert_eq!(
        (first.rows, again.rows, again.already_imported.len()),
        (2, 0, 1)
    );
    assert_eq!(HistoryReader::new(&imp).summary(ORG).unwrap().rows, 2);
}

fn budgets_compaction_retention(root: &HistoryStore, wal: &std::path::Path) {
    let (root, wal) = (root.clone(), wal.to_path_buf());
    let settings = HistorySettings {
        segment_max_rows: 10,
        segment_max_age_s: 3600,
    };
    let mut w = HistoryWriter::open(&root, &wal, &config(), settings).unwrap();
    for k in 0..5 {
        w.write(
            &(0..10)
                .map(|i| {
                    row(
                        ORG,
                        "m",
                        T0 + (k * 10 + i) * 1000,
                        0,
                        (k * 10 + i) as u64,
                        1.0,
                    )
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
        w.flush().unwrap();
    }
    // A replayed stretch lands in another segment.
    w.write(
        &(20..30)
            .map(|i| row(ORG, "m", T0 + i * 1000, 0, i as u64, 1.0))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    w.close().unwrap();
    let r = HistoryReader::new(&root);
    let day = day_of(T0);
    assert_eq!(r.segments(ORG, day).unwrap().len(), 6);
    let before = r.read_day(ORG, day, &signals(ORG)).unwrap().0;
    assert_eq!(compact(&r, ORG, day, &signals(ORG), 4).unwrap(), 6);
    assert_eq!(r.segments(ORG, day).unwrap().len(), 1);
    let (after, dups) = r.read_day(ORG, day, &signals(ORG)).unwrap();
    assert_eq!(dups, 0, "compaction dropped the duplicates");
    assert_eq!(after.len(), 50);
    assert_eq!(
        after.iter().map(|r| (r.ts, r.pos)).collect::<Vec<_>>(),
        before.iter().map(|r| (r.ts, r.pos)).collect::<Vec<_>>()
    );
    assert_eq!(
        compact(&r, ORG, day, &signals(ORG), 2).unwrap(),
        0,
        "one file is left alone"
    );
    // Retention drops whole days.
    assert_eq!(r.retain(ORG, day).unwrap(), Vec::<i64>::new());
    assert_eq!(r.retain(ORG, day + 1).unwrap(), vec![day]);
    assert!(r.days(ORG).unwrap().is_empty());
}

#[test]
fn a_file_torn_before_its_header_reached_the_disk_is_dropped_at_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, wal) = (
        HistoryStore::dir(&tmp.path().join("h")),
        tmp.path().join("wal/run"),
    );
    std::fs::create_dir_all(&wal).unwrap();
    // kill -9 right after the files were created: empty, and half a magic line.
    std::fs::write(wal.join("a-000001.wal"), b"").unwrap();
    std::fs::write(wal.join("a-000002.wal"), b"prognos-hist").unwrap();
    std::fs::write(
        wal.join("a-000003.wal"),
        b"prognos-history-wal 1\n{\"org\":",
    )
    .unwrap();
    HistoryWriter::open(&root, &wal, &config(), HistorySettings::default()).unwrap();
    assert!(std::fs::read_dir(&wal).unwrap().next().is_none());
    // Anything else is refused, not trusted.
    std::fs::write(
        wal.join("b-000001.wal"),
        b"garbage that is no write-ahead file",
    )
    .unwrap();
    assert!(HistoryWriter::open(&root, &wal, &config(), HistorySettings::default()).is_err());
}

#[test]
fn dates_round_trip() {
    for day in [-1, 0, 1, 20_000, day_of(T0)] {
        assert_eq!(day_of_date(&date_of_day(day)), Some(day));
    }
    assert_eq!(date_of_day(0), "1970-01-01");
    assert_eq!(day_of_date("2026-02-30"), None);
    assert_eq!(day_of_date("nope"), None);
}
