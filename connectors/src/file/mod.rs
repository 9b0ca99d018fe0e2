//! Files: JSONL/CSV sources (one partition per file) and Parquet/JSONL sinks.

pub mod config;
pub mod sink;
pub mod source;

#[cfg(test)]
mod tests;

pub use config::{FileFormat, FileInput, FileInputError, assign, file_inputs};
pub use sink::{JsonlSink, ParquetFeatureSink, SinkError};
pub use source::FileSource;
