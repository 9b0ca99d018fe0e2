//! Training uses the configuration the service runs with: an org configuration
//! changed through `/api/orgs` (stored, applied at the next start) is the one
//! `prognos train` computes features with — not the file alone. And `prognos
//! train` works while the service runs: it hands the run over to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One HTTP/1.0 request; the status code and the JSON body.
fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(serde_json::Value::Null))
        .unwrap_or_default();
    (status, json)
}

#[test]
fn training_uses_the_org_configuration_stored_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bin = env!("CARGO_BIN_EXE_prognos");
    let mut child = Command::new(bin)
        .current_dir(root())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            // Longer than the test needs: it stops the service once training is
            // done, and training must not race the end of the simulated range.
            "--hours",
            "480",
            "--speed",
            "3600",
            "--no-first-models",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("PROGNOS_SIMULATOR__MACHINES_PER_ORG", "3")
        .env("PROGNOS_ADMIN_PASSWORD", "a long enough test password")
        .env("PROGNOS_TRAINING__MIN_HISTORY_ROWS", "500")
        // What is checked does not depend on the validation folds.
        .env("PROGNOS_TRAIN_FOLDS", "0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the service logs its address").unwrap();
        if let Some(rest) = line.split("API listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let (st, login) = call(
        &addr,
        "POST",
        "/api/auth/login",
        None,
        Some(&serde_json::json!({"username": "admin", "password": "a long enough test password"})),
    );
    assert_eq!(st, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_string();
    let (st, detail) = call(&addr, "GET", "/api/orgs/acme-heat", Some(&token), None);
    assert_eq!(st, 200, "{detail}");
    let mut cfg = detail["config"].clone();
    cfg["features"]["lags_s"] = serde_json::json!([90]);
    cfg["training"]["ensemble"] = serde_json::json!(1);
    cfg["training"]["hyperparameters"]["num_iterations"] = serde_json::json!(30);
    let (st, change) = call(
        &addr,
        "PUT",
        "/api/orgs/acme-heat",
        Some(&token),
        Some(&cfg),
    );
    assert_eq!(st, 200, "{change}");
    // A day of rows in the history, then `prognos train` while the service runs:
    // the store is the service's, so the command hands the run over to it.
    let rows_featured = |l: &str| -> u64 {
        // The log's fields may be coloured: drop the escape sequences.
        let mut plain = String::new();
        let mut esc = false;
        for c in l.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (false, c) => plain.push(c),
                _ => {}
            }
        }
        plain
            .split("rows_featured=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    for l in lines.by_ref() {
        if rows_featured(&l.unwrap()) >= 3 * 3 * 120 * 24 {
            break;
        }
    }
    let out = Command::new(bin)
        .current_dir(root())
        .args(["train", "--org", "acme-heat", "--data-dir"])
        .arg(&data)
        .env("USER", "plant-ops")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["trigger"], "cli", "{job}");
    // The hand-over names the OS user who ran the command.
    assert_eq!(job["requestedBy"], "cli:plant-ops", "{job}");
    // Stop the service (Ctrl-C) rather than wait for the simulated range to end;
    // the rest of the log until it has stopped.
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for l in lines {
        l.unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert!(
        !data.join("service.json").exists(),
        "the service removes its local file when it stops"
    );
    let dir = data
        .join("models/acme-heat")
        .join(job["version"].as_str().unwrap());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    let stored: prognos_dataflows::config::OrgConfig = serde_json::from_value(cfg).unwrap();
    let names: Vec<String> = meta["featureNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        stored.feature_names(),
        "the stored configuration's features"
    );
    assert!(names.iter().any(|n| n.ends_with("_lag_90s")));
    assert!(
        !names.iter().any(|n| n.ends_with("_lag_60s")),
        "not the file's lags"
    );
    assert_eq!(meta["hyperparameters"]["ensemble"], 1);
}
