//! File source: JSONL or CSV files, each a partition read in order, line number =
//! offset (the CSV header is line 0). A worker's files are read round-robin in
//! chunks so their watermarks advance together and downstream buffers stay small.

use super::config::{FileFormat, FileInput};
use prognos_dataflows::records::{RawPayload, RawRow, SourcePosition};
use prognos_dataflows::source::{Source, SourceEvent, SourceStatus};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

/// Lines read from one file before moving to the next.
const CHUNK_LINES: usize = 512;

struct Open {
    input: FileInput,
    reader: Option<BufReader<File>>,
    header: Option<Arc<[String]>>,
    line: u64,
    done: bool,
}

/// Reads a worker's files.
pub struct FileSource {
    files: Vec<Open>,
    announced: bool,
    next: usize,
    buf: Vec<u8>,
}

impl FileSource {
    /// A source over `inputs` (already assigned to this worker).
    pub fn new(inputs: Vec<FileInput>) -> FileSource {
        FileSource {
            files: inputs
                .into_iter()
                .map(|input| Open {
                    input,
                    reader: None,
                    header: None,
                    line: 0,
                    done: false,
                })
                .collect(),
            announced: false,
            next: 0,
            buf: Vec::with_capacity(1024),
        }
    }
}

impl Open {
    /// Read up to `max` rows; false once the file has ended.
    fn read(&mut self, out: &mut Vec<SourceEvent>, max: usize, buf: &mut Vec<u8>) -> usize {
        if self.reader.is_none() {
            match File::open(&self.input.path) {
                Ok(f) => self.reader = Some(BufReader::with_capacity(1 << 20, f)),
                Err(e) => {
                    tracing::error!(file = %self.input.path.display(), error = %e, "cannot open input; partition ends");
                    return self.end(out);
                }
            }
        }
        let reader = self.reader.as_mut().expect("opened");
        let mut rows = 0;
        while rows < max {
            buf.clear();
            match reader.read_until(b'\n', buf) {
                Ok(0) => return self.end(out).max(rows),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(file = %self.input.path.display(), line = self.line, error = %e, "read error; partition ends");
                    return self.end(out).max(rows);
                }
            }
            let offset = self.line;
            self.line += 1;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Invalid UTF-8 becomes an `invalid_utf8` dead letter (bytes shown
            // lossily), never a row with mangled values.
            let text = match std::str::from_utf8(buf) {
                Ok(t) => t,
                Err(e) if self.header.is_some() || self.input.format == FileFormat::Jsonl => {
                    out.push(SourceEvent::Row(RawRow {
                        pos: SourcePosition {
                            partition: self.input.partition,
                            offset,
                        },
                        organization_id: Some(self.input.org.clone()),
                        payload: RawPayload::InvalidUtf8 {
                            text: String::from_utf8_lossy(buf).into_owned(),
                            valid_up_to: e.valid_up_to(),
                        },
                    }));
                    rows += 1;
                    continue;
                }
                // A CSV header that is not UTF-8 cannot name columns.
                Err(e) => {
                    tracing::error!(file = %self.input.path.display(), byte = e.valid_up_to(), "CSV header is not UTF-8; partition ends");
                    return self.end(out).max(rows);
                }
            };
            let payload = match self.input.format {
                FileFormat::Jsonl => RawPayload::Json {
                    text: text.to_string(),
                },
                FileFormat::Csv => match &self.header {
                    None => {
                        self.header = Some(
                            text.split(',')
                                .map(|h| h.trim().trim_matches('"').to_string())
                                .collect(),
                        );
                        continue;
                    }
                    Some(h) => RawPayload::Csv {
                        header: h.clone(),
                        text: text.to_string(),
                    },
                },
            };
            out.push(SourceEvent::Row(RawRow {
                pos: SourcePosition {
                    partition: self.input.partition,
                    offset,
                },
                organization_id: Some(self.input.org.clone()),
                payload,
            }));
            rows += 1;
        }
        rows
    }

    fn end(&mut self, out: &mut Vec<SourceEvent>) -> usize {
        if !self.done {
            self.done = true;
            self.reader = None;
            out.push(SourceEvent::PartitionEnd(self.input.partition));
        }
        0
    }
}

impl Source for FileSource {
    fn poll(&mut self, out: &mut Vec<SourceEvent>, max_rows: usize) -> SourceStatus {
        if !self.announced {
            self.announced = true;
            for f in &self.files {
                out.push(SourceEvent::Partition(f.input.partition));
            }
        }
        let mut rows = 0;
        let n = self.files.len();
        let mut idle_rounds = 0;
        while rows < max_rows && idle_rounds < n {
            let f = &mut self.files[self.next % n.max(1)];
            self.next = (self.next + 1) % n.max(1);
            if f.done {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            rows += f.read(out, CHUNK_LINES.min(max_rows - rows), &mut self.buf);
        }
        if self.files.iter().all(|f| f.done) {
            SourceStatus::Finished
        } else {
            SourceStatus::Ready
        }
    }
}
