//! Appending mapped rows to the history: write-ahead files per open segment,
//! fsynced by `flush`, turned into Parquet segments on a size/age budget and at
//! close (see the module documentation of `history`).

use super::wal::{self, WalFile, WalHeader};
use super::{HistoryError, HistoryStore, day_key, day_of, segment};
use prognos_dataflows::config::Config;
use prognos_dataflows::records::CanonicalRow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When open segments are closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Rows after which a segment is closed.
    pub segment_max_rows: u64,
    /// Age after which a segment is closed (s).
    pub segment_max_age_s: u64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            segment_max_rows: 200_000,
            segment_max_age_s: 600,
        }
    }
}

struct Open {
    wal: WalFile,
    opened: Instant,
}

/// Appends one process's mapped rows to the history.
pub struct HistoryWriter {
    root: HistoryStore,
    wal_dir: PathBuf,
    /// Unique among every writer and restart: names the segment files.
    writer_id: String,
    signals: HashMap<String, Arc<Vec<String>>>,
    open: HashMap<(String, i64), Open>,
    seq: u64,
    settings: HistorySettings,
    /// Rows appended since start.
    pub rows: u64,
    /// Segments closed since start.
    pub segments: u64,
    /// Bytes of Parquet written since start.
    pub parquet_bytes: u64,
}

impl HistoryWriter {
    /// A writer into `root` keeping its write-ahead files in `wal_dir` (one per
    /// writer: a worker process, the embedded service, an import), first closing
    /// whatever an earlier run of it left there.
    pub fn open(
        root: &HistoryStore,
        wal_dir: &Path,
        config: &Config,
        settings: HistorySettings,
    ) -> Result<HistoryWriter, HistoryError> {
        root.create()?;
        std::fs::create_dir_all(wal_dir).map_err(HistoryError::io(wal_dir))?;
        let recovered = recover(root, wal_dir)?;
        if recovered > 0 {
            tracing::info!(dir = %wal_dir.display(), segments = recovered,
                "history: closed the segments an earlier run left open");
        }
        let name = wal_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("writer")
            .to_string();
        let writer_id = format!(
            "{name}-{}-{}",
            chrono::Utc::now().timestamp_millis(),
            std::process::id()
        );
        Ok(HistoryWriter {
            root: root.clone(),
            wal_dir: wal_dir.to_path_buf(),
            writer_id,
            signals: signals_of(config),
            open: HashMap::new(),
            seq: 0,
            settings,
            rows: 0,
            segments: 0,
            parquet_bytes: 0,
        })
    }

    /// The history root.
    pub fn root(&self) -> &HistoryStore {
        &self.root
    }

    /// Append mapped rows (any order, any org of the configuration).
    pub fn write(&mut self, rows: &[CanonicalRow]) -> Result<(), HistoryError> {
        for r in rows {
            let day = day_of(r.ts);
            let key = (r.organization_id.clone(), day);
            if !self.open.contains_key(&key) {
                let Some(signals) = self.signals.get(&r.organization_id) else {
                    continue; // not a configured org: the mapper never lets one through
                };
                self.seq += 1;
                let path = self
                    .wal_dir
                    .join(format!("{}-{:06}.wal", self.writer_id, self.seq));
                let wal = WalFile::create(
                    &path,
                    WalHeader {
                        org: r.organization_id.clone(),
                        day,
                        signals: signals.as_ref().clone(),
                    },
                )?;
                self.open.insert(
                    key.clone(),
                    Open {
                        wal,
                        opened: Instant::now(),
                    },
                );
            }
            let o = self.open.get_mut(&key).expect("opened above");
            o.wal.append(r)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// Make every row written so far durable, then close the segments that
    /// reached their size or age.
    pub fn flush(&mut self) -> Result<(), HistoryError> {
        for o in self.open.values_mut() {
            o.wal.sync()?;
        }
        let max_age = Duration::from_secs(self.settings.segment_max_age_s);
        let due: Vec<(String, i64)> = self
            .open
            .iter()
            .filter(|(_, o)| {
                o.wal.rows >= self.settings.segment_max_rows || o.opened.elapsed() >= max_age
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.close_one(&k)?;
        }
        Ok(())
    }

    /// Close every open segment (shutdown, or before training reads the history).
    pub fn close(&mut self) -> Result<(), HistoryError> {
        let keys: Vec<(String, i64)> = self.open.keys().cloned().collect();
        for k in keys {
            self.close_one(&k)?;
        }
        Ok(())
    }

    fn close_one(&mut self, key: &(String, i64)) -> Result<(), HistoryError> {
        let Some(mut o) = self.open.remove(key) else {
            return Ok(());
        };
        o.wal.sync()?;
        let path = o.wal.path.clone();
        drop(o);
        if let Some(bytes) = seal(&self.root, &path)? {
            self.segments += 1;
            self.parquet_bytes += bytes;
        }
        Ok(())
    }
}

/// Turn one write-ahead file into its Parquet segment and remove it (once the
/// segment is stored); the bytes written (None when it held no row).
fn seal(root: &HistoryStore, wal_path: &Path) -> Result<Option<u64>, HistoryError> {
    let mut written = None;
    if let Some((header, rows)) = wal::read(wal_path)?
        && !rows.is_empty()
    {
        let stem = wal_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("segment");
        let key = format!("{}/{stem}.parquet", day_key(&header.org, header.day));
        written = Some(segment::write(root, &key, &header.signals, &rows)?);
    }
    std::fs::remove_file(wal_path).map_err(HistoryError::io(wal_path))?;
    super::sync_dir(wal_path);
    Ok(written)
}

/// Seal every write-ahead file in `wal_dir` (left by a run that stopped without
/// closing them); the number sealed.
fn recover(root: &HistoryStore, wal_dir: &Path) -> Result<usize, HistoryError> {
    let mut n = 0;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(wal_dir)
        .map_err(HistoryError::io(wal_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    for p in paths {
        seal(root, &p)?;
        n += 1;
    }
    Ok(n)
}

/// Each enabled org's declared signal names, the history's value columns.
pub fn signals_of(config: &Config) -> HashMap<String, Arc<Vec<String>>> {
    config
        .orgs
        .iter()
        .filter(|(_, o)| o.enabled)
        .map(|(id, o)| {
            (
                id.clone(),
                Arc::new(o.signals.iter().map(|s| s.name.clone()).collect()),
            )
        })
        .collect()
}
