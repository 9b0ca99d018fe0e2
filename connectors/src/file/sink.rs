//! File sinks: Parquet feature tables (one file per org, for training) and JSONL
//! records (dead letters, alerts, predictions).

use parquet::basic::{
    Compression, LogicalType, Repetition, TimeUnit, TimestampType, Type as PhysicalType,
};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use prognos_dataflows::records::FeatureRow;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows buffered per org before a Parquet row group is written.
const ROW_GROUP_ROWS: usize = 65_536;

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Creating or writing a file.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Encoding Parquet.
    #[error("writing Parquet {}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: parquet::errors::ParquetError,
    },
    /// A row whose feature count does not match its org's names.
    #[error("org {org}: a feature row has {got} features, the table has {want}")]
    Shape {
        /// Org.
        org: String,
        /// Features in the row.
        got: usize,
        /// Columns in the table.
        want: usize,
    },
}

struct OrgTable {
    path: PathBuf,
    writer: SerializedFileWriter<BufWriter<File>>,
    names: usize,
    machines: Vec<ByteArray>,
    ts: Vec<i64>,
    columns: Vec<Vec<f64>>,
    rows: u64,
}

/// Writes `<dir>/<org>.parquet` per org: columns `org`, `machine`, `ts`
/// (timestamp ms, UTC), then the features in the org's order (NaN where undefined).
pub struct ParquetFeatureSink {
    dir: PathBuf,
    names: BTreeMap<String, Vec<String>>,
    tables: BTreeMap<String, OrgTable>,
}

impl ParquetFeatureSink {
    /// A sink writing into `dir` for orgs with the given feature names.
    pub fn new(dir: &Path, names: BTreeMap<String, Vec<String>>) -> ParquetFeatureSink {
        ParquetFeatureSink {
            dir: dir.to_path_buf(),
            names,
            tables: BTreeMap::new(),
        }
    }

    fn table(&mut self, org: &str) -> Result<&mut OrgTable, SinkError> {
        if !self.tables.contains_key(org) {
            let path = self.dir.join(format!("{org}.parquet"));
            let names = self.names.get(org).cloned().unwrap_or_default();
            let pq = |source| SinkError::Parquet {
                path: path.clone(),
                source,
            };
            let field = |name: &str, ty: PhysicalType, logical: Option<LogicalType>| {
                Type::primitive_type_builder(name, ty)
                    .with_repetition(Repetition::REQUIRED)
                    .with_logical_type(logical)
                    .build()
                    .map(Arc::new)
                    .map_err(pq)
            };
            let ts_type = LogicalType::Timestamp(TimestampType {
                is_adjusted_to_u_t_c: true,
                unit: TimeUnit::MILLIS,
            });
            let mut fields = vec![
                field("org", PhysicalType::BYTE_ARRAY, Some(LogicalType::String))?,
                field(
                    "machine",
                    PhysicalType::BYTE_ARRAY,
                    Some(LogicalType::String),
                )?,
                field("ts", PhysicalType::INT64, Some(ts_type))?,
            ];
            for n in &names {
                fields.push(field(n, PhysicalType::DOUBLE, None)?);
            }
            let schema = Arc::new(
                Type::group_type_builder("features")
                    .with_fields(fields)
                    .build()
                    .map_err(pq)?,
            );
            let props = Arc::new(
                WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    // Feature values are nearly all distinct: dictionaries only cost time.
                    .set_dictionary_enabled(false)
                    .set_column_dictionary_enabled("org".into(), true)
                    .set_column_dictionary_enabled("machine".into(), true)
                    .set_created_by("prognos".into())
                    .build(),
            );
            let file = File::create(&path).map_err(|source| SinkError::Io {
                path: path.clone(),
                source,
            })?;
            let writer =
                SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, props)
                    .map_err(pq)?;
            self.tables.insert(
                org.to_string(),
                OrgTable {
                    path: path.clone(),
                    writer,
                    names: names.len(),
                    machines: Vec::new(),
                    ts: Vec::new(),
                    columns: vec![Vec::new(); names.len()],
                    rows: 0,
                },
            );
        }
        Ok(self.tables.get_mut(org).expect("inserted"))
    }

    /// Append rows (in the order given).
    pub fn write(&mut self, rows: &[FeatureRow]) -> Result<(), SinkError> {
        for r in rows {
            let t = self.table(&r.organization_id)?;
            if r.features.len() != t.names {
                return Err(SinkError::Shape {
                    org: r.organization_id.clone(),
                    got: r.features.len(),
                    want: t.names,
                });
            }
            t.machines.push(ByteArray::from(r.machine_id.as_str()));
            t.ts.push(r.ts);
            for (c, v) in t.columns.iter_mut().zip(&r.features) {
                c.push(*v);
            }
            if t.ts.len() >= ROW_GROUP_ROWS {
                let org = r.organization_id.clone();
                flush(t, &org)?;
            }
        }
        Ok(())
    }

    /// Flush and close every file; returns rows written per org.
    pub fn finish(self) -> Result<BTreeMap<String, u64>, SinkError> {
        let mut out = BTreeMap::new();
        for (org, mut t) in self.tables {
            flush(&mut t, &org)?;
            let path = t.path.clone();
            t.writer
                .close()
                .map_err(|source| SinkError::Parquet { path, source })?;
            out.insert(org, t.rows);
        }
        Ok(out)
    }
}

fn flush(t: &mut OrgTable, org: &str) -> Result<(), SinkError> {
    if t.ts.is_empty() {
        return Ok(());
    }
    let path = t.path.clone();
    let pq = |source| SinkError::Parquet {
        path: path.clone(),
        source,
    };
    let orgs: Vec<ByteArray> = vec![ByteArray::from(org); t.ts.len()];
    let mut rg = t.writer.next_row_group().map_err(pq)?;
    let mut col = 0usize;
    while let Some(mut w) = rg.next_column().map_err(pq)? {
        match col {
            0 => {
                w.typed::<ByteArrayType>()
                    .write_batch(&orgs, None, None)
                    .map_err(pq)?;
            }
            1 => {
                w.typed::<ByteArrayType>()
                    .write_batch(&t.machines, None, None)
                    .map_err(pq)?;
            }
            2 => {
                w.typed::<Int64Type>()
                    .write_batch(&t.ts, None, None)
                    .map_err(pq)?;
            }
            i => {
                w.typed::<DoubleType>()
                    .write_batch(&t.columns[i - 3], None, None)
                    .map_err(pq)?;
            }
        }
        w.close().map_err(pq)?;
        col += 1;
    }
    rg.close().map_err(pq)?;
    t.rows += t.ts.len() as u64;
    t.machines.clear();
    t.ts.clear();
    for c in &mut t.columns {
        c.clear();
    }
    Ok(())
}

/// Appends serializable records as JSON lines.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
}

impl JsonlSink {
    /// Create (truncate) `path`.
    pub fn create(path: &Path) -> Result<JsonlSink, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            count: 0,
        })
    }

    /// Append one record.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, record).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.count += 1;
        Ok(())
    }

    /// Flush; returns the number of records written.
    pub fn finish(mut self) -> Result<u64, SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.count)
    }
}
