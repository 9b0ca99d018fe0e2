//! Reading the history back: day by day, every segment of the day, duplicates
//! dropped by the dataflow's rule (lowest source position per machine and ts),
//! rows in `(ts, partition, offset)` order; summaries, retention and compaction.

use super::wal::WalRow;
use super::{Entry, HistoryError, HistoryStore, day_key, day_of_date, org_key, segment};
use std::collections::BTreeMap;

/// A row read back from the history.
pub type HistoryRow = WalRow;

/// Reads an org's history.
#[derive(Debug, Clone)]
pub struct HistoryReader {
    root: HistoryStore,
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
    pub fn new(root: &HistoryStore) -> HistoryReader {
        HistoryReader { root: root.clone() }
    }

    /// The root.
    pub fn root(&self) -> &HistoryStore {
        &self.root
    }

    /// Days with data of `org`, oldest first.
    pub fn days(&self, org: &str) -> Result<Vec<i64>, HistoryError> {
        let mut days: Vec<i64> = self
            .root
            .folders(&org_key(org))?
            .iter()
            .filter_map(|name| day_of_date(name.strip_prefix("date=")?))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    /// The segment files of one day (names and sizes; keys are
    /// `day_key(org, day)/<name>`).
    pub fn segments(&self, org: &str, day: i64) -> Result<Vec<Entry>, HistoryError> {
        Ok(self
            .root
            .files(&day_key(org, day))?
            .into_iter()
            .filter(|e| e.name.ends_with(".parquet"))
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
        for e in self.segments(org, day)? {
            let key = format!("{}/{}", day_key(org, day), e.name);
            // A part a compaction removed since the listing is skipped: its rows
            // are in the compacted file, which the next listing shows.
            if let Some(b) = self.root.get(&key)? {
                rows.extend(segment::read(&self.root.name_of(&key), b, signals)?);
            }
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
            bytes += segs.iter().map(|e| e.size).sum::<u64>();
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
                self.root.delete_folder(&day_key(org, day))?;
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
    // Each part fetched once: its columns first (every column any part has, the
    // configured ones first), then its rows from the same bytes.
    let dir = day_key(org, day);
    let mut fetched = Vec::with_capacity(parts.len());
    for p in &parts {
        let key = format!("{dir}/{}", p.name);
        if let Some(b) = reader.root.get(&key)? {
            fetched.push((reader.root.name_of(&key), b));
        }
    }
    let mut columns: Vec<String> = signals.to_vec();
    for (name, b) in &fetched {
        for c in segment::columns(name, b.clone())? {
            if !columns.contains(&c) && !super::RESERVED_COLUMNS.contains(&c.as_str()) {
                columns.push(c);
            }
        }
    }
    let mut rows = Vec::new();
    for (name, b) in fetched {
        rows.extend(segment::read(&name, b, &columns)?);
    }
    dedup(&mut rows);
    let hash = {
        let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
        xxhash_rust::xxh3::xxh3_64(names.join("\n").as_bytes())
    };
    let out = format!("compacted-{hash:016x}.parquet");
    segment::write(&reader.root, &format!("{dir}/{out}"), &columns, &rows)?;
    for p in &parts {
        if p.name != out {
            reader.root.delete(&format!("{dir}/{}", p.name))?;
        }
    }
    Ok(parts.len())
}
