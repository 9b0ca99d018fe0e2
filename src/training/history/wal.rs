//! The write-ahead file of one open segment: a header line naming the org, the
//! day and the signal columns, then one length-prefixed, checksummed record per
//! row. A record torn by a crash (short, or a checksum that does not match) ends
//! the file on reading: it was never flushed, so no checkpoint passed it.

use super::HistoryError;
use prognos_dataflows::records::{CanonicalRow, SourcePosition};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"prognos-history-wal 1\n";

/// What a write-ahead file holds rows of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalHeader {
    /// Organization.
    pub org: String,
    /// UTC day number of every row's ts.
    pub day: i64,
    /// Signal names, the order of each row's values.
    pub signals: Vec<String>,
}

/// One row as the history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRow {
    /// Machine.
    pub machine: String,
    /// Event time (ms).
    pub ts: i64,
    /// Source position.
    pub pos: SourcePosition,
    /// Values in header order (NaN = missing).
    pub values: Vec<f64>,
}

/// An open write-ahead file.
pub struct WalFile {
    /// Its path.
    pub path: PathBuf,
    /// What it holds.
    pub header: WalHeader,
    out: BufWriter<File>,
    /// Rows appended.
    pub rows: u64,
    /// Bytes appended.
    pub bytes: u64,
    buf: Vec<u8>,
}

fn checksum(body: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(body) as u32
}

impl WalFile {
    /// Create `path` with `header`.
    pub fn create(path: &Path, header: WalHeader) -> Result<WalFile, HistoryError> {
        let f = File::create(path).map_err(HistoryError::io(path))?;
        let mut out = BufWriter::with_capacity(256 << 10, f);
        let line = serde_json::to_string(&header).map_err(|e| HistoryError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        out.write_all(MAGIC)
            .and_then(|_| out.write_all(line.as_bytes()))
            .and_then(|_| out.write_all(b"\n"))
            .map_err(HistoryError::io(path))?;
        Ok(WalFile {
            path: path.to_path_buf(),
            header,
            out,
            rows: 0,
            bytes: (MAGIC.len() + line.len() + 1) as u64,
            buf: Vec::with_capacity(256),
        })
    }

    /// Append one row; `values` are the row's first `header.signals.len()` values.
    pub fn append(&mut self, row: &CanonicalRow) -> Result<(), HistoryError> {
        let n = self.header.signals.len();
        let b = &mut self.buf;
        b.clear();
        let machine = row.machine_id.as_bytes();
        let mlen = machine.len().min(u16::MAX as usize);
        b.extend_from_slice(&(mlen as u16).to_le_bytes());
        b.extend_from_slice(&machine[..mlen]);
        b.extend_from_slice(&row.ts.to_le_bytes());
        b.extend_from_slice(&row.pos.partition.to_le_bytes());
        b.extend_from_slice(&row.pos.offset.to_le_bytes());
        b.extend_from_slice(&(n as u16).to_le_bytes());
        for i in 0..n {
            let v = row.values.get(i).copied().unwrap_or(f64::NAN);
            b.extend_from_slice(&v.to_le_bytes());
        }
        let len = b.len() as u32;
        let sum = checksum(b);
        let path = &self.path;
        self.out
            .write_all(&len.to_le_bytes())
            .and_then(|_| self.out.write_all(&sum.to_le_bytes()))
            .and_then(|_| self.out.write_all(&self.buf))
            .map_err(HistoryError::io(path))?;
        self.rows += 1;
        self.bytes += 8 + len as u64;
        Ok(())
    }

    /// Make everything appended durable (fsync).
    pub fn sync(&mut self) -> Result<(), HistoryError> {
        let path = &self.path;
        self.out.flush().map_err(HistoryError::io(path))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(HistoryError::io(path))
    }
}

/// Read a write-ahead file: its header and every complete record; None when
/// even the header never reached the disk (a crash right after the file was
/// created: no row of it was ever flushed).
pub fn read(path: &Path) -> Result<Option<(WalHeader, Vec<WalRow>)>, HistoryError> {
    let format = |reason: &str| HistoryError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let f = File::open(path).map_err(HistoryError::io(path))?;
    let mut r = BufReader::with_capacity(256 << 10, f);
    let mut magic = Vec::with_capacity(MAGIC.len());
    (&mut r)
        .take(MAGIC.len() as u64)
        .read_to_end(&mut magic)
        .map_err(HistoryError::io(path))?;
    if magic.len() < MAGIC.len() && MAGIC.starts_with(&magic) {
        return Ok(None); // torn before the header was written
    }
    if magic != MAGIC {
        return Err(format("not a history write-ahead file"));
    }
    let mut line = String::new();
    r.read_line(&mut line).map_err(HistoryError::io(path))?;
    if !line.ends_with('\n') {
        return Ok(None); // torn inside the header
    }
    let header: WalHeader =
        serde_json::from_str(line.trim_end()).map_err(|e| format(&format!("bad header: {e}")))?;
    let mut rows = Vec::new();
    let mut head = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if r.read_exact(&mut head).is_err() {
            break; // end, or a torn length
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        body.resize(len, 0);
        if r.read_exact(&mut body).is_err() || checksum(&body) != sum {
            break; // torn by a crash: never flushed
        }
        match decode(&body) {
            Some(row) => rows.push(row),
            None => return Err(format("a record with a valid checksum does not decode")),
        }
    }
    Ok(Some((header, rows)))
}

fn decode(b: &[u8]) -> Option<WalRow> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = b.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let mlen = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let machine = String::from_utf8(take(mlen)?.to_vec()).ok()?;
    let ts = i64::from_le_bytes(take(8)?.try_into().ok()?);
    let partition = u32::from_le_bytes(take(4)?.try_into().ok()?);
    let offset = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let n = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(f64::from_le_bytes(take(8)?.try_into().ok()?));
    }
    Some(WalRow {
        machine,
        ts,
        pos: SourcePosition { partition, offset },
        values,
    })
}
