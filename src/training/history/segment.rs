//! Closed segments: Parquet files with the columns `machine` (string), `ts`
//! (timestamp ms, UTC), `partition`, `offset` (the source position), then one
//! double column per canonical signal, named after it (NaN = missing).

use super::HistoryError;
use super::HistoryStore;
use super::wal::WalRow;
use bytes::Bytes;
use parquet::basic::{
    Compression, LogicalType, Repetition, TimeUnit, TimestampType, Type as PhysicalType,
};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group.
const ROW_GROUP_ROWS: usize = 65_536;

/// Write `rows` (values in `signals` order) to `key` of `store`, whole (a reader
/// sees the whole segment or none of it); the bytes written.
pub fn write(
    store: &HistoryStore,
    key: &str,
    signals: &[String],
    rows: &[WalRow],
) -> Result<u64, HistoryError> {
    let bytes = encode(&store.name_of(key), signals, rows)?;
    let n = bytes.len() as u64;
    store.put(key, Bytes::from(bytes))?;
    Ok(n)
}

/// A Parquet file of `rows` (`path` names it in errors).
fn encode(path: &Path, signals: &[String], rows: &[WalRow]) -> Result<Vec<u8>, HistoryError> {
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
    let mut w =
        SerializedFileWriter::new(Vec::with_capacity(1 << 20), schema, props).map_err(pq)?;
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
    w.into_inner().map_err(pq)
}

/// Read a segment; values come in `signals` order (a signal the segment does not
/// have reads as NaN: the org's configuration may have gained it since).
/// `path` names it in errors.
pub fn read(path: &Path, bytes: Bytes, signals: &[String]) -> Result<Vec<WalRow>, HistoryError> {
    let pq = |source| HistoryError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = SerializedFileReader::new(bytes).map_err(pq)?;
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

/// The column names of a segment (`path` names it in errors).
pub fn columns(path: &Path, bytes: Bytes) -> Result<Vec<String>, HistoryError> {
    let reader = SerializedFileReader::new(bytes).map_err(|source| HistoryError::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    Ok((0..schema.num_columns())
        .map(|i| schema.column(i).name().to_string())
        .collect())
}
