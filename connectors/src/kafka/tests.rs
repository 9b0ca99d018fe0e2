use super::OffsetTracker;
use proptest::prelude::*;

proptest! {
    /// Oracle: after any sequence of reads and checkpoints with growing `T`, the
    /// resume offset is the smallest offset of any row ever read with `ts ≥ T`,
    /// or the next offset when there is none.
    #[test]
    fn resume_offsets_match_a_naive_scan(
        batches in prop::collection::vec(
            (prop::collection::vec(-50i64..50, 0..20), 0i64..20), 1..12),
        first in 0i64..1000,
    ) {
        let t = OffsetTracker::default();
        t.start(0, first);
        let mut all: Vec<(i64, i64)> = Vec::new();
        let mut next = first;
        let mut bound = i64::MIN;
        let mut base = 0i64;
        for (tss, step) in batches {
            let rows: Vec<(i64, i64)> = tss
                .iter()
                .enumerate()
                .map(|(i, d)| (next + i as i64, base + d))
                .collect();
            next += rows.len() as i64;
            base += 10;
            t.record(0, &rows);
            all.extend(&rows);
            bound = bound.max(base - 40 + step);
            let want = all.iter().filter(|r| r.1 >= bound).map(|r| r.0).min().unwrap_or(next);
            prop_assert_eq!(t.resume_offsets(bound).get(&0).copied(), Some(want));
        }
    }
}

#[test]
fn partitions_without_rows_resume_where_they_started() {
    let t = OffsetTracker::default();
    t.start(3, 42);
    t.record(5, &[(7, 100), (8, 90), (9, 200)]);
    let r = t.resume_offsets(95);
    assert_eq!(r.get(&3), Some(&42));
    // Offset 7 (ts 100) is the first row at or after 95; 8 is older but later.
    assert_eq!(r.get(&5), Some(&7));
    assert_eq!(t.resume_offsets(150).get(&5), Some(&9));
    assert_eq!(t.resume_offsets(1000).get(&5), Some(&10));
}

/// A message whose payload is not UTF-8 is marked (lossy text, byte offset)
/// for an `invalid_utf8` dead letter; its neighbours are read as they are.
#[test]
fn payloads_that_are_not_utf8_are_marked_with_their_byte_offset() {
    use super::producer::RecordProducer;
    use super::test_broker::TestBroker;
    use super::{KafkaClient, KafkaSource, KafkaSourceConfig, admin};
    use prognos_dataflows::records::RawPayload;
    use prognos_dataflows::source::{Source, SourceEvent, SourceStatus};
    use std::time::Duration;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let broker = TestBroker::start(&root);
    let client = KafkaClient::new(broker.addr());
    admin::create_topic(&client, "scada", 1, false, Duration::from_secs(20)).unwrap();
    let producer = RecordProducer::new(&client, "scada").unwrap();
    producer.send(b"acme-heat", b"{\"furnace_id\":\"IQ-01\"}", 0);
    producer.send(b"acme-heat", b"{\"furnace_id\":\"IQ-\xff\xfe01\"}", 1);
    producer.flush(Duration::from_secs(20)).unwrap();
    let cfg = KafkaSourceConfig {
        client,
        topic: "scada".into(),
        index: 0,
        workers: 1,
        start: Default::default(),
        stop_at_end: true,
        refresh: Duration::from_millis(200),
    };
    let mut src = KafkaSource::new(
        cfg,
        Default::default(),
        Default::default(),
        Duration::from_secs(20),
    )
    .unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while src.poll(&mut out, 100) != SourceStatus::Finished {
        assert!(std::time::Instant::now() < deadline, "{out:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rows: Vec<(u64, RawPayload)> = out
        .into_iter()
        .filter_map(|e| match e {
            SourceEvent::Row(r) => Some((r.pos.offset, r.payload)),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        matches!(&rows[0].1, RawPayload::Json { text } if text == "{\"furnace_id\":\"IQ-01\"}")
    );
    assert_eq!(
        rows[1],
        (
            1,
            RawPayload::InvalidUtf8 {
                text: "{\"furnace_id\":\"IQ-\u{fffd}\u{fffd}01\"}".into(),
                valid_up_to: 18,
            }
        )
    );
}
