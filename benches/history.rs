//! History write cost: `HistoryWriter::write` of mapped rows (acme-heat's 16
//! signals, 16 furnaces at 30 s, ~0.5% NaN) with a flush (fsync) every 4,096
//! rows as a checkpointing worker does, then the segments sealed into Parquet;
//! prints bytes per row on disk. And reading them back (deduplicated, ordered).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prognos::training::history::{HistoryReader, HistorySettings, HistoryStore, HistoryWriter};
use prognos_dataflows::records::{CanonicalRow, SourcePosition};
use std::hint::black_box;

const ORG: &str = "acme-heat";
const ROWS: usize = 100_000;
const MACHINES: usize = 16;

mod common;
use common::SplitMix;

fn rows(n_signals: usize) -> Vec<CanonicalRow> {
    let mut r = SplitMix(11);
    let t0 = 1_780_000_000_000i64;
    (0..ROWS)
        .map(|i| CanonicalRow {
            organization_id: ORG.into(),
            machine_id: format!("IQ-{:02}", i % MACHINES),
            ts: t0 + (i / MACHINES) as i64 * 30_000,
            pos: SourcePosition {
                partition: 0,
                offset: i as u64,
            },
            values: (0..n_signals)
                .map(|k| {
                    if r.unit() < 0.005 {
                        f64::NAN
                    } else if k >= 10 {
                        f64::from(r.unit() < 0.05)
                    } else {
                        900.0 + 5.0 * (r.unit() - 0.5)
                    }
                })
                .collect(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = prognos::settings::load_with_env(None, Vec::new())
        .expect("example config")
        .config;
    let n = config.orgs[ORG].signals.len();
    let data = rows(n);
    let mut g = c.benchmark_group("history");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let mut bytes_per_row = 0.0;
    g.bench_function("write_flush_seal", |b| {
        b.iter(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let mut w = HistoryWriter::open(
                &HistoryStore::dir(&tmp.path().join("h")),
                &tmp.path().join("wal/bench"),
                &config,
                HistorySettings::default(),
            )
            .expect("open");
            for chunk in data.chunks(4096) {
                w.write(chunk).expect("write");
                w.flush().expect("flush");
            }
            w.close().expect("close");
            bytes_per_row = w.parquet_bytes as f64 / ROWS as f64;
            black_box(w.rows)
        })
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut w = HistoryWriter::open(
        &HistoryStore::dir(&tmp.path().join("h")),
        &tmp.path().join("wal/bench"),
        &config,
        HistorySettings::default(),
    )
    .expect("open");
    w.write(&data).expect("write");
    w.close().expect("close");
    let reader = HistoryReader::new(&HistoryStore::dir(&tmp.path().join("h")));
    let signals: Vec<String> = config.orgs[ORG]
        .signals
        .iter()
        .map(|s| s.name.clone())
        .collect();
    g.bench_function("read_dedup", |b| {
        b.iter(|| {
            reader
                .scan(ORG, i64::MIN, i64::MAX, &signals, |rows| {
                    black_box(rows.len());
                    Ok(())
                })
                .expect("scan")
        })
    });
    g.finish();
    println!("history: {bytes_per_row:.1} bytes per row on disk ({n} signals, Snappy Parquet)");
}

criterion_group!(benches, bench);
criterion_main!(benches);
