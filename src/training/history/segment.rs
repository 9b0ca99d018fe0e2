//! Closed segments: Parquet files with the columns `machine` (string), `ts`
//! (timestamp ms, UTC), `partition`, `offset` (the source position), then one
//! double column per canonical signal, named after it (NaN = missing).

use super::HistoryError;
use super::wal::WalRow;
use parquet::basic::{
    Compression, LogicalType, Repetition, TimeUnit, TimestampType, Type as PhysicalType,
};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group.
const ROW_GROUP_ROWS: usize = 65_536;

/// Write `rows` (values in `signals` order) to `path` through a temporary file
/// (fsync, rename): a reader sees the whole segment or none of it.
pub fn write(path: &Path, signals: &[String], rows: &[WalRow]) -> Result<u64, HistoryError> {
    let tmp = path.with_extension("parquet.tmp");
    let pq = |source| HistoryError::Parquet {
        path: path.to_path_buf(),
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
    let mut fields = vec![
        field(
            "machine",
            PhysicalType::BYTE_ARRAY,
            Some(LogicalType::String),
        )?,
        field(
            "ts",
            PhysicalType::INT64,
            Some(LogicalType::Timestamp(TimestampType {
                is_adjusted_to_u_t_c: true,
                unit: TimeUnit::MILLIS,
            })),
        )?,
        field("partition", PhysicalType::INT64, None)?,
        field("offset", PhysicalType::INT64, None)?,
    ];
    for s in signals {
        fields.push(field(s, PhysicalType::DOUBLE, None)?);
    }
    let schema = Arc::new(
        Type::group_type_builder("history")
            .with_fields(fields)
            .build()
            .map_err(pq)?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_column_dictionary_enabled("machine".into(), true)
            .set_created_by("prognos".into())
            .build(),
    );
    let file = File::create(&tmp).map_err(HistoryError::io(&tmp))?;
    let mut w = SerializedFileWriter::new(BufWriter::with_capacity(1 << 20, file), schema, props)
        .map_err(pq)?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        let mut rg = w.next_row_group().map_err(pq)?;
        let mut col = 0usize;
        while let Some(mut c) = rg.next_column().map_err(pq)? {
            match col {
                0 => {
                    let v: Vec<ByteArray> = chunk
                        .iter()
                        .map(|r| ByteArray::from(r.machine.as_str()))
                        .collect();
                    c.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(pq)?;
                }
                1..=3 => {
                    let v: Vec<i64> = chunk
                        .iter()
                        .map(|r| match col {
                            1 => r.ts,
                            2 => r.pos.partition as i64,
                            _ => r.pos.offset as i64,
                        })
                        .collect();
                    c.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .map_err(pq)?;
                }
                i => {
                    let v: Vec<f64> = chunk
                        .iter()
                        .map(|r| r.values.get(i - 4).copied().unwrap_or(f64::NAN))
                        .collect();
                    c.typed::<DoubleType>()
                        .write_batch(&v, None, None)
                        .map_err(pq)?;
                }
            }
            c.close().map_err(pq)?;
            col += 1;
        }
        rg.close().map_err(pq)?;
    }
    let out = w.into_inner().map_err(pq)?;
    let file = out
        .into_inner()
        .map_err(|e| HistoryError::io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(HistoryError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(HistoryError::io(path))?;
    super::sync_dir(path);
    Ok(std::fs::metadata(path).map_or(0, |m| m.len()))
}

/// Read a segment; values come in `signals` order (a signal the segment does not
/// have reads as NaN: the org's configuration may have gained it since).
pub fn read(path: &Path, signals: &[String]) -> Result<Vec<WalRow>, HistoryError> {
    let pq = |source| HistoryError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(HistoryError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(pq)?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let index_of =
        |name: &str| (0..schema.num_columns()).find(|&i| schema.column(i).name() == name);
    let need = |name: &str| {
        index_of(name).ok_or_else(|| HistoryError::Format {
            path: path.to_path_buf(),
            reason: format!("no `{name}` column"),
        })
    };
    let (mc, tc, pc, oc) = (
        need("machine")?,
        need("ts")?,
        need("partition")?,
        need("offset")?,
    );
    let sig_cols: Vec<Option<usize>> = signals.iter().map(|s| index_of(s)).collect();
    let mut out: Vec<WalRow> = Vec::new();
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g).map_err(pq)?;
        let n = rg.metadata().num_rows() as usize;
        let base = out.len();
        let mut machines: Vec<ByteArray> = Vec::with_capacity(n);
        let mut r = get_typed_column_reader::<ByteArrayType>(rg.get_column_reader(mc).map_err(pq)?);
        r.read_records(n, None, None, &mut machines).map_err(pq)?;
        let read_i64 = |c: usize| -> Result<Vec<i64>, HistoryError> {
            let mut v = Vec::with_capacity(n);
            let mut r = get_typed_column_reader::<Int64Type>(rg.get_column_reader(c).map_err(pq)?);
            r.read_records(n, None, None, &mut v).map_err(pq)?;
            Ok(v)
        };
        let (ts, parts, offs) = (read_i64(tc)?, read_i64(pc)?, read_i64(oc)?);
        if machines.len() != n || ts.len() != n || parts.len() != n || offs.len() != n {
            return Err(HistoryError::Format {
                path: path.to_path_buf(),
                reason: format!("row group {g} has columns of different lengths"),
            });
        }
        for i in 0..n {
            out.push(WalRow {
                machine: String::from_utf8_lossy(machines[i].data()).into_owned(),
                ts: ts[i],
                pos: prognos_dataflows::records::SourcePosition {
                    partition: parts[i] as u32,
                    offset: offs[i] as u64,
                },
                values: vec![f64::NAN; signals.len()],
            });
        }
        for (k, c) in sig_cols.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut v: Vec<f64> = Vec::with_capacity(n);
            let mut r =
                get_typed_column_reader::<DoubleType>(rg.get_column_reader(*c).map_err(pq)?);
            r.read_records(n, None, None, &mut v).map_err(pq)?;
            for (i, x) in v.into_iter().enumerate().take(n) {
                out[base + i].values[k] = x;
            }
        }
    }
    Ok(out)
}

/// The column names of a segment.
pub fn columns(path: &Path) -> Result<Vec<String>, HistoryError> {
    let file = File::open(path).map_err(HistoryError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(|source| HistoryError::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    Ok((0..schema.num_columns())
        .map(|i| schema.column(i).name().to_string())
        .collect())
}
