//! Importing historian exports (CSV/JSONL in the org's own schema, rows in any
//! order) into the history through the same schema mapping as live rows.
//!
//! A file is identified by its content (xxh3-128): a file imported before is
//! skipped whole, so importing twice adds nothing. Its rows get the source
//! position (import partition, line number), the import partition derived from
//! the content hash with the top bit set, so a live row (Kafka partition,
//! offset) with the same machine and ts always wins on read.

use super::{HistoryError, HistoryWriter, org_key};
use prognos_connectors::file::{FileFormat, FileInput, FileSource};
use prognos_dataflows::config::Config;
use prognos_dataflows::operators::schema_map::SchemaMapper;
use prognos_dataflows::records::DeadLetter;
use prognos_dataflows::source::{Source, SourceEvent, SourceStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    /// Organization.
    pub organization_id: String,
    /// Files imported now.
    pub files: Vec<PathBuf>,
    /// Files skipped because their content was imported before.
    pub already_imported: Vec<PathBuf>,
    /// Rows stored.
    pub rows: u64,
    /// Machines seen.
    pub machines: BTreeSet<String>,
    /// Earliest event time stored.
    #[serde(with = "prognos_dataflows::time::rfc3339_opt")]
    pub first_ts: Option<i64>,
    /// Latest event time stored.
    #[serde(with = "prognos_dataflows::time::rfc3339_opt")]
    pub last_ts: Option<i64>,
    /// Rows refused, by reason.
    pub dead_letters: BTreeMap<String, u64>,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The org is not configured.
    #[error("organization `{0}` is not in the configuration")]
    UnknownOrg(String),
    /// A file's format cannot be told from its name.
    #[error("{}: unknown format (use .jsonl, .ndjson, .json or .csv)", .0.display())]
    Format(PathBuf),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the history failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}

fn content_hash(path: &Path) -> Result<u128, ImportError> {
    use std::io::Read;
    let read = |source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(read)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest128())
}

/// Import `files` of `org` through `writer` (whose segments are closed at the
/// end), calling `progress(rows so far)` now and then and `dead` for each row
/// refused.
pub fn import(
    writer: &mut HistoryWriter,
    config: &Config,
    org: &str,
    files: &[PathBuf],
    mut progress: impl FnMut(u64),
    mut dead: impl FnMut(&DeadLetter),
) -> Result<ImportSummary, ImportError> {
    if !config.orgs.get(org).is_some_and(|o| o.enabled) {
        return Err(ImportError::UnknownOrg(org.to_string()));
    }
    let mapper = SchemaMapper::new(config);
    let store = writer.root().clone();
    let ledger = format!("{}/imports", org_key(org));
    let mut s = ImportSummary {
        organization_id: org.to_string(),
        ..ImportSummary::default()
    };
    for path in files {
        let format =
            FileFormat::from_path(path).ok_or_else(|| ImportError::Format(path.clone()))?;
        let hash = content_hash(path)?;
        let mark = format!("{ledger}/{hash:032x}.json");
        if store.exists(&mark)? {
            tracing::info!(file = %path.display(), "already imported: skipped");
            s.already_imported.push(path.clone());
            continue;
        }
        let partition = 0x8000_0000 | (hash as u32 & 0x7fff_ffff);
        let mut src = FileSource::new(vec![FileInput {
            path: path.clone(),
            org: org.to_string(),
            partition,
            format,
        }]);
        let mut events = Vec::new();
        let mut rows = Vec::new();
        let mut file_rows = 0u64;
        loop {
            events.clear();
            let status = src.poll(&mut events, 4096);
            rows.clear();
            for e in events.drain(..) {
                let SourceEvent::Row(raw) = e else { continue };
                match mapper.map(&raw) {
                    Ok(r) => {
                        s.machines.insert(r.machine_id.clone());
                        s.first_ts = Some(s.first_ts.map_or(r.ts, |t| t.min(r.ts)));
                        s.last_ts = Some(s.last_ts.map_or(r.ts, |t| t.max(r.ts)));
                        rows.push(r);
                    }
                    Err(d) => {
                        *s.dead_letters
                            .entry(d.reason.as_str().to_string())
                            .or_default() += 1;
                        dead(&d);
                    }
                }
            }
            writer.write(&rows)?;
            file_rows += rows.len() as u64;
            s.rows += rows.len() as u64;
            progress(s.rows);
            if status == SourceStatus::Finished {
                break;
            }
        }
        writer.close()?;
        let note = serde_json::json!({
            "file": path, "rows": file_rows, "partition": partition,
            "importedAt": prognos_dataflows::time::format_rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        });
        store.put(&mark, note.to_string().into())?;
        s.files.push(path.clone());
    }
    Ok(s)
}
