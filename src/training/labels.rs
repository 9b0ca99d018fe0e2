//! Failure labels given to training: ground-truth events or work orders as
//! JSON lines `{"organizationId"?, "machineId", "component", "start", "end"?}`
//! with RFC 3339 (or epoch ms) times, checked before any work starts so a bad
//! file is refused with its line and field named.

use std::io::BufRead;
use std::path::Path;

/// Why an events file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a failure event.
    #[error("{}:{line}: {field}: {reason} (expected {{\"organizationId\", \"machineId\", \"component\", \"start\", \"end\"}} with RFC 3339 times)", path.display())]
    Bad {
        /// The file.
        path: std::path::PathBuf,
        /// Line number (1-based).
        line: usize,
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn time_of(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => prognos_dataflows::time::parse_rfc3339_ms(s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// Check every line of an events file; the number of events.
pub fn validate_events(path: &Path) -> Result<usize, LabelsError> {
    let read = |source| LabelsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    let mut n = 0;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(read)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, reason: String| LabelsError::Bad {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad("(line)", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("(line)", "not a JSON object".into()))?;
        for k in obj.keys() {
            if ![
                "organizationId",
                "machineId",
                "component",
                "start",
                "end",
                "note",
                "id",
            ]
            .contains(&k.as_str())
            {
                return Err(bad(k, "unknown field".into()));
            }
        }
        for k in ["machineId", "component"] {
            match obj.get(k) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => {}
                Some(serde_json::Value::Number(_)) if k == "machineId" => {}
                Some(_) => return Err(bad(k, "must be a non-empty string".into())),
                None => return Err(bad(k, "missing".into())),
            }
        }
        if let Some(o) = obj.get("organizationId")
            && !o.is_string()
        {
            return Err(bad("organizationId", "must be a string".into()));
        }
        let start = obj
            .get("start")
            .ok_or_else(|| bad("start", "missing".into()))
            .and_then(|v| time_of(v).ok_or_else(|| bad("start", format!("not a time: {v}"))))?;
        if let Some(e) = obj.get("end").filter(|e| !e.is_null()) {
            let end = time_of(e).ok_or_else(|| bad("end", format!("not a time: {e}")))?;
            if end < start {
                return Err(bad("end", "before start".into()));
            }
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_events_file_names_its_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let good = r#"{"organizationId":"a","machineId":"m1","component":"Heating","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:20:00Z"}"#;
        std::fs::write(&p, format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(validate_events(&p).unwrap(), 2);
        for (line, field) in [
            (
                r#"{"org":"a","machine":"m1","component":"x","start":"2026-01-01T00:00:00Z"}"#,
                "machine",
            ),
            (
                r#"{"machineId":"m1","start":"2026-01-01T00:00:00Z"}"#,
                "component",
            ),
            (
                r#"{"machineId":"m1","component":"x","start":"yesterday"}"#,
                "start",
            ),
            (
                r#"{"machineId":"m1","component":"x","start":"2026-01-02T00:00:00Z","end":"2026-01-01T00:00:00Z"}"#,
                "end",
            ),
            ("not json", "(line)"),
        ] {
            std::fs::write(&p, format!("{good}\n{line}\n")).unwrap();
            let e = validate_events(&p).unwrap_err().to_string();
            assert!(e.contains(":2: "), "names the line: {e}");
            assert!(e.contains(field), "names the field {field}: {e}");
        }
    }
}
