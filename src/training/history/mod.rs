//! The history store: every row that passes schema mapping, kept per org as
//! canonical signals (machine, ts, source position, values) so each org's model
//! can be trained on its own data (ARCHITECTURE.md, "History and training").
//!
//! Layout under the history root (`<data-dir>/history` by default, `[history].dir`
//! — a volume a cluster's workers and controller share — or `[history].url`, an
//! S3-compatible object store; see [`HistoryStore`]):
//!
//! ```text
//! org=<id>/date=<YYYY-MM-DD>/<writer>-<seq>.parquet   closed segments (UTC day of ts)
//! org=<id>/imports/<content hash>.json                 files imported (idempotence)
//! ```
//!
//! Writing ([`HistoryWriter`]): rows are appended to a write-ahead file per
//! (org, day) in the writer's own directory (`<data-dir>/history-wal/<writer>/`),
//! made durable by [`HistoryWriter::flush`] (fsync). A segment is closed — its
//! write-ahead file turned into a Parquet file in the shared root (one whole
//! file: renamed into place, or one PUT), then removed —
//! when it reaches `segment_max_rows` rows or `segment_max_age_s`, and at
//! shutdown; a writer that starts finds the files an earlier run left (kill -9)
//! and closes them first. So a row is durable once the flush that follows it
//! returns, and a worker flushes before its checkpoint passes the row.
//!
//! Reading ([`HistoryReader`]): a replay after a restart appends rows again with
//! the same source position, and two sources may carry the same (machine, ts):
//! rows are deduplicated on read by the dataflow's own rule — of the rows with
//! one (machine, ts), the lowest (partition, offset) wins. [`compact`] merges a
//! day's segments into one file (deduplicated) and [`HistoryReader::retain`]
//! drops days older than the retention.

pub mod import;
mod reader;
mod segment;
mod store;
pub mod test_s3;
mod wal;
mod writer;

pub use reader::{HistoryReader, HistoryRow, MachineSummary, OrgSummary, compact};
pub use store::{Entry, HistoryStore};
pub use writer::{HistorySettings, HistoryWriter};

use std::path::{Path, PathBuf};

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file could not be read or written.
    #[error("history file {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A Parquet segment could not be written or read.
    #[error("history segment {}: {source}", path.display())]
    Parquet {
        /// The segment.
        path: PathBuf,
        /// The codec's error.
        source: parquet::errors::ParquetError,
    },
    /// The history's location is unusable, or the object store refused a request.
    #[error("history at {location}: {reason}")]
    Location {
        /// The URL, path or key.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A file does not have the expected shape.
    #[error("history file {}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl HistoryError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
        move |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day number of `ts` (days since 1970-01-01).
pub fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day number.
pub fn date_of_day(day: i64) -> String {
    let (y, m, d) = prognos_dataflows::time::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The day number of a `YYYY-MM-DD` folder name.
pub fn day_of_date(date: &str) -> Option<i64> {
    let mut it = date.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let day = prognos_dataflows::time::days_from_civil(y, m, d);
    (date_of_day(day) == date).then_some(day)
}

/// `<root>/org=<org>`, in a local history directory.
pub fn org_dir(root: &Path, org: &str) -> PathBuf {
    root.join(org_key(org))
}

/// The key of an org's folder: `org=<org>`.
pub fn org_key(org: &str) -> String {
    format!("org={org}")
}

/// The key of a day's folder: `org=<org>/date=<YYYY-MM-DD>`.
pub fn day_key(org: &str, day: i64) -> String {
    format!("{}/date={}", org_key(org), date_of_day(day))
}

/// The segment's own columns, which no signal may be named after.
pub use prognos_dataflows::config::RESERVED_SIGNAL_NAMES as RESERVED_COLUMNS;

/// Write `bytes` to `path` through a temporary file, fsync and rename, so a
/// reader never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(HistoryError::io(&tmp))?;
    f.write_all(bytes).map_err(HistoryError::io(&tmp))?;
    f.sync_all().map_err(HistoryError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(HistoryError::io(path))?;
    sync_dir(path);
    Ok(())
}

/// fsync the directory holding `path` (a rename is durable once its directory is).
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests;

/// The history of a process: `[history].url` (an object store), else
/// `[history].dir`, else `<data-dir>/history`.
pub fn root_for(
    config: &prognos_dataflows::config::Config,
    data_dir: &Path,
) -> Result<HistoryStore, HistoryError> {
    match (&config.history.url, &config.history.dir) {
        (Some(url), _) => HistoryStore::open(url),
        (None, Some(d)) => Ok(HistoryStore::dir(Path::new(d))),
        (None, None) => Ok(HistoryStore::dir(&data_dir.join("history"))),
    }
}

/// Where the files kept beside the history on local disk (work orders) live:
/// the history's directory, or `<data-dir>/history` when the history is in an
/// object store.
pub fn local_dir_for(config: &prognos_dataflows::config::Config, data_dir: &Path) -> PathBuf {
    match (&config.history.url, &config.history.dir) {
        (None, Some(d)) => PathBuf::from(d),
        _ => data_dir.join("history"),
    }
}

/// Where a writer named `name` keeps its write-ahead files.
pub fn wal_dir_for(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("history-wal").join(name)
}

/// The segment budgets of the configuration.
pub fn settings_of(config: &prognos_dataflows::config::Config) -> HistorySettings {
    HistorySettings {
        segment_max_rows: config.history.segment_max_rows,
        segment_max_age_s: config.history.segment_max_age_s,
    }
}

/// Retention and compaction, for every configured org: days older than
/// `training.data_days` plus the feature margin (whole days, counted back from
/// the org's latest row) are removed, and days before the latest one with
/// `compact_min_segments` segments or more are merged. Returns (days removed,
/// segments merged).
pub fn maintain(
    config: &prognos_dataflows::config::Config,
    root: &HistoryStore,
) -> Result<(usize, usize), HistoryError> {
    let reader = HistoryReader::new(root);
    let (mut removed, mut merged) = (0, 0);
    for (org, o) in &config.orgs {
        let days = reader.days(org)?;
        let Some(&last) = days.last() else { continue };
        let margin_days = (config.replay_margin_ms() as i64).div_euclid(DAY_MS) + 1;
        let keep_from = last - o.training.data_days as i64 - margin_days;
        removed += reader.retain(org, keep_from)?.len();
        let signals: Vec<String> = o.signals.iter().map(|s| s.name.clone()).collect();
        for day in reader.days(org)? {
            if day < last {
                merged += compact(
                    &reader,
                    org,
                    day,
                    &signals,
                    config.history.compact_min_segments,
                )?;
            }
        }
    }
    Ok((removed, merged))
}
