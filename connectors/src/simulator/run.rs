//! Drivers: every org to its own file in parallel ([`run_to_dir`]), or all orgs
//! merged into one JSONL writer ([`run_to_writer`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::{OutputFormat, SimConfig, Speed};
use super::error::SimError;
use super::schema::{Component, OrgSchema};
use super::source::{Failure, OrgStream};
use prognos_dataflows::records::FailureEvent;

/// Bytes buffered before a write syscall.
const FLUSH_BYTES: usize = 1 << 20;
/// Rows between progress callbacks per org.
const PROGRESS_ROWS: u64 = 1 << 16;
/// Extra leading field naming the org in the merged stream.
pub const ORG_FIELD: &str = "org";

/// One org's result from a generator thread.
type OrgResult = Result<(usize, OrgSummary, Vec<Failure>), SimError>;

/// What one org produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgSummary {
    /// Org id.
    pub org_id: String,
    /// Rows written.
    pub rows: u64,
    /// Bytes written for the org's rows (header included).
    pub bytes: u64,
    /// Failure events by component, in [`Component::ALL`] order.
    pub events: [u64; 4],
}

/// What a run produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimSummary {
    /// Per org, in schema order.
    pub orgs: Vec<OrgSummary>,
    /// Bytes of `events.jsonl` (0 for [`run_to_writer`]).
    pub events_bytes: u64,
}

impl SimSummary {
    /// Rows over all orgs.
    pub fn rows_total(&self) -> u64 {
        self.orgs.iter().map(|o| o.rows).sum()
    }

    /// Bytes over all files.
    pub fn bytes_total(&self) -> u64 {
        self.orgs.iter().map(|o| o.bytes).sum::<u64>() + self.events_bytes
    }

    /// Failure events over all orgs and components.
    pub fn events_total(&self) -> u64 {
        self.orgs.iter().flat_map(|o| o.events).sum()
    }

    /// Failure events of `component` over all orgs.
    pub fn events_of(&self, component: Component) -> u64 {
        self.orgs.iter().map(|o| o.events[component.index()]).sum()
    }
}

fn validate_all(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    speed: Speed,
) -> Result<Option<f64>, SimError> {
    cfg.validate()?;
    let factor = speed.factor()?;
    for (i, s) in schemas.iter().enumerate() {
        s.validate()?;
        if schemas[..i].iter().any(|o| o.org_id == s.org_id) {
            return Err(SimError::InvalidSchema {
                org: s.org_id.clone(),
                reason: "org id appears twice".into(),
            });
        }
    }
    Ok(factor)
}

/// All orgs' failure events, sorted by (start, org index, machine, end).
pub fn failure_events(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
) -> Result<Vec<FailureEvent>, SimError> {
    validate_all(cfg, schemas, Speed::Max)?;
    let mut all = Vec::new();
    for (i, s) in schemas.iter().enumerate() {
        let st = OrgStream::build(cfg, i, s, None);
        all.extend(st.failure_events().iter().cloned().map(|e| (i, e)));
    }
    Ok(sorted_events(all, schemas))
}

/// Failures of all orgs (tagged with their org index) as event records, sorted
/// by (start, org index, machine, end): the order of `events.jsonl`.
fn sorted_events(mut all: Vec<(usize, Failure)>, schemas: &[OrgSchema]) -> Vec<FailureEvent> {
    all.sort_by(|(ia, a), (ib, b)| {
        (a.start_ms, *ia, &a.machine_id, a.end_ms).cmp(&(b.start_ms, *ib, &b.machine_id, b.end_ms))
    });
    all.iter().map(|(i, e)| e.to_event(&schemas[*i])).collect()
}

/// Paces output against the wall clock.
struct Pacer {
    factor: Option<f64>,
    start_ms: i64,
    wall0: Instant,
    last_ts: i64,
}

impl Pacer {
    fn new(factor: Option<f64>, start_ms: i64) -> Self {
        Pacer {
            factor,
            start_ms,
            wall0: Instant::now(),
            last_ts: i64::MIN,
        }
    }

    /// How long to wait before emitting a row at `ts` (checked once per instant).
    fn wait_for(&mut self, ts: i64) -> Option<Duration> {
        let f = self.factor?;
        if ts == self.last_ts {
            return None;
        }
        self.last_ts = ts;
        // A tiny factor can push the due time past `Duration::MAX`; saturate, never panic.
        let due = Duration::try_from_secs_f64(((ts - self.start_ms) as f64 / f / 1000.0).max(0.0))
            .unwrap_or(Duration::MAX);
        due.checked_sub(self.wall0.elapsed())
            .filter(|d| !d.is_zero())
    }
}

/// Writes `<dir>/<org_id>.<jsonl|csv>` per org and `<dir>/events.jsonl`, using
/// up to `available_parallelism()` threads. Output is byte-identical for any
/// thread count.
pub fn run_to_dir(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    dir: &Path,
    fmt: OutputFormat,
    speed: Speed,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SimSummary, SimError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    run_to_dir_with_threads(cfg, schemas, dir, fmt, speed, threads, progress)
}

/// [`run_to_dir`] with an explicit thread count (≥ 1; more than the org count is useless).
pub fn run_to_dir_with_threads(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    dir: &Path,
    fmt: OutputFormat,
    speed: Speed,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SimSummary, SimError> {
    let factor = validate_all(cfg, schemas, speed)?;
    std::fs::create_dir_all(dir).map_err(|source| SimError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let threads = threads.clamp(1, schemas.len().max(1));
    let rows_done = AtomicU64::new(0);
    let wall0 = Instant::now();
    let results: Vec<OrgResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let rows_done = &rows_done;
                scope.spawn(move || {
                    let mut out = Vec::new();
                    // Static round-robin assignment: which thread writes an org
                    // never changes its bytes.
                    for i in (t..schemas.len()).step_by(threads) {
                        let mut pacer = Pacer::new(factor, cfg.start_ms);
                        pacer.wall0 = wall0;
                        out.push(write_org(
                            cfg,
                            i,
                            &schemas[i],
                            dir,
                            fmt,
                            &mut pacer,
                            rows_done,
                            progress,
                        ));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .flat_map(|(t, h)| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(SimError::ThreadPanicked {
                        org: schemas
                            .get(t)
                            .map_or_else(String::new, |s| s.org_id.clone()),
                    })]
                })
            })
            .collect()
    });
    let mut orgs: Vec<(usize, OrgSummary)> = Vec::new();
    let mut events: Vec<(usize, Failure)> = Vec::new();
    for r in results {
        let (i, summary, evs) = r?;
        orgs.push((i, summary));
        events.extend(evs.into_iter().map(|e| (i, e)));
    }
    orgs.sort_by_key(|(i, _)| *i);
    let path = dir.join("events.jsonl");
    let mut buf = Vec::new();
    for e in sorted_events(events, schemas) {
        // A FailureEvent is plain strings and integers; serializing cannot fail.
        if serde_json::to_writer(&mut buf, &e).is_ok() {
            buf.push(b'\n');
        }
    }
    std::fs::write(&path, &buf).map_err(|source| SimError::WriteFile { path, source })?;
    progress(rows_done.load(Ordering::Relaxed));
    Ok(SimSummary {
        orgs: orgs.into_iter().map(|(_, s)| s).collect(),
        events_bytes: buf.len() as u64,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_org(
    cfg: &SimConfig,
    index: usize,
    schema: &OrgSchema,
    dir: &Path,
    fmt: OutputFormat,
    pacer: &mut Pacer,
    rows_done: &AtomicU64,
    progress: &(dyn Fn(u64) + Sync),
) -> OrgResult {
    let path: PathBuf = dir.join(format!("{}.{}", schema.org_id, fmt.extension()));
    let io_err = |source| SimError::WriteFile {
        path: path.clone(),
        source,
    };
    let mut file = File::create(&path).map_err(io_err)?;
    let mut stream = OrgStream::build(cfg, index, schema, None);
    let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
    let mut bytes = 0u64;
    if fmt == OutputFormat::Csv {
        stream.csv_header(&mut buf);
    }
    let mut unreported = 0u64;
    while let Some(ts) = stream.peek_ts() {
        if let Some(wait) = pacer.wait_for(ts) {
            // Readers tailing the file see everything up to now before we sleep.
            bytes += buf.len() as u64;
            file.write_all(&buf).map_err(io_err)?;
            buf.clear();
            std::thread::sleep(wait);
        }
        stream.next_into(&mut buf, fmt);
        unreported += 1;
        if buf.len() >= FLUSH_BYTES {
            bytes += buf.len() as u64;
            file.write_all(&buf).map_err(io_err)?;
            buf.clear();
        }
        if unreported == PROGRESS_ROWS {
            progress(rows_done.fetch_add(unreported, Ordering::Relaxed) + unreported);
            unreported = 0;
        }
    }
    rows_done.fetch_add(unreported, Ordering::Relaxed);
    bytes += buf.len() as u64;
    file.write_all(&buf).map_err(io_err)?;
    file.flush().map_err(io_err)?;
    let mut counts = [0u64; 4];
    for e in stream.failure_events() {
        counts[e.component.index()] += 1;
    }
    let summary = OrgSummary {
        org_id: schema.org_id.clone(),
        rows: stream.rows(),
        bytes,
        events: counts,
    };
    Ok((index, summary, stream.failure_events().to_vec()))
}

/// The org of the next row in the merged (ts, org index) order (machines of
/// one org already come in order), once the pacer lets it go: before sleeping
/// it runs `before_pause` (a writer flushes there). `None` when every stream
/// has ended.
fn next_org(
    streams: &[OrgStream],
    pacer: &mut Pacer,
    before_pause: &mut dyn FnMut() -> Result<(), SimError>,
) -> Result<Option<usize>, SimError> {
    let mut best: Option<(i64, usize)> = None;
    for (i, s) in streams.iter().enumerate() {
        if let Some(ts) = s.peek_ts()
            && best.is_none_or(|(b, _)| ts < b)
        {
            best = Some((ts, i));
        }
    }
    let Some((ts, i)) = best else { return Ok(None) };
    if let Some(wait) = pacer.wait_for(ts) {
        before_pause()?;
        std::thread::sleep(wait);
    }
    Ok(Some(i))
}

/// Hands every org's rows, one JSON object each (no newline), merged in
/// `(ts, org index, machine)` order and paced by `speed`, to `emit(org index,
/// machine index, row)`: the simulator as a producer for a message bus. Returns
/// the number of rows.
pub fn run_to_records(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    speed: Speed,
    emit: &mut dyn FnMut(usize, usize, &[u8]),
) -> Result<u64, SimError> {
    let factor = validate_all(cfg, schemas, speed)?;
    let mut streams: Vec<OrgStream> = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| OrgStream::build(cfg, i, s, None))
        .collect();
    let mut pacer = Pacer::new(factor, cfg.start_ms);
    let mut buf = Vec::with_capacity(1024);
    let mut rows = 0u64;
    while let Some(i) = next_org(&streams, &mut pacer, &mut || Ok(()))? {
        buf.clear();
        if let Some(info) = streams[i].next_into(&mut buf, OutputFormat::Jsonl) {
            while buf.last().is_some_and(|b| *b == b'\n') {
                buf.pop();
            }
            emit(i, info.machine, &buf);
            rows += 1;
        }
    }
    Ok(rows)
}

/// Writes every org's rows as JSONL to `w`, merged in (ts, org index, machine)
/// order, each row starting with `"org":"<org_id>"`. Failure events are not
/// written; get them from [`failure_events`].
pub fn run_to_writer(
    cfg: &SimConfig,
    schemas: &[OrgSchema],
    w: &mut dyn Write,
    speed: Speed,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SimSummary, SimError> {
    let factor = validate_all(cfg, schemas, speed)?;
    for s in schemas {
        if s.machine_column == ORG_FIELD
            || s.time_column == ORG_FIELD
            || s.columns.iter().any(|(_, c)| c == ORG_FIELD)
        {
            return Err(SimError::InvalidSchema {
                org: s.org_id.clone(),
                reason: format!("column `{ORG_FIELD}` clashes with the merged stream's org field"),
            });
        }
    }
    let mut streams: Vec<OrgStream> = schemas
        .iter()
        .enumerate()
        .map(|(i, s)| OrgStream::build(cfg, i, s, Some(ORG_FIELD)))
        .collect();
    let mut bytes = vec![0u64; streams.len()];
    let mut pacer = Pacer::new(factor, cfg.start_ms);
    let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
    let mut rows = 0u64;
    let wr = |w: &mut dyn Write, buf: &mut Vec<u8>| -> Result<(), SimError> {
        w.write_all(buf)
            .map_err(|source| SimError::WriteStream { source })?;
        buf.clear();
        Ok(())
    };
    // Written rows reach the reader before each pause.
    while let Some(i) = next_org(&streams, &mut pacer, &mut || {
        wr(w, &mut buf)?;
        w.flush().map_err(|source| SimError::WriteStream { source })
    })? {
        let before = buf.len();
        streams[i].next_into(&mut buf, OutputFormat::Jsonl);
        bytes[i] += (buf.len() - before) as u64;
        rows += 1;
        if buf.len() >= FLUSH_BYTES {
            wr(w, &mut buf)?;
        }
        if rows.is_multiple_of(PROGRESS_ROWS) {
            progress(rows);
        }
    }
    wr(w, &mut buf)?;
    w.flush()
        .map_err(|source| SimError::WriteStream { source })?;
    progress(rows);
    let orgs = streams
        .iter()
        .zip(bytes)
        .map(|(s, bytes)| {
            let mut events = [0u64; 4];
            for e in s.failure_events() {
                events[e.component.index()] += 1;
            }
            OrgSummary {
                org_id: s.schema().org_id.clone(),
                rows: s.rows(),
                bytes,
                events,
            }
        })
        .collect();
    Ok(SimSummary {
        orgs,
        events_bytes: 0,
    })
}
