//! End-to-end harness (not criterion): prognos against a real broker, printing
//! rows/s, CPU per row and latency percentiles. `cargo bench --bench e2e`.
//!
//! 1. **Throughput.** `prognos simulate --kafka` pre-produces N rows (3 orgs, 10 s
//!    sampling) to a 4-partition topic on a tansu test broker. A bare rdkafka
//!    consumer drains the topic (the broker's ceiling on this machine), then
//!    `prognos worker --until-end` runs the whole pipeline over it, writing alerts
//!    to the alerts topic; its own log gives rows/s and CPU seconds.
//! 2. **Latency.** The same rows, produced at half the measured throughput while a
//!    worker follows the topic; for every notification on the alerts topic, the
//!    time from its row being acknowledged by the broker to the alert arriving at
//!    a consumer. p50/p95/p99.
//! 3. **In-process.** `prognos replay -w 2` over the same rows as files (no
//!    broker): the pipeline's own ceiling.
//!
//! Models: rules only by default. `PROGNOS_E2E_DATA_DIR=DIR` scores with the
//! models active in DIR's registry (e.g. trained by `prognos train --data-dir DIR`);
//! worker and replay read `DIR/models`. `PROGNOS_E2E_ROWS` sets N (default 1M).

use prognos_connectors::kafka::test_broker::TestBroker;
use prognos_connectors::kafka::{KafkaClient, ReaderContext, admin};
use prognos_dataflows::config::Config;
use prognos_dataflows::operators::schema_map::SchemaMapper;
use prognos_dataflows::records::{Alert, AlertStatus, RawPayload, RawRow, SourcePosition};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_prognos");
const PARTITIONS: i32 = 4;

/// (org, machine, ts) of a row.
type RowKey = (String, String, i64);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("command starts");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{o}\n{e}");
    (o, e)
}

/// The JSON log line of `message` (`--log-json`), its fields.
fn log_fields(log: &str, message: &str) -> serde_json::Value {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
        .unwrap_or_else(|| panic!("no `{message}` line in the log:\n{log}"))
}

fn num(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
        v => v.as_f64().unwrap_or(f64::NAN),
    }
}

/// Read every partition of `topic` to its end with a bare consumer: rows/s.
fn drain(broker: &str, topic: &str) -> (u64, f64) {
    let c: BaseConsumer<ReaderContext> = KafkaClient::new(broker)
        .config()
        .set("group.id", "bench-drain")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create_with_context(ReaderContext)
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let t0 = Instant::now();
    let (mut n, mut ended) = (0u64, 0);
    while ended < PARTITIONS {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                n += 1;
                std::hint::black_box(m.payload());
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    (n, t0.elapsed().as_secs_f64())
}

fn worker(broker: &str, topic: &str, alerts: &str, data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "worker",
        "--log-json",
        "--brokers",
        broker,
        "--topic",
        topic,
    ])
    .args(["--alerts-topic", alerts, "--control-topic", "bench.control"])
    .arg("--data-dir")
    .arg(data_dir)
    .env("RUST_LOG", "info,librdkafka=warn");
    c
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probing
    }
    let rows_wanted: u64 = std::env::var("PROGNOS_E2E_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = std::env::var("PROGNOS_E2E_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("data"));
    // 3 orgs × machines × 360 rows per hour.
    let machines = 40u64;
    let hours = (rows_wanted as f64 / (3.0 * machines as f64 * 360.0)).max(1.0);
    let broker = TestBroker::start(&root());
    let addr = broker.addr();
    println!(
        "e2e: broker {addr}, {hours:.1} h × 3 orgs × {machines} furnaces, data dir {}",
        data_dir.display()
    );

    // 1. Throughput.
    let sim = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.args([
            "simulate",
            "--orgs",
            "3",
            "--machines",
            &machines.to_string(),
        ])
        .args(["--hours", &format!("{hours}"), "--seed", "11"])
        .args(["--interval-ms", "10000"])
        .args(extra);
        c
    };
    let t0 = Instant::now();
    run(sim(&[
        "--kafka",
        &addr,
        "--topic",
        "bench.scada",
        "--partitions",
        "4",
    ])
    .env("RUST_LOG", "warn"));
    let produce_s = t0.elapsed().as_secs_f64();
    let (n, drain_s) = drain(&addr, "bench.scada");
    let drain_rate = n as f64 / drain_s;
    let t0 = Instant::now();
    let (_, log) = run(worker(&addr, "bench.scada", "bench.alerts", &data_dir).arg("--until-end"));
    let wall = t0.elapsed().as_secs_f64();
    let f = log_fields(&log, "worker stopped");
    let (rows, secs, cpu) = (num(&f["rows"]), num(&f["seconds"]), num(&f["cpu_seconds"]));
    let rate = rows / secs;
    println!(
        "\n## throughput ({} rows pre-produced in {produce_s:.1} s)",
        n
    );
    println!("bare rdkafka consumer drain:   {drain_rate:>10.0} rows/s");
    println!(
        "prognos worker (1 process × 1): {rate:>10.0} rows/s  ({rows} rows in {secs:.2} s; {wall:.2} s with start-up)"
    );
    println!("ratio worker / drain:          {:>10.2}", rate / drain_rate);
    println!(
        "prognos CPU per row:           {:>10.2} µs  ({cpu:.2} CPU s)",
        cpu / rows * 1e6
    );
    println!("alerts written:                {:>10}", f["alerts_written"]);

    // 2. Latency at half the measured throughput.
    let target = (rate / 2.0).max(1000.0);
    let files = tmp.path().join("sim");
    run(sim(&["--out"]).arg(&files).env("RUST_LOG", "warn"));
    let config: Config = Config::from_toml_str(
        &std::fs::read_to_string(root().join("config/prognos.example.toml")).unwrap(),
    )
    .unwrap();
    let mapper = SchemaMapper::new(&config);
    let orgs = ["acme-heat", "borealis-forge", "cobalt-thermal"];
    let lines: Vec<Vec<String>> = orgs
        .iter()
        .map(|o| {
            std::fs::read_to_string(files.join(format!("{o}.jsonl")))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        })
        .collect();
    let mut latency_worker = worker(&addr, "lat.scada", "lat.alerts", &data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    admin::create_topic(
        &KafkaClient::new(&addr),
        "lat.scada",
        PARTITIONS,
        false,
        Duration::from_secs(30),
    )
    .unwrap();
    // (org, machine, ts) → when the broker had acknowledged the row.
    let mut acked: HashMap<RowKey, Instant> = HashMap::new();
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (addr, done) = (addr.clone(), done.clone());
        std::thread::spawn(move || {
            let c: BaseConsumer<ReaderContext> = KafkaClient::new(&addr)
                .config()
                .set("group.id", "bench-latency")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "10")
                .create_with_context(ReaderContext)
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while admin::partitions(
                &admin::reader(&KafkaClient::new(&addr)).unwrap(),
                "lat.alerts",
            )
            .is_err()
            {
                assert!(Instant::now() < deadline, "no alerts topic");
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("lat.alerts", 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let mut received: Vec<(RowKey, Instant)> = Vec::new();
            let mut idle_since = None;
            loop {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        idle_since = None;
                        let now = Instant::now();
                        let Ok(a) =
                            serde_json::from_slice::<Alert>(m.payload().unwrap_or_default())
                        else {
                            continue;
                        };
                        if a.status != AlertStatus::Active || a.suppressed_count > 0 {
                            continue; // re-emissions and resolutions have no row of their own
                        }
                        received.push(((a.organization_id, a.machine_id, a.ts), now));
                    }
                    _ => {
                        if done.load(Ordering::Acquire) {
                            let s = *idle_since.get_or_insert_with(Instant::now);
                            if s.elapsed() > Duration::from_secs(5) {
                                break;
                            }
                        }
                    }
                }
            }
            received
        })
    };
    let producer: BaseProducer = KafkaClient::new(&addr)
        .config()
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let mut placement: HashMap<(String, String), i32> = HashMap::new();
    let total: usize = lines.iter().map(Vec::len).sum();
    let limit = ((target * 30.0) as usize).min(total); // 30 s of paced load
    let t0 = Instant::now();
    let mut sent = 0usize;
    let mut pending: Vec<RowKey> = Vec::new();
    'outer: for i in 0.. {
        let mut any = false;
        for (k, org) in orgs.iter().enumerate() {
            let Some(line) = lines[k].get(i) else {
                continue;
            };
            any = true;
            let raw = RawRow {
                pos: SourcePosition {
                    partition: 0,
                    offset: 0,
                },
                organization_id: Some(org.to_string()),
                payload: RawPayload::Json { text: line.clone() },
            };
            let row = mapper.map(&raw).expect("simulated rows map");
            let n = placement.len() as i32;
            let p = *placement
                .entry((row.organization_id.clone(), row.machine_id.clone()))
                .or_insert(n % PARTITIONS);
            // Pace: row k goes out at k / target seconds.
            let due = Duration::from_secs_f64(sent as f64 / target);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                producer.flush(Duration::from_secs(10)).unwrap();
                let at = Instant::now();
                acked.extend(pending.drain(..).map(|k| (k, at)));
                std::thread::sleep(wait.saturating_sub(at.elapsed()));
            }
            loop {
                match producer.send(
                    BaseRecord::to("lat.scada")
                        .partition(p)
                        .key(*org)
                        .payload(line.as_str()),
                ) {
                    Ok(()) => break,
                    Err(_) => producer.poll(Duration::from_millis(5)),
                }
            }
            pending.push((row.organization_id, row.machine_id, row.ts));
            sent += 1;
            if sent >= limit {
                break 'outer;
            }
        }
        if !any {
            break;
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let at = Instant::now();
    acked.extend(pending.drain(..).map(|k| (k, at)));
    let paced_s = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let received = receiver.join().unwrap();
    let mut unmatched = 0;
    let mut lat: Vec<f64> = Vec::new();
    for (key, at) in received {
        match acked.get(&key) {
            Some(t) => lat.push(at.saturating_duration_since(*t).as_secs_f64() * 1000.0),
            None => unmatched += 1,
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &latency_worker.id().to_string()])
        .status();
    let _ = latency_worker.wait();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "\n## latency (paced load: {sent} rows in {paced_s:.1} s = {:.0} rows/s)",
        sent as f64 / paced_s
    );
    println!(
        "row acknowledged → alert received: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} notifications; {unmatched} without a paced row)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.len()
    );

    // 3. In-process pipeline over files.
    let inputs: Vec<PathBuf> = orgs
        .iter()
        .map(|o| files.join(format!("{o}.jsonl")))
        .collect();
    let t0 = Instant::now();
    run(Command::new(BIN)
        .args(["replay", "-w", "2", "--data-dir"])
        .arg(&data_dir)
        .arg("--input")
        .args(&inputs)
        .env("RUST_LOG", "warn"));
    let s = t0.elapsed().as_secs_f64();
    println!("\n## in-process (prognos replay -w 2, files, no broker)");
    println!(
        "{total} rows in {s:.2} s (with start-up): {:.0} rows/s",
        total as f64 / s
    );
}
