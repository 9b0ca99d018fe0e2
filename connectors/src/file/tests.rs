use super::{FileFormat, FileInput, FileSource};
use prognos_dataflows::records::RawPayload;
use prognos_dataflows::source::{Source, SourceEvent, SourceStatus};

/// Every row `path` yields, as (line, payload).
fn rows(path: &std::path::Path, format: FileFormat) -> Vec<(u64, RawPayload)> {
    let mut src = FileSource::new(vec![FileInput {
        path: path.to_path_buf(),
        org: "acme-heat".into(),
        partition: 0,
        format,
    }]);
    let mut out = Vec::new();
    while src.poll(&mut out, 100) != SourceStatus::Finished {}
    out.into_iter()
        .filter_map(|e| match e {
            SourceEvent::Row(r) => Some((r.pos.offset, r.payload)),
            _ => None,
        })
        .collect()
}

#[test]
fn rows_that_are_not_utf8_are_marked_with_their_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("a.jsonl");
    std::fs::write(
        &jsonl,
        b"{\"furnace_id\":\"IQ-01\"}\n{\"furnace_id\":\"IQ-\xff\xfe01\"}\n{\"x\":1}\n",
    )
    .unwrap();
    let got = rows(&jsonl, FileFormat::Jsonl);
    assert_eq!(got.len(), 3);
    assert!(matches!(&got[0].1, RawPayload::Json { text } if text == "{\"furnace_id\":\"IQ-01\"}"));
    assert_eq!(
        got[1],
        (
            1,
            RawPayload::InvalidUtf8 {
                text: "{\"furnace_id\":\"IQ-\u{fffd}\u{fffd}01\"}".into(),
                valid_up_to: 18,
            }
        )
    );
    assert!(matches!(&got[2].1, RawPayload::Json { .. }));

    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, b"machine,temp\nM-1,1.0\nM-\x802,2.0\n").unwrap();
    let got = rows(&csv, FileFormat::Csv);
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[0].1, RawPayload::Csv { text, .. } if text == "M-1,1.0"));
    assert_eq!(
        got[1],
        (
            2,
            RawPayload::InvalidUtf8 {
                text: "M-\u{fffd}2,2.0".into(),
                valid_up_to: 2,
            }
        )
    );
}
