//! `prognos run` as `make run` starts it, on a fresh data dir and sped up: the
//! simulator feeds the whole dataflow, orgs start on rules while their first
//! model trains in the background, and switch to the model without a restart;
//! alerts reach the store, the JSON-lines output and `/metrics`; Ctrl-C-style
//! shutdown (the `--hours` end here) flushes everything.

use prognos::auth::AuditLog;
use prognos::store::{AlertQuery, AlertStore};
use prognos::training::registry::Registry;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

#[test]
fn a_fresh_start_runs_on_rules_then_switches_to_first_models() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let preds = tmp.path().join("predictions.jsonl");
    let alerts = tmp.path().join("alerts.jsonl");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(root())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            // Longer than the test needs: it stops the run with Ctrl-C (SIGINT)
            // once the first model is active and has scored, so a slow machine
            // cannot end the simulated range before the first model is trained.
            "--hours",
            "240",
            "--speed",
            "1200",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--alerts-out")
        .arg(&alerts)
        .arg("--predictions-out")
        .arg(&preds)
        // A small first-model history and small models keep the test short:
        // what it checks does not depend on their size.
        .env("PROGNOS_SIMULATOR__FIRST_MODEL_DAYS", "2")
        .envs(
            ["ACME_HEAT", "BOREALIS_FORGE", "COBALT_THERMAL"]
                .iter()
                .flat_map(|org| {
                    [
                        (format!("PROGNOS_ORGS__{org}__TRAINING__ENSEMBLE"), "1"),
                        (
                            format!(
                                "PROGNOS_ORGS__{org}__TRAINING__HYPERPARAMETERS__NUM_ITERATIONS"
                            ),
                            "40",
                        ),
                    ]
                }),
        )
        .env("PROGNOS_SIMULATOR__MACHINES_PER_ORG", "3")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let pid = child.id().to_string();
    // "pipeline running" lines (every 10 s) seen since the first model went live;
    // the second one sends Ctrl-C.
    let mut progress_since_trained = 0;
    let mut log = Vec::new();
    let mut addr: Option<String> = None;
    let mut metrics: Option<String> = None;
    let mut trained_metrics: Option<String> = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("API listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_string);
        }
        if metrics.is_none()
            && line.contains("ALERT ")
            && let Some(a) = &addr
        {
            metrics = Some(http_get(a, "/metrics"));
        }
        if trained_metrics.is_none()
            && line.contains("first model trained and active")
            && let Some(a) = &addr
        {
            trained_metrics = Some(http_get(a, "/metrics"));
        }
        if trained_metrics.is_some() && line.contains("pipeline running") {
            progress_since_trained += 1;
            if progress_since_trained == 2 {
                // Ctrl-C: the run flushes, checkpoints and exits 0.
                let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
                assert!(sent.success());
            }
        }
        log.push(line);
        assert!(t0.elapsed() < Duration::from_secs(600), "run did not end");
    }
    let status = child.wait().unwrap();
    let log = log.join("\n");
    assert!(status.success(), "{log}");
    assert!(
        progress_since_trained >= 2,
        "the run ended before its first model scored:\n{log}"
    );
    assert!(
        log.contains("shutdown requested: stopping after the current batch")
            && log.lines().any(|l| l.trim_end().ends_with("stopped")),
        "Ctrl-C stops the run cleanly:\n{log}"
    );
    assert!(
        log.contains("no model yet: scoring with rules only"),
        "{log}"
    );
    assert!(log.contains("first model trained and active"), "{log}");
    assert!(
        log.contains("ALERT "),
        "alerts are logged in plain words:\n{log}"
    );
    let metrics = metrics.expect("metrics fetched while running");
    assert!(
        metrics.contains("prognos_alerts_total{kind=\"notification\""),
        "{metrics}"
    );
    let trained = trained_metrics.expect("metrics fetched after a first model");
    let first_models: f64 = trained
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"prognos_training_runs_total{outcome="completed",trigger="first_model"} "#,
            )
        })
        .and_then(|v| v.parse().ok())
        .expect("first-model runs are counted");
    assert!(first_models >= 1.0, "{trained}");

    // Predictions: each org starts on rules; at least one switches to its first
    // model mid-run, and once switched never goes back.
    let mut per_org: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for line in std::fs::read_to_string(&preds).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = prognos_dataflows::time::parse_rfc3339_ms(v["ts"].as_str().unwrap()).unwrap();
        per_org
            .entry(v["organizationId"].as_str().unwrap().to_string())
            .or_default()
            .push((ts, v["modelVersion"].as_str().unwrap().to_string()));
    }
    assert_eq!(per_org.len(), 3, "every org scored");
    let mut switched = 0;
    for (org, mut rows) in per_org {
        rows.sort();
        assert_eq!(rows[0].1, "rules", "{org} starts on rules");
        if let Some(k) = rows.iter().position(|(_, v)| v == "v1") {
            assert!(
                rows[k..].iter().all(|(_, v)| v == "v1"),
                "{org} stays on v1 once switched"
            );
            switched += 1;
        }
    }
    assert!(
        switched >= 1,
        "at least one org switched without a restart:\n{log}"
    );

    // The store holds what the JSON lines show, after a clean shutdown.
    let records = std::fs::read_to_string(&alerts).unwrap().lines().count();
    assert!(records > 0);
    let registry = Registry::open(&data.join("store")).unwrap();
    assert!(registry.active("acme-heat").unwrap().is_some());
    let store = AlertStore::open(&registry.db()).unwrap();
    let total: u64 = ["acme-heat", "borealis-forge", "cobalt-thermal"]
        .iter()
        .map(|o| store.query(o, &AlertQuery::default()).unwrap().total)
        .sum();
    assert!(
        total > 0 && (total as usize) <= records,
        "{total} alerts from {records} records"
    );

    // The audit log has the first-model run and the loads, by `system`.
    let audit = AuditLog::open(&registry.db()).unwrap();
    let entries = |org: &str| audit.list(Some(org), 10_000, None).unwrap().0;
    let acme = entries("acme-heat");
    let first = acme
        .iter()
        .find(|e| e.action == "ml.train.done" && e.detail["trigger"] == "first_model")
        .unwrap_or_else(|| panic!("the first-model run is audited: {acme:#?}"));
    assert_eq!(
        (first.actor.as_str(), first.outcome.as_str()),
        ("system", "ok")
    );
    assert_eq!(first.detail["version"], "v1");
    let load = acme
        .iter()
        .find(|e| e.action == "ml.model.load")
        .unwrap_or_else(|| panic!("the model load is audited: {acme:#?}"));
    assert_eq!(
        (
            load.actor.as_str(),
            load.outcome.as_str(),
            &load.detail["version"]
        ),
        ("system", "ok", &serde_json::json!("v1"))
    );
    assert!(load.detail["bytes"].as_u64().unwrap() > 0, "{load:?}");
    drop((store, audit, registry));

    // Commands on the host while the service is stopped: audited as `cli:<user>`,
    // refusals included.
    let prognos = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prognos"))
            .current_dir(root())
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("USER", "ops-anna")
            .output()
            .unwrap()
    };
    let ok = prognos(&[
        "models",
        "activate",
        "--org",
        "acme-heat",
        "--version",
        "v1",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = prognos(&[
        "models",
        "activate",
        "--org",
        "acme-heat",
        "--version",
        "v99",
    ]);
    assert!(!refused.status.success());
    let failed = prognos(&["train", "--org", "no-such-org"]);
    assert!(!failed.status.success());
    let registry = Registry::open(&data.join("store")).unwrap();
    let audit = AuditLog::open(&registry.db()).unwrap();
    let by_cli: Vec<(String, String, String)> = audit
        .list(None, 10_000, None)
        .unwrap()
        .0
        .into_iter()
        .filter(|e| e.actor == "cli:ops-anna")
        .map(|e| (e.organization_id.unwrap_or_default(), e.action, e.outcome))
        .collect();
    let want = |org: &str, action: &str, outcome: &str| (org.into(), action.into(), outcome.into());
    assert_eq!(
        by_cli,
        // Newest first.
        vec![
            want("no-such-org", "ml.train.done", "error"),
            want("acme-heat", "ml.deploy", "error"),
            want("acme-heat", "ml.deploy", "ok"),
        ]
    );
}
