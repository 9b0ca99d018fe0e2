//! Work orders: failures entered by people (`POST /api/orgs/{org}/failures`,
//! `prognos history failures add|import`), kept per org as an append-only JSON
//! lines file beside the org's history, `<history>/org=<id>/failures.jsonl`.
//!
//! A file rather than a sled tree on purpose: the CLI adds work orders while the
//! service runs (sled is single-process), and a cluster's controller and CLI
//! share the history dir. One record per line:
//! `{"id", "organizationId", "machineId", "component", "start", "end"?, "note"?,
//! "source": "api"|"cli"|"import", "createdBy", "createdAt"}` with RFC 3339
//! times. The id is a hash of (org, machine, component, start), so the same
//! failure added twice is stored once. An append is one `write_all` of one line
//! on a file opened with `O_APPEND` under an exclusive `flock` (the duplicate
//! check and the append are one step across processes), then `sync_data` (once
//! per call: an import syncs after its last line).
//! Readers skip a torn last line (a crash mid-append; the next append cuts it
//! off) and refuse a bad line anywhere else with its line number.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The file name in an org's history folder.
pub const FILE_NAME: &str = "failures.jsonl";
/// Longest machine id or component, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest note, in bytes.
pub const MAX_NOTE_BYTES: usize = 2000;

/// Why a work order could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum FailuresError {
    /// Reading or writing the file failed.
    #[error("work orders {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored line is not a work order.
    #[error("work orders {}:{line}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A line of a file to import is refused.
    #[error("{}:{line}: {field}: {reason}", path.display())]
    Import {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The file to import is not a failure-events file.
    #[error(transparent)]
    Labels(#[from] crate::training::labels::LabelsError),
    /// A new work order is not valid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field at fault (`machineId`, `component`, `end`, `note`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Where a work order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `POST /api/orgs/{org}/failures`.
    Api,
    /// `prognos history failures add`.
    Cli,
    /// `prognos history failures import`.
    Import,
}

/// A failure as entered: what identifies it and what people say about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWorkOrder {
    /// Machine.
    pub machine_id: String,
    /// Failed component.
    pub component: String,
    /// When the failure started (epoch ms; RFC 3339 or epoch ms on the wire).
    #[serde(deserialize_with = "time_any")]
    pub start: i64,
    /// When it ended (repaired), if known.
    #[serde(default, deserialize_with = "time_any_opt")]
    pub end: Option<i64>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// A stored work order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkOrder {
    /// Hash of (org, machine, component, start): 16 hex digits.
    pub id: String,
    /// Organization.
    pub organization_id: String,
    /// Machine.
    pub machine_id: String,
    /// Failed component.
    pub component: String,
    /// Failure start (epoch ms).
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub start: i64,
    /// Failure end (epoch ms), if known.
    #[serde(
        default,
        with = "prognos_dataflows::time::rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub end: Option<i64>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Where it came from.
    pub source: Source,
    /// Who entered it (username, or `$USER` for the CLI).
    pub created_by: String,
    /// When it was stored (epoch ms).
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub created_at: i64,
}

impl WorkOrder {
    /// The line of a failure-events file (`--events`, the labels format).
    pub fn event_line(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "organizationId": self.organization_id,
            "machineId": self.machine_id,
            "component": self.component,
            "start": prognos_dataflows::time::format_rfc3339_ms(self.start),
        });
        if let Some(e) = self.end {
            v["end"] = prognos_dataflows::time::format_rfc3339_ms(e).into();
        }
        v
    }
}

fn time_of(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => prognos_dataflows::time::parse_rfc3339_ms(s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn time_any<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::Deserialize;
    let v = serde_json::Value::deserialize(d)?;
    time_of(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("not a time (RFC 3339 or epoch ms): {v}")))
}

fn time_any_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    time_of(&v)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("not a time (RFC 3339 or epoch ms): {v}")))
}

/// The id of a failure: xxh3 of (org, machine, component, start), hex.
pub fn id_of(org: &str, machine: &str, component: &str, start: i64) -> String {
    let key = format!("{org}\0{machine}\0{component}\0{start}");
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}

impl NewWorkOrder {
    /// Check the fields: names non-empty and at most 256 bytes, end not before
    /// start, note at most 2000 bytes.
    pub fn validate(&self) -> Result<(), FailuresError> {
        let bad = |field, reason: String| Err(FailuresError::Invalid { field, reason });
        for (field, v) in [
            ("machineId", &self.machine_id),
            ("component", &self.component),
        ] {
            if v.trim().is_empty() {
                return bad(field, "must not be empty".into());
            }
            if v.len() > MAX_NAME_BYTES {
                return bad(field, format!("longer than {MAX_NAME_BYTES} bytes"));
            }
        }
        if let Some(e) = self.end
            && e < self.start
        {
            return bad("end", "before start".into());
        }
        if let Some(n) = &self.note
            && n.len() > MAX_NOTE_BYTES
        {
            return bad("note", format!("longer than {MAX_NOTE_BYTES} bytes"));
        }
        Ok(())
    }
}

/// The work orders of a failure-events file (the labels format) for `org`,
/// every line checked before any is returned: the line and field of the first
/// bad one are named, and a line of another `organizationId` is refused.
pub fn read_import(path: &Path, org: &str) -> Result<Vec<NewWorkOrder>, FailuresError> {
    crate::training::labels::validate_events(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| FailuresError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, reason: String| FailuresError::Import {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad("(line)", format!("not JSON: {e}")))?;
        let text_of = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        if let Some(o) = v.get("organizationId").and_then(|o| o.as_str())
            && o != org
        {
            return Err(bad(
                "organizationId",
                format!("`{o}` is another organization than `{org}`"),
            ));
        }
        let new = NewWorkOrder {
            machine_id: text_of("machineId"),
            component: text_of("component"),
            start: v
                .get("start")
                .and_then(time_of)
                .ok_or_else(|| bad("start", "not a time".into()))?,
            end: v.get("end").filter(|e| !e.is_null()).and_then(time_of),
            note: v.get("note").and_then(|n| n.as_str()).map(str::to_string),
        };
        new.validate().map_err(|e| match e {
            FailuresError::Invalid { field, reason } => bad(field, reason),
            other => other,
        })?;
        out.push(new);
    }
    Ok(out)
}

/// One org's work orders.
#[derive(Debug, Clone)]
pub struct WorkOrders {
    org: String,
    path: PathBuf,
}

/// An exclusive `flock` on an open file's descriptor, released on drop (the
/// guard is declared after the file, so it drops first).
struct Locked(std::os::fd::RawFd);

impl Locked {
    fn take(f: &std::fs::File, path: &Path) -> Result<Locked, FailuresError> {
        // SAFETY: flock on a descriptor this function's caller keeps open.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(FailuresError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Locked(f.as_raw_fd()))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: the file outlives the guard (see the type's documentation).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

impl WorkOrders {
    /// The work orders of `org` in the history rooted at `root`.
    pub fn new(root: &Path, org: &str) -> WorkOrders {
        WorkOrders {
            org: org.to_string(),
            path: crate::training::history::org_dir(root, org).join(FILE_NAME),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl Fn(std::io::Error) -> FailuresError + '_ {
        |source| FailuresError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Parse `text`; the length of its complete lines (a torn last line is not).
    fn parse(&self, text: &[u8]) -> Result<(Vec<WorkOrder>, usize), FailuresError> {
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(path = %self.path.display(), bytes = text.len() - complete,
                "work orders: a torn last line (a crash mid-append) is skipped");
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, line) in text[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let w: WorkOrder =
                serde_json::from_slice(line).map_err(|e| FailuresError::Corrupt {
                    path: self.path.clone(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            if w.organization_id != self.org {
                return Err(FailuresError::Corrupt {
                    path: self.path.clone(),
                    line: i + 1,
                    reason: format!(
                        "organizationId is `{}`, not `{}`",
                        w.organization_id, self.org
                    ),
                });
            }
            if seen.insert(w.id.clone()) {
                out.push(w);
            }
        }
        Ok((out, complete))
    }

    /// Every work order, in the order they were stored (none when there is no file).
    pub fn list(&self) -> Result<Vec<WorkOrder>, FailuresError> {
        match std::fs::read(&self.path) {
            Ok(text) => Ok(self.parse(&text)?.0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io()(e)),
        }
    }

    /// Work orders starting in `[from, to)`, newest start first.
    pub fn newest_first(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Vec<WorkOrder>, FailuresError> {
        let mut v: Vec<WorkOrder> = self
            .list()?
            .into_iter()
            .filter(|w| from.is_none_or(|f| w.start >= f) && to.is_none_or(|t| w.start < t))
            .collect();
        v.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Store `new` unless the same failure is stored; the stored record and
    /// whether it was added now.
    pub fn add(
        &self,
        new: NewWorkOrder,
        source: Source,
        created_by: &str,
        now_ms: i64,
    ) -> Result<(WorkOrder, bool), FailuresError> {
        let mut v = self.add_all(vec![new], source, created_by, now_ms)?;
        v.pop().ok_or_else(|| FailuresError::Invalid {
            field: "body",
            reason: "nothing to add".into(),
        })
    }

    /// Store each of `news` (all checked first) unless already stored: for each,
    /// the stored record and whether it was added now.
    pub fn add_all(
        &self,
        news: Vec<NewWorkOrder>,
        source: Source,
        created_by: &str,
        now_ms: i64,
    ) -> Result<Vec<(WorkOrder, bool)>, FailuresError> {
        for n in &news {
            n.validate()?;
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io())?;
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(self.io())?;
        let _lock = Locked::take(&f, &self.path)?;
        let mut text = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).map_err(self.io())?;
        f.read_to_end(&mut text).map_err(self.io())?;
        let (stored, complete) = self.parse(&text)?;
        if complete < text.len() {
            // Cut the torn line off so the next line starts on its own.
            f.set_len(complete as u64).map_err(self.io())?;
        }
        let mut by_id: std::collections::HashMap<String, WorkOrder> =
            stored.into_iter().map(|w| (w.id.clone(), w)).collect();
        let mut out = Vec::with_capacity(news.len());
        for n in news {
            let id = id_of(&self.org, &n.machine_id, &n.component, n.start);
            if let Some(w) = by_id.get(&id) {
                out.push((w.clone(), false));
                continue;
            }
            let w = WorkOrder {
                id: id.clone(),
                organization_id: self.org.clone(),
                machine_id: n.machine_id,
                component: n.component,
                start: n.start,
                end: n.end,
                note: n.note.filter(|s| !s.is_empty()),
                source,
                created_by: created_by.to_string(),
                created_at: now_ms,
            };
            let mut line = serde_json::to_vec(&w).map_err(|e| FailuresError::Invalid {
                field: "body",
                reason: e.to_string(),
            })?;
            line.push(b'\n');
            f.write_all(&line).map_err(self.io())?;
            by_id.insert(id, w.clone());
            out.push((w, true));
        }
        // One fsync per call: an import of many lines is one operation, and a
        // crash before it leaves whole lines (or a torn last one) that a second
        // import completes without duplicates.
        if out.iter().any(|(_, added)| *added) {
            f.sync_data().map_err(self.io())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(machine: &str, start: i64) -> NewWorkOrder {
        NewWorkOrder {
            machine_id: machine.into(),
            component: "Heating".into(),
            start,
            end: Some(start + 60_000),
            note: Some("element replaced".into()),
        }
    }

    #[test]
    fn the_same_failure_added_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = WorkOrders::new(dir.path(), "acme");
        let (a, added) = w.add(new("m1", 1_000), Source::Api, "alice", 5).unwrap();
        assert!(added);
        assert_eq!(a.id, id_of("acme", "m1", "Heating", 1_000));
        // Same (machine, component, start), other note: the stored one answers.
        let mut again = new("m1", 1_000);
        again.note = None;
        let (b, added) = w.add(again, Source::Cli, "bob", 9).unwrap();
        assert!(!added);
        assert_eq!(a, b);
        w.add(new("m2", 2_000), Source::Cli, "bob", 9).unwrap();
        let all = w.list().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], a);
        let lines = std::fs::read_to_string(w.path()).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        assert!(
            lines.contains(r#""start":"1970-01-01T00:00:01.000Z""#),
            "{lines}"
        );
        assert!(lines.contains(r#""source":"api""#), "{lines}");
        // Another org's same failure is another id.
        assert_ne!(a.id, id_of("other", "m1", "Heating", 1_000));
        let newest = w.newest_first(None, None).unwrap();
        assert_eq!(newest[0].machine_id, "m2");
        assert_eq!(w.newest_first(Some(1_500), None).unwrap().len(), 1);
        assert_eq!(w.newest_first(None, Some(1_000)).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_at_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let w = WorkOrders::new(dir.path(), "acme");
        w.add(new("m1", 1_000), Source::Api, "alice", 5).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(w.path())
            .unwrap();
        f.write_all(br#"{"id":"abc","organiza"#).unwrap();
        assert_eq!(w.list().unwrap().len(), 1);
        w.add(new("m2", 2_000), Source::Api, "alice", 6).unwrap();
        assert_eq!(w.list().unwrap().len(), 2);
        let text = std::fs::read_to_string(w.path()).unwrap();
        assert!(!text.contains("organiza\""), "{text}");
    }

    #[test]
    fn a_bad_line_before_the_last_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let w = WorkOrders::new(dir.path(), "acme");
        w.add(new("m1", 1_000), Source::Api, "alice", 5).unwrap();
        let good = std::fs::read_to_string(w.path()).unwrap();
        std::fs::write(w.path(), format!("{good}not json\n{good}")).unwrap();
        let e = w.list().unwrap_err();
        assert!(matches!(e, FailuresError::Corrupt { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("failures.jsonl:2:"), "{e}");
        assert!(w.add(new("m3", 3_000), Source::Api, "a", 1).is_err());
    }

    #[test]
    fn bad_work_orders_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let w = WorkOrders::new(dir.path(), "acme");
        let cases: Vec<(NewWorkOrder, &str)> = vec![
            (
                NewWorkOrder {
                    machine_id: " ".into(),
                    ..new("m", 0)
                },
                "machineId",
            ),
            (
                NewWorkOrder {
                    component: "".into(),
                    ..new("m", 0)
                },
                "component",
            ),
            (
                NewWorkOrder {
                    component: "c".repeat(257),
                    ..new("m", 0)
                },
                "component",
            ),
            (
                NewWorkOrder {
                    end: Some(-1),
                    ..new("m", 0)
                },
                "end",
            ),
            (
                NewWorkOrder {
                    note: Some("n".repeat(2001)),
                    ..new("m", 0)
                },
                "note",
            ),
        ];
        for (n, field) in cases {
            match w.add(n, Source::Cli, "c", 0) {
                Err(FailuresError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(w.list().unwrap().is_empty());
        let ok = NewWorkOrder {
            machine_id: "m".repeat(256),
            note: Some("n".repeat(2000)),
            ..new("m", 0)
        };
        assert!(w.add(ok, Source::Cli, "c", 0).unwrap().1);
    }

    #[test]
    fn an_import_file_is_refused_up_front_naming_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wo.jsonl");
        let good = r#"{"organizationId":"acme","machineId":7,"component":"Heating","start":"2026-01-01T00:00:00Z","note":"fuse"}"#;
        std::fs::write(&p, format!("{good}\n\n{good}\n")).unwrap();
        let v = read_import(&p, "acme").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].machine_id, "7");
        assert_eq!(v[0].note.as_deref(), Some("fuse"));
        for (line, field) in [
            (
                r#"{"organizationId":"other","machineId":"m","component":"c","start":0}"#,
                "organizationId",
            ),
            (r#"{"machine":"m","component":"c","start":0}"#, "machine"),
            (
                r#"{"machineId":"m","component":"c","start":0,"note":"NOTE"}"#,
                "note",
            ),
        ] {
            let line = line.replace("NOTE", &"n".repeat(2001));
            std::fs::write(&p, format!("{good}\n{line}\n")).unwrap();
            let e = read_import(&p, "acme").unwrap_err().to_string();
            assert!(e.contains("wo.jsonl:2: "), "names the line: {e}");
            assert!(e.contains(field), "names the field {field}: {e}");
        }
    }

    #[test]
    fn a_body_takes_rfc3339_or_epoch_ms() {
        let a: NewWorkOrder = serde_json::from_str(
            r#"{"machineId":"m1","component":"c","start":"2026-01-01T00:00:00Z","end":1767226000000}"#,
        )
        .unwrap();
        assert_eq!(a.start, 1_767_225_600_000);
        assert_eq!(a.end, Some(1_767_226_000_000));
        assert!(
            serde_json::from_str::<NewWorkOrder>(
                r#"{"machineId":"m1","component":"c","start":"soon"}"#
            )
            .is_err()
        );
    }
}
