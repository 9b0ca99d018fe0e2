//! What the API confirms survives `kill -9`: rounds of `prognos run` on one data
//! dir; in each, an operator posts feedback on an alert and acknowledges it,
//! and the process is killed with SIGKILL as soon as the acknowledgement is
//! answered 200. The store, reopened from the data dir, holds both — and every
//! earlier round's.

use prognos::store::AlertStore;
use prognos::training::registry::Registry;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "acme-heat";
const PASSWORD: &str = "durable-test-password-1";
const ROUNDS: usize = 10;

/// One HTTP/1.0 request; the status and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// `prognos run` on `data` (fast simulator, rules only) and its API address.
fn start(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--no-first-models",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "36000",
        ])
        .arg("--data-dir")
        .arg(data)
        .env("PROGNOS_ADMIN_PASSWORD", PASSWORD)
        .env("PROGNOS_SIMULATOR__MACHINES_PER_ORG", "3")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Drains the log until the process dies (a full pipe would block it).
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.split("API listening on http://").nth(1) {
                let a = rest.split_whitespace().next().unwrap_or("").to_string();
                sent = tx.send(a).is_ok();
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (child, addr)
}

/// An ACTIVE alert id of ORG, waiting for the simulator to raise one.
fn active_alert(addr: &str, token: &str) -> String {
    let t0 = Instant::now();
    loop {
        let (status, body) = http(
            addr,
            "GET",
            &format!("/api/predictive-alerts?org={ORG}&status=ACTIVE&limit=1"),
            Some(token),
            "",
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(id) = v["alerts"][0]["id"].as_str() {
            return id.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no alert: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn acknowledged_operator_actions_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data: PathBuf = tmp.path().join("data");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut feedback: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let (mut child, addr) = start(&data);
        let (status, body) = http(
            &addr,
            "POST",
            "/api/auth/login",
            None,
            &format!(r#"{{"username":"admin","password":"{PASSWORD}"}}"#),
        );
        assert_eq!(status, 200, "round {round}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = v["token"].as_str().unwrap().to_string();
        // At this speed an alert may resolve between the look-up and the
        // acknowledgement (409): its feedback is kept either way; try the next.
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(attempt < 20, "round {round}: no alert stayed ACTIVE");
            let id = active_alert(&addr, &token);
            let comment = format!("round {round}.{attempt}");
            let (status, body) = http(
                &addr,
                "POST",
                &format!("/api/predictive-alerts/{id}/feedback"),
                Some(&token),
                &format!(r#"{{"isAccurate":true,"comment":"{comment}"}}"#),
            );
            assert_eq!(status, 200, "round {round}: {body}");
            feedback.push((id.clone(), comment));
            let (status, body) = http(
                &addr,
                "POST",
                &format!("/api/predictive-alerts/{id}/acknowledge"),
                Some(&token),
                "",
            );
            if status == 200 {
                // SIGKILL at once: no shutdown path, no background flush to hide behind.
                child.kill().unwrap();
                child.wait().unwrap();
                acknowledged.push(id);
                break;
            }
            assert_eq!(status, 409, "round {round}: {body}");
        }

        let registry = Registry::open(&data.join("store")).unwrap();
        let store = AlertStore::open(&registry.db()).unwrap();
        for id in &acknowledged {
            let a = store.get(ORG, id).unwrap();
            assert_eq!(
                a.acknowledged_by.as_deref(),
                Some("admin"),
                "round {round}: the acknowledgement of {id} is lost"
            );
        }
        // The latest feedback on each alert is the one kept.
        let latest: BTreeMap<&String, &String> = feedback.iter().map(|(i, c)| (i, c)).collect();
        for (id, comment) in latest {
            let a = store.get(ORG, id).unwrap();
            assert_eq!(a.is_accurate, Some(true), "round {round}: feedback on {id}");
            assert_eq!(
                a.feedback_comment.as_ref(),
                Some(comment),
                "round {round}: the feedback on {id} is lost"
            );
        }
    }
}
