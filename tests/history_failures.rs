//! Work orders through the real binary: `prognos history failures add` twice
//! stores one record, `import` refuses a bad file up front with its line and
//! field (another org's line included) and adds nothing, a good file is stored
//! once however often it is imported, and `list` shows what is stored.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prognos(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prognos"))
        .current_dir(root())
        .args(args)
        .env("PROGNOS_CONFIG", "config/examples/pumps.toml")
        .env("PROGNOS_DATA_DIR", data)
        .env("USER", "maria")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn list(data: &Path) -> Vec<serde_json::Value> {
    let out = ok(&prognos(
        data,
        &["history", "failures", "list", "--org", "pumpco", "--json"],
    ));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn work_orders_are_added_once_imported_after_a_check_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let add = [
        "history",
        "failures",
        "add",
        "--org",
        "pumpco",
        "--machine",
        "P-001",
        "--component",
        "impeller",
        "--start",
        "2026-01-03T10:00:00Z",
        "--end",
        "2026-01-03T12:00:00Z",
        "--note",
        "impeller worn",
    ];
    let first = ok(&prognos(&data, &add));
    assert!(first.starts_with("stored: "), "{first}");
    let again = ok(&prognos(&data, &add));
    assert!(again.starts_with("already stored: "), "{again}");
    let stored = list(&data);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let w = &stored[0];
    assert_eq!(w["machineId"], "P-001");
    assert_eq!(w["component"], "impeller");
    assert_eq!(w["start"], "2026-01-03T10:00:00.000Z");
    assert_eq!(w["end"], "2026-01-03T12:00:00.000Z");
    assert_eq!(w["note"], "impeller worn");
    assert_eq!(w["source"], "cli");
    assert_eq!(w["createdBy"], "maria");
    let file = data.join("history/org=pumpco/failures.jsonl");
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 1);

    // A bad file: refused before anything is stored, line and field named.
    let bad = tmp.path().join("bad.jsonl");
    let good = r#"{"organizationId":"pumpco","machineId":"P-002","component":"radial_bearing","start":"2026-01-04T00:00:00Z"}"#;
    for (line, field) in [
        (
            r#"{"org":"pumpco","machine":"P-002","component":"x","start":"2026-01-04T00:00:00Z"}"#,
            "org",
        ),
        (
            r#"{"organizationId":"acme","machineId":"P-002","component":"x","start":"2026-01-04T00:00:00Z"}"#,
            "organizationId",
        ),
        (
            r#"{"machineId":"P-002","component":"x","start":"2026-01-04T00:00:00Z","end":"2026-01-03T00:00:00Z"}"#,
            "end",
        ),
    ] {
        std::fs::write(&bad, format!("{good}\n{line}\n")).unwrap();
        let out = prognos(
            &data,
            &[
                "history",
                "failures",
                "import",
                "--org",
                "pumpco",
                bad.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {line}");
        assert!(
            err.contains("bad.jsonl:2: ") && err.contains(field),
            "line 2 and field {field} named: {err}"
        );
        assert_eq!(list(&data).len(), 1, "nothing stored from a refused file");
    }

    // The pump fixture's work orders: stored once, however often imported.
    let events = root().join("tests/data/pumps/events.jsonl");
    let import = [
        "history",
        "failures",
        "import",
        "--org",
        "pumpco",
        events.to_str().unwrap(),
    ];
    let out = ok(&prognos(&data, &import));
    assert!(out.contains(": 5 stored, 0 already stored"), "{out}");
    let out = ok(&prognos(&data, &import));
    assert!(out.contains(": 0 stored, 5 already stored"), "{out}");
    let stored = list(&data);
    assert_eq!(stored.len(), 6, "{stored:?}");
    assert!(stored.iter().filter(|w| w["source"] == "import").count() == 5);
    let starts: Vec<&str> = stored
        .iter()
        .map(|w| w["start"].as_str().unwrap())
        .collect();
    let mut sorted = starts.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted, "newest first");
    let text = ok(&prognos(
        &data,
        &["history", "failures", "list", "--org", "pumpco"],
    ));
    assert!(text.starts_with("pumpco: 6 work order(s)"), "{text}");
    assert!(
        text.contains("P-001  impeller  2026-01-03T10:00:00.000Z"),
        "{text}"
    );
}
