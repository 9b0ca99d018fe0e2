//! Reading the history back: day by day, every segment of the day, duplicates
//! dropped by the dataflow's rule (lowest source position per machine and ts),
//! rows in `(ts, partition, offset)` order; summaries, retention and compaction.

use super::wal::WalRow;
use super::{HistoryError, day_dir, day_of_date, org_dir, segment};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A row read back from the history.
pub type HistoryRow = WalRow;

/// Reads an org's history.
#[derive(Debug, Clone)]
pub struct HistoryReader {
    root: PathBuf,
}

/// What is stored of one machine.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineSummary {
    /// Machine.
    pub machine_id: String,
    /// Rows (after duplicates are dropped).
    pub rows: u64,
    /// First event time.
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub first_ts: i64,
    /// Last event time.
    #[serde(with = "prognos_dataflows::time::rfc3339")]
    pub last_ts: i64,
    /// The usual sampling interval (median spacing, ms).
    pub median_interval_ms: i64,
    /// Silences longer than ten usual intervals (and a minute).
    pub gaps: u64,
    /// The longest silence (ms).
    pub longest_gap_ms: i64,
}

/// What is stored of one org.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgSummary {
    /// Organization.
    pub organization_id: String,
    /// Rows (after duplicates are dropped).
    pub rows: u64,
    /// Rows stored twice (dropped on read).
    pub duplicates: u64,
    /// Days with data.
    pub days: usize,
    /// Segment files.
    pub segments: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Per machine.
    pub machines: Vec<MachineSummary>,
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    match std::fs::read_dir(dir) {
        Ok(it) => {
            let mut v: Vec<PathBuf> = it.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(HistoryError::io(dir)(e)),
    }
}

/// Sort by (machine, ts, position), keep the first of each (machine, ts), then
/// order by (ts, position). Returns the duplicates dropped.
fn dedup(rows: &mut Vec<WalRow>) -> u64 {
    rows.sort_unstable_by(|a, b| (&a.machine, a.ts, a.pos).cmp(&(&b.machine, b.ts, b.pos)));
    let before = rows.len();
    rows.dedup_by(|b, a| a.machine == b.machine && a.ts == b.ts);
    let dropped = (before - rows.len()) as u64;
    rows.sort_unstable_by(|a, b| (a.ts, a.pos, &a.machine).cmp(&(b.ts, b.pos, &b.machine)));
    dropped
}

impl HistoryReader {
    /// A reader over the history at `root`.
    pub fn new(root: &Path) -> HistoryReader {
        HistoryReader {
            root: root.to_path_buf(),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Days with data of `org`, oldest first.
    pub fn days(&self, org: &str) -> Result<Vec<i64>, HistoryError> {
        let mut days: Vec<i64> = list_dir(&org_dir(&self.root, org))?
            .iter()
            .filter_map(|p| day_of_date(p.file_name()?.to_str()?.strip_prefix("date=")?))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    /// The segment files of one day.
    pub fn segments(&self, org: &str, day: i64) -> Result<Vec<PathBuf>, HistoryError> {
        Ok(list_dir(&day_dir(&self.root, org, day))?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect())
    }

    /// One day of `org`: every segment, duplicates dropped, in (ts, position)
    /// order; values in `signals` order. Also the duplicates dropped.
    pub fn read_day(
        &self,
        org: &str,
        day: i64,
        signals: &[String],
    ) -> Result<(Vec<HistoryRow>, u64), HistoryError> {
        let mut rows = Vec::new();
        for p in self.segments(org, day)? {
            rows.extend(segment::read(&p, signals)?);
        }
        let dropped = dedup(&mut rows);
        Ok((rows, dropped))
    }

    /// Rows of `org` with `from <= ts < to`, day by day in (ts, position) order,
    /// handed to `each` a day at a time (memory holds one day). Returns the rows
    /// handed over.
    pub fn scan(
        &self,
        org: &str,
        from: i64,
        to: i64,
        signals: &[String],
        mut each: impl FnMut(&[HistoryRow]) -> Result<(), HistoryError>,
    ) -> Result<u64, HistoryError> {
        let mut n = 0;
        for day in self.days(org)? {
            let (start, end) = (day * super::DAY_MS, (day + 1) * super::DAY_MS);
            if end <= from || start >= to {
                continue;
            }
            let (mut rows, _) = self.read_day(org, day, signals)?;
            rows.retain(|r| r.ts >= from && r.ts < to);
            n += rows.len() as u64;
            each(&rows)?;
        }
        Ok(n)
    }

    /// The latest event time stored for `org`.
    pub fn last_ts(&self, org: &str) -> Result<Option<i64>, HistoryError> {
        for day in self.days(org)?.into_iter().rev() {
            let (rows, _) = self.read_day(org, day, &[])?;
            if let Some(r) = rows.iter().map(|r| r.ts).max() {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// What is stored for `org`, per machine.
    pub fn summary(&self, org: &str) -> Result<OrgSummary, HistoryError> {
        struct Acc {
            rows: u64,
            first: i64,
            last: i64,
            intervals: Vec<i64>,
        }
        let mut by: BTreeMap<String, Acc> = BTreeMap::new();
        let (mut dups, mut segments, mut bytes, mut days) = (0, 0, 0, 0);
        for day in self.days(org)? {
            let segs = self.segments(org, day)?;
            segments += segs.len();
            bytes += segs
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum::<u64>();
            let (rows, d) = self.read_day(org, day, &[])?;
            dups += d;
            days += !rows.is_empty() as usize;
            for r in rows {
                let a = by.entry(r.machine.clone()).or_insert(Acc {
                    rows: 0,
                    first: r.ts,
                    last: r.ts,
                    intervals: Vec::new(),
                });
                if a.rows > 0 {
                    a.intervals.push(r.ts - a.last);
                }
                a.rows += 1;
                a.last = r.ts;
            }
        }
        let machines = by
            .into_iter()
            .map(|(m, mut a)| {
                a.intervals.sort_unstable();
                let median = a
                    .intervals
                    .get(a.intervals.len().saturating_sub(1) / 2)
                    .copied()
                    .unwrap_or(0);
                let limit = (median * 10).max(60_000);
                MachineSummary {
                    machine_id: m,
                    rows: a.rows,
                    first_ts: a.first,
                    last_ts: a.last,
                    median_interval_ms: median,
                    gaps: a.intervals.iter().filter(|&&i| i > limit).count() as u64,
                    longest_gap_ms: a.intervals.last().copied().unwrap_or(0),
                }
            })
            .collect::<Vec<_>>();
        Ok(OrgSummary {
            organization_id: org.to_string(),
            rows: machines.iter().map(|m| m.rows).sum(),
            duplicates: dups,
            days,
            segments,
            bytes,
            machines,
        })
    }

    /// Remove `org`'s days before `keep_from_day`; the days removed.
    pub fn retain(&self, org: &str, keep_from_day: i64) -> Result<Vec<i64>, HistoryError> {
        let mut removed = Vec::new();
        for day in self.days(org)? {
            if day < keep_from_day {
                let dir = day_dir(&self.root, org, day);
                std::fs::remove_dir_all(&dir).map_err(HistoryError::io(&dir))?;
                removed.push(day);
            }
        }
        Ok(removed)
    }
}

/// Merge the segments of one day of `org` into one file (duplicates dropped)
/// when it has at least `min_segments`; the segments merged (0 when left alone).
/// The merged file is written before the parts are removed, so a reader meanwhile
/// sees every row (at worst twice, which reading drops).
pub fn compact(
    reader: &HistoryReader,
    org: &str,
    day: i64,
    signals: &[String],
    min_segments: usize,
) -> Result<usize, HistoryError> {
    let parts = reader.segments(org, day)?;
    if parts.len() < min_segments.max(2) {
        return Ok(0);
    }
    // Every column any part has, the configured ones first.
    let mut columns: Vec<String> = signals.to_vec();
    for p in &parts {
        for c in segment::columns(p)? {
            if !columns.contains(&c) && !super::RESERVED_COLUMNS.contains(&c.as_str()) {
                columns.push(c);
            }
        }
    }
    let (rows, _) = reader.read_day(org, day, &columns)?;
    let hash = {
        let names: Vec<String> = parts
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        xxhash_rust::xxh3::xxh3_64(names.join("\n").as_bytes())
    };
    let out = day_dir(&reader.root, org, day).join(format!("compacted-{hash:016x}.parquet"));
    segment::write(&out, &columns, &rows)?;
    for p in &parts {
        if p != &out {
            std::fs::remove_file(p).map_err(HistoryError::io(p))?;
        }
    }
    super::sync_dir(&out);
    Ok(parts.len())
}
