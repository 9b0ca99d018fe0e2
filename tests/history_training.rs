//! The learning loop of `prognos run`: live rows are kept in the history, the
//! org's `training.schedule` fires while the service runs, the model is trained
//! on the stored rows (not on a simulator's backfill), passes the gate, and
//! later rows are scored by it without a restart. Stopping the service during
//! a training run leaves no trainer process and an `INTERRUPTED` run whose
//! version number is not reused.

use prognos::training::history::HistoryReader;
use prognos::training::registry::Registry;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// Processes whose command line mentions `needle` (our trainer children).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) && c.contains("train.py") {
                out.push(c);
            }
        }
    }
    out
}

/// An admin's `/ws` client on a thread: every text message it gets until the
/// service closes the connection.
fn admin_events(addr: String) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = got.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use futures_util::StreamExt;
            let http = reqwest::Client::new();
            let r: serde_json::Value = http
                .post(format!("http://{addr}/api/auth/login"))
                .json(&serde_json::json!({"username": "admin", "password": ADMIN_PW}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = r["token"].as_str().unwrap().to_string();
            let url = format!("ws://{addr}/ws?token={token}&org=acme-heat");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(t) = m.to_text()
                    && let Ok(v) = serde_json::from_str(t)
                {
                    out.lock().unwrap().push(v);
                }
            }
        });
    });
    got
}

const ADMIN_PW: &str = "history-training-admin";

fn count_history_rows(data: &Path, org: &str, from: i64, to: i64) -> u64 {
    let r = HistoryReader::new(&prognos::training::history::HistoryStore::dir(
        &data.join("history"),
    ));
    r.scan(org, from, to + 1, &[], |_| Ok(())).unwrap()
}

#[test]
fn a_schedule_trains_on_the_stored_history_and_a_stop_interrupts_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let preds = tmp.path().join("predictions.jsonl");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(root())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--hours",
            "240",
            "--speed",
            "3600",
            "--no-first-models",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--predictions-out")
        .arg(&preds)
        .env("PROGNOS_SIMULATOR__MACHINES_PER_ORG", "3")
        .env("PROGNOS_ORGS__BOREALIS_FORGE__TRAINING__ENABLED", "false")
        .env("PROGNOS_ORGS__COBALT_THERMAL__TRAINING__ENABLED", "false")
        .env(
            "PROGNOS_ORGS__ACME_HEAT__TRAINING__SCHEDULE",
            "*/15 * * * * *",
        )
        .env("PROGNOS_ORGS__ACME_HEAT__TRAINING__ENSEMBLE", "1")
        .env(
            "PROGNOS_ORGS__ACME_HEAT__TRAINING__HYPERPARAMETERS__NUM_ITERATIONS",
            "40",
        )
        .env("PROGNOS_TRAINING__MIN_HISTORY_ROWS", "500")
        .env("PROGNOS_ADMIN_PASSWORD", ADMIN_PW)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut log = Vec::new();
    let mut addr: Option<String> = None;
    let mut events = None;
    let mut metrics: Option<String> = None;
    let mut scored_after_activation = 0;
    let mut activated = false;
    let mut interrupted_sent = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("API listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
            events = addr.clone().map(admin_events);
        }
        if !activated && line.contains(" activated") && line.contains("acme-heat") {
            activated = true;
        }
        if activated && line.contains("pipeline running") {
            scored_after_activation += 1;
            if scored_after_activation == 2
                && let Some(a) = &addr
            {
                metrics = Some(http_get(a, "/metrics"));
            }
        }
        // Once the first version scores, stop in the middle of the next run's
        // training (the trainer child is running).
        if metrics.is_some() && !interrupted_sent && line.contains("features ready; training") {
            std::thread::sleep(Duration::from_millis(300));
            let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
            assert!(sent.success());
            interrupted_sent = true;
        }
        log.push(line);
        if t0.elapsed() > Duration::from_secs(420) {
            let _ = child.kill();
            panic!("no scheduled training in time:\n{}", log.join("\n"));
        }
    }
    let status = child.wait().unwrap();
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert!(
        interrupted_sent,
        "the run ended before a second training:\n{log}"
    );
    assert!(
        log.contains("history closed"),
        "the history is closed at shutdown:\n{log}"
    );
    assert!(
        processes_mentioning(&data.display().to_string()).is_empty(),
        "no trainer process outlives the service"
    );

    // The TrainingLog: the scheduled run trained on the history, on exactly the
    // rows stored for its range, and no simulator backfill was written.
    let registry = Registry::open(&data.join("store")).unwrap();
    let runs = registry.runs("acme-heat").unwrap();
    let first = runs
        .iter()
        .find(|r| r.status == "COMPLETED")
        .unwrap_or_else(|| panic!("a completed run: {runs:#?}\n{log}"));
    assert_eq!(first.config["trigger"], "schedule");
    assert_eq!(first.config["data"]["source"], "history");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            data.join("models/acme-heat")
                .join(&first.version)
                .join("metadata.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ts = |k: &str| {
        prognos_dataflows::time::parse_rfc3339_ms(meta["dataRange"][k].as_str().unwrap()).unwrap()
    };
    let stored = count_history_rows(&data, "acme-heat", ts("start"), ts("end"));
    assert_eq!(
        first.config["trainingRows"].as_u64(),
        Some(stored),
        "trained on every stored row of its range"
    );
    assert!(
        !data.join("history/org=acme-heat/imports").exists(),
        "nothing was imported or simulated into the history"
    );
    assert_eq!(
        registry.active("acme-heat").unwrap().as_deref(),
        Some(first.version.as_str()),
        "the first version passed the gate"
    );
    let m = metrics.expect("metrics fetched after the activation");
    assert!(
        m.contains(r#"prognos_training_runs_total{outcome="completed",trigger="schedule"} 1"#),
        "{m}"
    );

    // The admins heard of it on `/ws`.
    let events = events.unwrap().lock().unwrap().clone();
    assert!(
        events.iter().any(|e| e["type"] == "training.completed"
            && e["organizationId"] == "acme-heat"
            && e["job"]["version"] == first.version.as_str()
            && e["job"]["trigger"] == "schedule"),
        "{events:#?}"
    );

    // Later rows are scored by it, without a restart.
    let versions: Vec<String> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"organizationId\":\"acme-heat\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["modelVersion"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(versions.first().map(String::as_str), Some("rules"));
    assert!(
        versions.contains(&first.version),
        "rows scored by {}",
        first.version
    );

    // The stop interrupted the next run: recorded as such, its number not reused.
    let interrupted = runs
        .iter()
        .find(|r| r.status == "INTERRUPTED")
        .unwrap_or_else(|| panic!("an interrupted run: {runs:#?}\n{log}"));
    let n: u64 = interrupted.version[1..].parse().unwrap();
    assert!(registry.next_version_number("acme-heat").unwrap() > n);
    assert!(
        registry
            .runs("acme-heat")
            .unwrap()
            .iter()
            .all(|r| r.status != "RUNNING")
    );
}
